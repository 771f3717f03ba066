"""Every instance of a frame in one label image: the standard way to carry instance pixels (vision_msgs has no mask
type; its README names a ``sensor_msgs/Image`` for segmentation), readable from any language without our decoder.

Each pixel holds the index + 1 of the instance it shows (0: none), the index into that frame's ``instances`` and
``detections``, which carry the track ids (ids grow without bound on a long run; an index never passes 16 bits).
Where masks overlap, the smaller instance is on top, so a cup on a table stays visible; equal areas: the later
index. That is the loss: a pixel shows one instance, so a larger instance's pixels under a smaller one are not in
the image (the table under the cup). ``instances`` keeps every mask whole.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from fastsam_ros.segmentation.masks import EncodedMasks
from fastsam_ros.types import Segmentation

MAX_LABEL = int(np.iinfo(np.uint16).max)


def label_image(segmentation: Segmentation) -> np.ndarray:
    """``(H, W)`` uint16: index + 1 of the smallest instance covering each pixel, 0 where none does.

    Made from the run-length masks the ``instances`` message carries (made once per frame for both), so the areas
    that order the instances are those masks' exact pixel counts (``Instance.area`` with masks published).
    """
    return paint_labels(segmentation.encoded_masks(), segmentation.image_shape)


def paint_labels(masks: EncodedMasks, image_shape: tuple[int, int]) -> np.ndarray:
    """:func:`label_image` of run-length ``masks``: painted largest first (among equal areas the earlier index
    first), so the smallest, and then the later, instance ends up on top; runs fill whole row spans at once."""
    count = len(masks)
    if count > MAX_LABEL:
        raise ValueError(f"{count} instances do not fit a 16-bit label image (at most {MAX_LABEL})")
    labels = np.zeros(image_shape, dtype=np.uint16)
    if count:
        order = np.lexsort((np.arange(count), -masks.areas))
        _paint_runs(labels, order, masks.boxes, masks.offsets, masks.counts)
    return labels


@njit(cache=True, nogil=True)
def _paint_runs(labels, order, boxes, offsets, counts):  # pragma: no cover - compiled
    """Paint each mask of ``order`` (its row-major runs over its box, background first) with its index + 1."""
    for index in order:
        x, y, width = boxes[index, 0], boxes[index, 1], boxes[index, 2]
        value = np.uint16(index + 1)
        position = 0
        for k in range(offsets[index], offsets[index + 1]):
            run = np.int64(counts[k])
            if (k - offsets[index]) % 2 == 1:  # a foreground run, maybe over several rows of the box
                start, end = position, position + run
                while start < end:
                    row, column = start // width, start % width
                    stop = min(end, (row + 1) * width)
                    labels[y + row, x + column : x + column + stop - start] = value
                    start = stop
            position += run
