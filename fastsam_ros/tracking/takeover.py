"""Returns after a long hiding: a lost track takes back its object from a track started while it was hidden.

An object hidden for several frames (another one crossing in front of it) often comes back as a new track: its
last mask before the hiding was small (partly covered), so the whole object overlaps it too little to continue
it, and the instance starts a track of its own. A frame or two later it overlaps the lost track's last mask
enough, but the new track already holds it (its own overlap is higher), and the lost track (the one a followed
prompt answers with) never comes back. :func:`takeovers` lets a lost track re-acquire an instance that

* overlaps its motion-compensated last mask by at least ``min_iou``, or *contains* at least
  ``RETURN_CONTAINMENT`` of it (a whole object around its last, partly covered, mask: IoU is low there,
  containment high), or lies within its whole extent (:mod:`fastsam_ros.tracking.extent`: a part of it back on
  the other side of the occluder), and
* whose colours agree with the track's (the caller passes only such pairs: containment alone would let any
  large mask around the last one take it), and
* is new (no track carries it) or is carried by a *young* track: one started after the lost track, and no
  earlier than the frame it was last seen (an object that splits into two masks as it is being covered). The
  instance then keeps the lost track's id, and the young track ends (its id becomes an alias of the lost one).
  An established track (another object crossing in front) is never taken over.
"""

from __future__ import annotations

import numpy as np


def takeovers(tracks: np.ndarray, instances: np.ndarray, overlap: np.ndarray, carried: np.ndarray,
              born: np.ndarray, seen: np.ndarray) -> list[tuple[int, int, int]]:
    """``(lost, young, instance)`` rows: track row ``lost`` (carrying nothing this frame) re-acquires
    ``instance``, taken from track row ``young`` (-1: the instance was new).

    Pairs ``(tracks[k], instances[k])`` show the track's object back (the caller passes only such pairs: colours
    agreeing, and overlapping, containing the last mask or inside the extent), best ``overlap[k]`` first.
    ``carried``: per track row, the instance it carries this frame (-1: none); ``born`` and ``seen``: the frames
    each track row started and was last seen. Each track and instance once.
    """
    owner = np.full(int(instances.max(initial=-1)) + 1, -1)
    rows = np.flatnonzero((carried >= 0) & (carried < len(owner)))
    owner[carried[rows]] = rows
    young = owner[instances]
    fits = carried[tracks] < 0
    taken = fits & (young >= 0)
    lost, other = tracks[taken], young[taken]
    fits[taken] = (born[other] >= seen[lost]) & (born[other] > born[lost])
    used_tracks, used_instances = {-1}, set()  # -1: no young track, never in the way
    found = []
    for k in np.flatnonzero(fits)[np.argsort(-overlap[fits], kind="stable")]:
        lost, other, instance = int(tracks[k]), int(young[k]), int(instances[k])
        if lost in used_tracks or (other >= 0 and other in used_tracks) or instance in used_instances:
            continue
        used_tracks.update((lost, other))
        used_instances.add(instance)
        found.append((lost, other, instance))
    return found
