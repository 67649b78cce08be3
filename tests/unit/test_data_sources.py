"""Where the evaluation data comes from: a data folder (offline, what the tests use), the hub, or the generator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from langchain_slm_router.errors import DataUnavailableError, SLMRouterError
from langchain_slm_router.evaluation.datasets import DATA_DIR_ENV, default_data_dir, load_dataset, read_rows
from langchain_slm_router.evaluation.math_sets import math_dev_queries

REPO = Path(__file__).resolve().parents[2]


def test_a_data_folder_without_the_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataUnavailableError) as info:
        read_rows("squad_v2", tmp_path)
    message = str(info.value)
    assert str(tmp_path / "squad_v2_dev.jsonl") in message and "--data-dir" in message
    assert "rajpurkar/squad_v2" in message  # says how the hub path would get it
    assert isinstance(info.value, SLMRouterError) and isinstance(info.value, FileNotFoundError)
    with pytest.raises(DataUnavailableError, match="make_math_queries.py"):
        read_rows("math", tmp_path)


def test_the_environment_variable_names_the_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"question": f"question {i}", "answer": [f"answer {i}"]} for i in range(6)]
    (tmp_path / "nq_open_dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert default_data_dir() == tmp_path
    items = load_dataset("nq_open", default_data_dir(), limit=None, split="eval")
    assert len(items) == 3 and all(i.answers[0].startswith("answer") for i in items)


def test_without_a_data_folder_the_math_set_is_generated() -> None:
    assert read_rows("math", None) == math_dev_queries()
    items = load_dataset("math", None, limit=5)
    assert len(items) == 5 and all(i.answers for i in items)


def test_without_a_data_folder_the_hub_is_tried_and_its_failure_is_explained(tmp_path: Path) -> None:
    """Offline here, so the hub path can only be followed up to its error: it must name the hub set and the fix.

    ``HF_HUB_OFFLINE=1`` makes the ``datasets`` library fail at once instead of retrying the network; with no
    cached copy (an empty ``HF_HOME``) the load fails the way it does on a machine without network.
    """
    code = ("from langchain_slm_router.evaluation.datasets import read_rows\n"
            "from langchain_slm_router.errors import DataUnavailableError\n"
            "try:\n    read_rows('gsm8k', None)\nexcept DataUnavailableError as exc:\n    print(exc)\n")
    env = {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path),
           "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "openai/gsm8k" in out.stdout and "could not be loaded from the Hugging Face hub" in out.stdout
    assert "--data-dir" in out.stdout and "Traceback" not in out.stderr
