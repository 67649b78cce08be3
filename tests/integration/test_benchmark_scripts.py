"""Every benchmark script, and `slm-router eval`, ends with a clear message (not a traceback) when data is missing.

Each script runs as a user runs it (a subprocess from the repository root) with a data folder that does not exist.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MISSING = "/nonexistent-data-folder"

pytestmark = pytest.mark.integration


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})


SCRIPTS = [
    (["benchmarks/bench_math.py", "--data-dir", MISSING], f"{MISSING}/math_queries_dev.jsonl not found"),
    (["benchmarks/bench_slm_batch.py", "--data-dir", MISSING], f"{MISSING}/nq_open_dev.jsonl not found"),
    (["benchmarks/bench_slm_speed.py", "--data-dir", MISSING], f"{MISSING}/nq_open_dev.jsonl not found"),
    (["benchmarks/bench_router.py", "--data-dir", MISSING, "--base-url", "http://127.0.0.1:9"],
     f"data folder {MISSING} not found"),
    (["-m", "langchain_slm_router.cli", "eval", "--data-dir", MISSING], f"data folder {MISSING} not found"),
    (["benchmarks/bench_math_phrasings.py", "--file", f"{MISSING}/math_phrasings.jsonl"],
     "make_math_phrasings.py"),
    (["benchmarks/bench_engines.py", "--data-dir", MISSING], f"{MISSING}/nq_open_dev.jsonl not found"),
    (["benchmarks/bench_scaling.py", "--data-dir", MISSING], f"{MISSING}/nq_open_dev.jsonl not found"),
    (["benchmarks/bench_gate.py", "--data-dir", MISSING], f"{MISSING}/squad_v2_dev.jsonl not found"),
]


@pytest.fixture(scope="module")
def runs() -> dict[tuple[str, ...], subprocess.CompletedProcess[str]]:
    """Every script of SCRIPTS run once, side by side (each spends its seconds importing torch, one core each)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        done = pool.map(lambda args: (tuple(args), _run(*args)), [script for script, _ in SCRIPTS])
        return dict(done)


@pytest.mark.parametrize(("script", "expected"), SCRIPTS)
def test_missing_data_is_a_message_and_an_error_exit(runs, script: list[str], expected: str) -> None:
    out = runs[tuple(script)]
    assert out.returncode != 0
    assert expected in out.stderr and "Traceback" not in out.stderr


def test_the_phrasing_file_matches_its_generator() -> None:
    out = _run("benchmarks/make_math_phrasings.py", "--check")
    assert out.returncode == 0 and "matches the generator" in out.stdout
