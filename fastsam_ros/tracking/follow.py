"""Prompts that follow what they selected: :class:`FollowedPrompt` is a persistent prompt after its first answer, the
track ids of the instances it picked; on later frames its answer is the instances continuing those tracks (no
prompt rules, no CLIP). One follower for the node (``fastsam_ros.ros.prompt_registry``), the CLI and the
benchmarks: :func:`follow_step` is a prompt's frame, :class:`PromptFollower` a stream's prompts on one thread."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastsam_ros.prompts.objects import build_object
from fastsam_ros.tracking.tracker import InstanceTracker
from fastsam_ros.types import Prompt, Segmentation, SelectedObject, Selection, Status

RESET_REASON = ("the tracker was reset since this prompt selected its objects (a new stream or image size, or "
                "tracking turned off and on): its track ids now name other objects; clear or re-prompt")


@dataclass(frozen=True)
class FollowedPrompt:
    """A persistent prompt after its first ``ok`` answer: per selected object, the track ids it was made of."""

    prompt_id: str
    objects: tuple[tuple[int, ...], ...]
    scores: tuple[float, ...]
    epoch: int  # the tracker's epoch the ids belong to: after a reset the same ids name other objects

    @classmethod
    def start(cls, selection: Selection, ids: np.ndarray, epoch: int) -> FollowedPrompt | None:
        """Begin following an ``ok`` selection made on the frame whose instance ids are ``ids``, given by the
        tracker in ``epoch`` (its :attr:`InstanceTracker.epoch` when it returned ``ids``)."""
        if not selection.ok or not selection.objects:
            return None
        objects = tuple(tuple(int(ids[i]) for i in obj.instances) for obj in selection.objects)
        return cls(selection.prompt_id, objects, tuple(obj.score for obj in selection.objects), epoch)

    def tagged(self, selection: Selection) -> Selection:
        """The first answer, its objects carrying their track ids."""
        pairs = zip(selection.objects, self.objects, strict=True)
        objects = tuple(_with_track(obj, tracks[0]) for obj, tracks in pairs)
        return Selection(selection.prompt_id, selection.status, selection.reason, objects)

    def answer(self, segmentation: Segmentation, tracker: InstanceTracker) -> Selection:
        """The instances continuing the followed objects in the frame ``tracker`` was last updated with.

        After a tracker reset (a new stream or image size, tracking turned off and on) the ids name other
        objects and never come back: ``no_match``, never ``ok`` with whatever now holds the id.
        """
        if tracker.epoch != self.epoch:
            return Selection.failed(self.prompt_id, Status.NO_MATCH, RESET_REASON)
        objects: list[SelectedObject] = []
        lost: list[str] = []
        gone: list[str] = []
        limit = tracker.params.max_lost_frames
        for tracks, score in zip(self.objects, self.scores, strict=True):
            present = sorted({i for i in map(tracker.instance_of, tracks) if i is not None})
            obj = build_object(segmentation, present, score) if present else None
            if obj is not None:
                objects.append(_with_track(obj, tracks[0]))
                continue
            missing = [tracker.missing_frames(t) for t in tracks]
            if all(m is None for m in missing):
                gone.append(f"track {tracks[0]} was not seen for more than {limit} frames")
            else:
                frames = min(m for m in missing if m is not None)
                lost.append(f"track {tracks[0]} not seen for {frames} frame{'s' * (frames != 1)}")
        reason = "; ".join(lost + gone)
        if objects:
            return Selection(self.prompt_id, Status.OK, reason, tuple(objects))
        if lost:
            return Selection.failed(
                self.prompt_id, Status.LOST, f"{reason} (re-acquired if it returns within {limit} frames)"
            )
        return Selection.failed(self.prompt_id, Status.NO_MATCH, f"{reason}: clear or re-prompt")


def _with_track(obj: SelectedObject, track_id: int) -> SelectedObject:
    return dataclasses.replace(obj, track_id=int(track_id))


def follow_step(
    followed: FollowedPrompt | None,
    first_answer: Callable[[], Selection],
    segmentation: Segmentation,
    ids: np.ndarray,
    tracker: InstanceTracker,
) -> tuple[Selection, FollowedPrompt | None]:
    """One frame of a followed persistent prompt: the usual rules (``first_answer``) until they select something,
    then the instances continuing what they selected. Returns the answer and the state for the next frame."""
    if followed is not None:
        return followed.answer(segmentation, tracker), followed
    selection = first_answer()
    followed = FollowedPrompt.start(selection, ids, tracker.epoch)
    return (followed.tagged(selection) if followed else selection), followed


class PromptFollower:
    """Persistent prompts over one stream in one thread (the CLI's videos, the benchmark): each follows what it
    first selected. ``tracker`` gives the ids (:class:`InstanceTracker`, or another with ``update``,
    ``instance_of``, ``missing_frames``, ``params`` and ``epoch``)."""

    def __init__(self, tracker: Any = None) -> None:
        self.tracker = tracker if tracker is not None else InstanceTracker()
        self._followed: dict[str, FollowedPrompt | None] = {}

    def answer(self, segmentation: Segmentation, image: np.ndarray | None, prompts: Sequence[Prompt],
               first_answer: Callable[[Prompt], Selection]) -> list[Selection]:
        """This frame's answers; ``first_answer`` applies the usual rules until a prompt selects something."""
        ids = self.tracker.update(segmentation, image)
        answers = []
        for prompt in prompts:
            answer, self._followed[prompt.id] = follow_step(
                self._followed.get(prompt.id), lambda p=prompt: first_answer(p), segmentation, ids, self.tracker)
            answers.append(answer)
        return answers
