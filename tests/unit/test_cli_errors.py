"""The command line ends every typed error with one line that says what to do, and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from langchain_slm_router.cli import main
from langchain_slm_router.errors import ConfigError, InvalidQueryError
from langchain_slm_router.server.settings import ServeConfig


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_train_gate_on_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _one_line_error(capsys, ["train-gate", "--traffic", str(tmp_path / "nope.jsonl"),
                                   "--out", str(tmp_path / "g.json")])
    assert "FileNotFoundError" in err and "nope.jsonl" in err and "check the path" in err


def test_train_gate_on_a_broken_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"slm": {}}\nnot json\n', encoding="utf-8")
    err = _one_line_error(capsys, ["train-gate", "--traffic", str(bad), "--out", str(tmp_path / "g.json")])
    assert "pairs.jsonl:2" in err


def test_a_bad_serve_configuration_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "serve.json"
    config.write_text(json.dumps({"server": {"port": "eighty"}, "unknown": 1}), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        ServeConfig.load(config)
    assert not isinstance(info.value, InvalidQueryError)  # not a query's fault
    config.write_text("{not json", encoding="utf-8")
    err = _one_line_error(capsys, ["serve", "--config", str(config)])
    assert "ConfigError" in err and "serve.json" in err and "--config" in err


def test_bad_limits_are_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _one_line_error(capsys, ["eval", "--dataset-limit", "gsm8k:12", "--out", str(tmp_path)])
    assert "ConfigError" in err and "DATASET=N" in err
