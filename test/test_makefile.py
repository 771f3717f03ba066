"""`make setup` checks the system tools it needs first and names each missing one with its apt-get line."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAKE = shutil.which("make")
TOOLS = {"python3": "python3", "cmake": "cmake", "cc": "gcc", "c++": "g++"}  # command -> Debian package


def check_tools(bin_dir: Path) -> subprocess.CompletedProcess:
    """``make check-tools`` with nothing on PATH but ``bin_dir``."""
    return subprocess.run([MAKE, "-C", str(REPO), "--no-print-directory", "check-tools"], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PATH": str(bin_dir)})


def _real_python(path: str) -> str:
    """The interpreter behind ``path``: a pyenv shim only works with pyenv on PATH, the interpreter anywhere."""
    return subprocess.run([path, "-c", "import sys; print(sys.executable)"], capture_output=True, text=True,
                          timeout=30, check=True).stdout.strip()


def tool_dir(tmp_path: Path, without: str = "") -> Path:
    found = {name: shutil.which(name) for name in TOOLS}
    if not all(found.values()):
        pytest.skip(f"this machine lacks {[n for n, p in found.items() if not p]}")
    found["python3"] = _real_python(found["python3"])
    for name, path in found.items():
        if name != without:
            (tmp_path / name).symlink_to(path)
    return tmp_path


@pytest.mark.skipif(MAKE is None, reason="no make")
def test_all_tools_present_passes(tmp_path: Path) -> None:
    result = check_tools(tool_dir(tmp_path))
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(MAKE is None, reason="no make")
@pytest.mark.parametrize("tool", ["cmake", "cc", "c++"])
def test_a_missing_tool_is_named_with_its_apt_get_line(tool: str, tmp_path: Path) -> None:
    result = check_tools(tool_dir(tmp_path, without=tool))
    assert result.returncode != 0
    assert f"sudo apt-get install {TOOLS[tool]}" in result.stderr, result.stderr


@pytest.mark.skipif(MAKE is None, reason="no make")
def test_a_python_without_venv_support_asks_for_python3_venv(tmp_path: Path) -> None:
    bin_dir = tool_dir(tmp_path, without="python3")
    fake = bin_dir / "python3"  # Debian's python3 without python3-venv: `import ensurepip` fails
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    result = check_tools(bin_dir)
    assert result.returncode != 0
    assert "sudo apt-get install python3-venv" in result.stderr, result.stderr
