"""tf2 for the node, where ``tf2_ros`` is installed (a robot; not the PyPI venv): one buffer per activation, and
lookups that give a :class:`RigidTransform` or the reason there is none (the caller decides what that means).
"""

from __future__ import annotations

from typing import Any

from rclpy.duration import Duration
from rclpy.time import Time

from fastsam_ros.depth.transform import RigidTransform

NOT_INSTALLED = "tf2_ros is not installed"


def transform_buffer(node: Any) -> Any:
    """tf2's buffer, filled by a listener on ``node``; None without ``tf2_ros``."""
    try:
        from tf2_ros import Buffer, TransformListener
    except ImportError:
        return None
    buffer = Buffer()
    buffer.listener = TransformListener(buffer, node)  # kept with the buffer it fills
    return buffer


def release(buffer: Any) -> None:
    """Stop the buffer's listener (deactivate)."""
    listener = getattr(buffer, "listener", None)
    if listener is not None:
        listener.unregister()


def lookup(buffer: Any, target: str, source: str, stamp_ns: int = 0, wait_s: float = 0.0) -> RigidTransform | str:
    """The transform from ``source`` to ``target`` at ``stamp_ns`` (0: the latest), waiting up to ``wait_s`` for
    it, or why there is none."""
    if buffer is None:
        return NOT_INSTALLED
    try:
        found = buffer.lookup_transform(target, source, Time(nanoseconds=stamp_ns),
                                        timeout=Duration(nanoseconds=int(wait_s * 1e9))).transform
    except Exception as error:  # tf2's LookupException, ExtrapolationException, ConnectivityException, ...
        return f"no transform from {source!r} to {target!r}: {error.__class__.__name__}: {error}"
    rotation, translation = found.rotation, found.translation
    return RigidTransform((translation.x, translation.y, translation.z),
                          (rotation.x, rotation.y, rotation.z, rotation.w), frame_id=target)
