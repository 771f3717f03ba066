"""What the node says in standard messages, beside its own lossless ones, so that any node, RViz, Foxglove or C++
code reads it without our messages or decoder:

* ``detections`` (``vision_msgs/Detection2DArray``): every instance of every frame, its track id as ``id``;
* ``selection/detections`` (``Detection2DArray``): one per answer, the prompt id as each object's ``class_id``;
* ``selection/detections_3d`` (``Detection3DArray``, with ``use_depth``): one per answer with located objects;
* ``instances/labels`` (``sensor_msgs/Image`` 16UC1): the instance label image (:mod:`fastsam_ros.segmentation.labels`).

``vision_msgs`` is a separate package (apt ``ros-jazzy-vision-msgs``): where it is not installed, the three detection
topics are not made and :attr:`StandardOutputs.missing` says why; the label image needs only ``sensor_msgs``.
Every topic is built only while someone subscribes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rclpy.lifecycle import LifecycleNode
from sensor_msgs.msg import Image

from fastsam_ros.ros import conversions
from fastsam_ros.ros.frames import Frame
from fastsam_ros.segmentation.labels import label_image
from fastsam_ros.types import Box, SelectedObject, Selection

try:
    from vision_msgs.msg import Detection2D, Detection2DArray, Detection3D, Detection3DArray, ObjectHypothesisWithPose
except ImportError as error:  # a robot without ros-jazzy-vision-msgs
    VISION_MSGS_MISSING = (f"vision_msgs is not installed ({error}): detections, selection/detections and "
                           "selection/detections_3d are off (apt install ros-$ROS_DISTRO-vision-msgs)")
else:
    VISION_MSGS_MISSING = ""


class StandardOutputs:
    """The standard-message topics of one configured node (lifecycle publishers, like every output)."""

    def __init__(self, node: LifecycleNode, with_3d: bool, prefix: str = "") -> None:
        self._node = node
        self.missing = VISION_MSGS_MISSING
        make = node.create_lifecycle_publisher
        self._publishers = {"labels": make(Image, f"{prefix}instances/labels", conversions.RELIABLE_QOS)}
        if not self.missing:
            self._publishers["detections"] = make(Detection2DArray, f"{prefix}detections", conversions.RELIABLE_QOS)
            self._publishers["selection"] = make(Detection2DArray, f"{prefix}selection/detections",
                                                 conversions.BURST_QOS)
            if with_3d:
                self._publishers["3d"] = make(Detection3DArray, f"{prefix}selection/detections_3d",
                                              conversions.BURST_QOS)

    def destroy(self) -> None:
        for publisher in self._publishers.values():
            self._node.destroy_lifecycle_publisher(publisher)
        self._publishers = {}

    def _listened(self, name: str) -> Any:
        """The publisher ``name`` when it exists and someone subscribes, else None."""
        publisher = self._publishers.get(name)
        return publisher if publisher is not None and publisher.get_subscription_count() > 0 else None

    def reads_every_mask(self) -> bool:
        """Whether :meth:`frame` makes every instance's mask (for the label image)."""
        return self._listened("labels") is not None

    def frame(self, frame: Frame) -> None:
        """A segmented frame's ``detections`` and ``instances/labels``."""
        if (publisher := self._listened("detections")) is not None:
            publisher.publish(frame_detections(frame))
        if (publisher := self._listened("labels")) is not None:
            publisher.publish(conversions.image_msg(label_image(frame.segmentation), frame.header))

    def selection(self, selection: Selection, header: Any) -> None:
        """One answer's ``selection/detections`` (empty when nothing was selected) and, when any of its objects
        was located, ``selection/detections_3d``."""
        if (publisher := self._listened("selection")) is not None:
            publisher.publish(selection_detections(selection, header))
        if (publisher := self._listened("3d")) is not None and any(located(obj) for obj in selection.objects):
            publisher.publish(selection_detections_3d(selection, header))


def detection_2d(header: Any, box: Box, track_id: int, class_id: str, score: float) -> Any:
    """A box in pixels (centre and size, no rotation) with one hypothesis; ``track_id`` 0: no id."""
    x1, y1, x2, y2 = (float(v) for v in box)
    detection = Detection2D(header=header, id=str(track_id) if track_id else "")
    detection.bbox.center.position.x, detection.bbox.center.position.y = (x1 + x2) / 2, (y1 + y2) / 2
    detection.bbox.size_x, detection.bbox.size_y = x2 - x1, y2 - y1
    detection.results = [hypothesis(class_id, score)]
    return detection


def hypothesis(class_id: str, score: float) -> Any:
    result = ObjectHypothesisWithPose()
    result.hypothesis.class_id, result.hypothesis.score = class_id, float(score)
    return result


def frame_detections(frame: Frame) -> Any:
    """Every instance of ``frame``, in the order of its ``instances`` (and label image)."""
    segmentation, ids = frame.segmentation, frame.track_ids
    boxes, scores = segmentation.boxes.tolist(), segmentation.scores.tolist()
    track_ids = [0] * len(boxes) if ids is None else [int(v) for v in ids]
    return Detection2DArray(header=frame.header, detections=[
        detection_2d(frame.header, boxes[k], track_ids[k], segmentation.class_name(k), scores[k])
        for k in range(len(boxes))])


def selection_detections(selection: Selection, header: Any) -> Any:
    """One detection per selected object, classed by the prompt id."""
    return Detection2DArray(header=header, detections=[
        detection_2d(header, obj.box, obj.track_id, selection.prompt_id, obj.score) for obj in selection.objects])


def located(obj: SelectedObject) -> bool:
    return obj.location is not None and obj.location.has_position


def selection_detections_3d(selection: Selection, image_header: Any) -> Any:
    """The located objects of an answer: box centre and pose at the object's position, its extent as the box size,
    in the frame the positions are in (the camera's optical frame, or ``target_frame``)."""
    objects: Sequence[SelectedObject] = [obj for obj in selection.objects if located(obj)]
    header = conversions.header_in(image_header, objects[0].location.frame_id if objects else "")
    detections = []
    for obj in objects:
        where = obj.location
        detection = Detection3D(header=header, id=str(obj.track_id) if obj.track_id else "")
        position = detection.bbox.center.position
        position.x, position.y, position.z = where.position
        detection.bbox.center.orientation.w = 1.0
        detection.bbox.size.x, detection.bbox.size.y, detection.bbox.size.z = where.size
        result = hypothesis(selection.prompt_id, obj.score)
        pose = result.pose.pose
        pose.position.x, pose.position.y, pose.position.z = where.position
        pose.orientation.w = 1.0
        detection.results = [result]
        detections.append(detection)
    return Detection3DArray(header=header, detections=detections)
