"""3D outputs as messages: the selected objects' points (``sensor_msgs/PointCloud2``) and RViz boxes and labels
(``visualization_msgs/MarkerArray``). The arrays come from :mod:`fastsam_ros.depth.locate`; this only packs them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from fastsam_ros.depth.locate import Box3D

MARKER_NAMESPACE = "fastsam"
TEXT_HEIGHT_M = 0.05
MIN_BOX_SIDE_M = 0.005  # a flat face still shows as a thin box
# One colour per object of a selection, cycling (RGB, 0..1)
PALETTE = ((0.12, 0.47, 0.71), (1.0, 0.5, 0.05), (0.17, 0.63, 0.17), (0.84, 0.15, 0.16), (0.58, 0.4, 0.74))
_XYZ_FIELDS = [PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
               for i, name in enumerate("xyz")]


def cloud_msg(points: np.ndarray, header: Header) -> PointCloud2:
    """An unorganised x, y, z float32 cloud of ``points`` (N, 3), metres (``tobytes``: no per-point Python)."""
    packed = np.ascontiguousarray(points, dtype=np.float32).reshape(-1, 3)
    count = len(packed)
    return PointCloud2(header=header, height=1, width=count, fields=_XYZ_FIELDS, is_bigendian=False,
                       point_step=12, row_step=12 * count, data=packed.tobytes(), is_dense=True)


def markers_msg(boxes: Sequence[Box3D], header: Header) -> MarkerArray:
    """A DELETEALL (the previous answer's boxes go), then a translucent box and a label per object."""
    markers = [Marker(header=header, ns=MARKER_NAMESPACE, action=Marker.DELETEALL)]
    for index, box in enumerate(boxes):
        red, green, blue = PALETTE[index % len(PALETTE)]
        cube = Marker(header=header, ns=MARKER_NAMESPACE, id=2 * index, type=Marker.CUBE, action=Marker.ADD,
                      color=ColorRGBA(r=red, g=green, b=blue, a=0.4))
        cube.pose.position.x, cube.pose.position.y, cube.pose.position.z = box.centre
        cube.pose.orientation.w = 1.0
        cube.scale.x, cube.scale.y, cube.scale.z = (max(side, MIN_BOX_SIDE_M) for side in box.size)
        label = Marker(header=header, ns=MARKER_NAMESPACE, id=2 * index + 1, type=Marker.TEXT_VIEW_FACING,
                       action=Marker.ADD, text=box.label, color=ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0))
        label.pose.position.x, label.pose.position.z = box.centre[0], box.centre[2]
        label.pose.position.y = box.centre[1] - box.size[1] / 2 - TEXT_HEIGHT_M  # above the box: y points down
        label.pose.orientation.w = 1.0
        label.scale.z = TEXT_HEIGHT_M
        markers += [cube, label]
    return MarkerArray(markers=markers)
