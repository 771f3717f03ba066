"""pytest plugin for the Python 3.10 run of the ROS-free tests (``make test``): skip what needs PyTorch there.

The 3.10 venv holds only numpy, OpenCV and pytest (torch + ultralytics would add gigabytes to every CI
setup). Tests that take a model fixture, and tests that fail only because torch, ultralytics or open_clip
is missing, are reported as skipped with the reason; they run in the main 3.11 suite. Any other failure
stays a failure.
"""

from __future__ import annotations

import importlib.util

import pytest

HEAVY = {"torch", "torchvision", "ultralytics", "open_clip"}
MODEL_FIXTURES = {"tiny_model", "standin_model"}  # a network to build or load: ultralytics


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if importlib.util.find_spec("ultralytics") is not None:
        return
    skip = pytest.mark.skip(reason="needs ultralytics, not in the Python 3.10 venv (runs in the main suite)")
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    error = call.excinfo.value if call.excinfo is not None else None
    if report.failed and isinstance(error, ModuleNotFoundError) and (error.name or "").split(".")[0] in HEAVY:
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0,
                           f"Skipped: needs {error.name}, not in the Python 3.10 venv (runs in the main suite)")
