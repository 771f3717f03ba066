"""tf2's ``Buffer`` for tests: ``lookup_transform`` over a fixed set of transforms (tf2_ros is not on PyPI)."""

from __future__ import annotations

from geometry_msgs.msg import TransformStamped

# Optical frame (x right, y down, z forward) to a robot's base (x forward, y left, z up), and back.
OPTICAL_TO_BASE = (-0.5, 0.5, -0.5, 0.5)
BASE_TO_OPTICAL = (0.5, -0.5, 0.5, 0.5)


def transform(rotation_xyzw: tuple[float, ...], translation: tuple[float, ...]) -> TransformStamped:
    found = TransformStamped()
    rotation, offset = found.transform.rotation, found.transform.translation
    rotation.x, rotation.y, rotation.z, rotation.w = rotation_xyzw
    offset.x, offset.y, offset.z = translation
    return found


class FakeBuffer:
    """Knows ``transforms[(target, source)]``; anything else raises as tf2 does when frames are not connected."""

    def __init__(self, transforms: dict[tuple[str, str], TransformStamped]) -> None:
        self.transforms = transforms
        self.asked: list = []

    def lookup_transform(self, target: str, source: str, time, timeout=None) -> TransformStamped:
        self.asked.append((target, source, time))
        if (target, source) not in self.transforms:
            raise LookupError(f"{source} is not connected to {target}")
        return self.transforms[(target, source)]


class StampedBuffer(FakeBuffer):
    """One transform, known from stamp ``from_ns`` on (tf2 raises for stamps before its history)."""

    def __init__(self, target: str, source: str, found: TransformStamped, from_ns: int = 0) -> None:
        super().__init__({(target, source): found})
        self.from_ns = from_ns

    @classmethod
    def parse(cls, spec: str) -> StampedBuffer:
        """``target:source:tx,ty,tz:qx,qy,qz,qw[:from_s]`` (fake_engine_node.py's FAKE_TF)."""
        target, source, translation, rotation, *start = spec.split(":")
        found = transform(tuple(map(float, rotation.split(","))), tuple(map(float, translation.split(","))))
        return cls(target, source, found, int(float(start[0]) * 1e9) if start else 0)

    def lookup_transform(self, target: str, source: str, time, timeout=None) -> TransformStamped:
        if time.nanoseconds < self.from_ns:
            raise LookupError(f"lookup would require extrapolation into the past (transform from "
                              f"{self.from_ns / 1e9:g} s on)")
        return super().lookup_transform(target, source, time, timeout)
