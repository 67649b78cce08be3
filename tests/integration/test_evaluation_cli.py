"""`slm-router eval` / `calibrate` end to end on real data, with the real SLM and the real ChatOllama client
talking to the in-process Ollama-protocol server (backed by the same local model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from langchain_slm_router.cli import main
from langchain_slm_router.evaluation import systems
from langchain_slm_router.gates import GatePolicy
from langchain_slm_router.signals import ConfidenceSignals

pytestmark = pytest.mark.integration

DATASETS = ["squad_v2", "nq_open", "gsm8k", "math", "mixed"]


def _args(data_dir: Path, out: Path, cache: Path, command: str = "eval") -> list[str]:
    args = [command, "--data-dir", str(data_dir), "--datasets", ",".join(DATASETS), "--limit", "3",
            "--calib-limit", "2", "--dataset-limit", "mixed=4", "--calib-dataset-limit", "mixed=4",
            "--seed", "0", "--max-new-tokens", "squad_v2=8,nq_open=8,math=8,gsm8k=16", "--out", str(out),
            "--cache-dir", str(cache), "--no-progress"]
    return args + (["--live-router", "mixed"] if command == "eval" else [])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_dir: Path, slm) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("eval")
    out, cache = root / "out", root / "cache"
    assert main(_args(data_dir, out, cache)) == 0
    return root, out, cache


def test_outputs_exist_and_agree(run_dir, capsys) -> None:
    _, out, _ = run_dir
    data = json.loads((out / "results.json").read_text())
    assert [s["dataset"] for s in data["summaries"]] == DATASETS
    report = (out / "report.md").read_text()
    for name in DATASETS:
        png = out / f"quality_vs_llm_{name}.png"
        assert png.read_bytes()[:4] == b"\x89PNG"
        assert f"### {name} (n=" in report
    for summary in data["summaries"]:
        name = summary["dataset"]
        recs = data["records"][name]["eval"]
        assert summary["n"] == len(recs) == (4 if name == "mixed" else 3)
        assert len(data["records"][name]["calib"]) == (4 if name == "mixed" else 2)
        rows = {m["system"].split(" ")[0]: m for m in summary["systems"]}
        assert {"always-SLM", "always-LLM", "router@seed", "router@calibrated", "oracle"} <= set(rows)
        # table numbers are the records' numbers
        assert rows["always-LLM"]["quality"] == pytest.approx(sum(r["llm"]["score"] for r in recs) / len(recs))
        assert rows["always-SLM"]["quality"] == pytest.approx(sum(r["slm"]["score"] for r in recs) / len(recs))
        assert rows["always-LLM"]["llm_calls"] == len(recs) and rows["always-SLM"]["llm_calls"] == 0
        for r in recs:
            assert r["slm"]["latency_ms"] > 0 and r["llm"]["latency_ms"] > 0
            assert set(r["slm"]["signals"]) == {"mean_prob", "min_prob", "mean_entropy", "mean_logprob", "length"}
        seed = rows["router@seed"]
        escalated = [not r["math"] and not systems.gate_keeps(r, 0.6) for r in recs]
        assert seed["llm_calls"] == sum(escalated)
        # the oracle never does worse than always-SLM, and sends no more to the LLM than always-LLM
        assert rows["oracle"]["quality"] >= rows["always-SLM"]["quality"] - 1e-9
    # math: the engine answers the math queries exactly
    math_recs = data["records"]["math"]["eval"]
    assert all(r["math"] and r["math"]["correct"] for r in math_recs)
    assert data["meta"]["slm_tokens_per_s"] > 0 and data["meta"]["llm_tokens_per_s"] > 0


def test_live_router_matches_the_derived_router(run_dir) -> None:
    _, out, _ = run_dir
    data = json.loads((out / "results.json").read_text())
    recs = data["records"]["mixed"]["eval"]
    live_rows = [m for m in data["summaries"][-1]["systems"] if "live" in m["system"]]
    assert len(live_rows) == 1
    for r in recs:
        live = r["live_router"]
        assert live is not None and live["latency_ms"]["total"] > 0
        if r["math"]:
            assert live["stage"] == "math" and live["answer"] == r["math"]["answer"]
            continue
        # greedy decoding: the router's SLM draft is the harness's SLM answer, so the gate decides the same
        assert live["signals"] == pytest.approx(r["slm"]["signals"], rel=1e-3, abs=1e-3)
        keep = GatePolicy(min_mean_prob=0.6).decide_signals(ConfidenceSignals(**live["signals"])).keep
        assert live["stage"] == ("slm" if keep else "llm")
        if keep:
            assert live["answer"] == r["slm"]["text"]


def test_second_run_is_served_from_cache_and_calibrate_agrees(run_dir, data_dir: Path) -> None:
    root, out, cache = run_dir
    first = json.loads((out / "results.json").read_text())
    out2 = root / "out2"
    assert main(_args(data_dir, out2, cache)) == 0
    second = json.loads((out2 / "results.json").read_text())
    assert second["meta"]["cache_misses"] == 0 and second["meta"]["cache_hits"] > 0
    for a, b in zip(first["summaries"], second["summaries"]):
        assert [m["quality"] for m in a["systems"]] == [m["quality"] for m in b["systems"]]
        assert a["calibrated_threshold"] == b["calibrated_threshold"]
    out3 = root / "out3"
    assert main(_args(data_dir, out3, cache, command="calibrate")) == 0
    cal = json.loads((out3 / "calibration.json").read_text())
    for a, c in zip(first["summaries"], cal["summaries"]):
        assert c["calibration"]["choice"]["threshold"] == a["calibrated_threshold"]
        assert c["calibration"]["heldout_n"] == a["n"]
    calibration_md = (out3 / "calibration.md").read_text()
    assert "SLMRouter().with_options(threshold=" in calibration_md and "\n### " in calibration_md


def test_bad_arguments_fail_clearly(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def fails(argv: list[str], match: str) -> None:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ConfigError: ") and match in err and err.count("\n") == 1, err

    fails(["eval", "--data-dir", str(data_dir), "--datasets", "imagenet", "--out", str(tmp_path)], "unknown data set")
    fails(["eval", "--data-dir", str(tmp_path / "missing"), "--out", str(tmp_path)], "not found")
    with pytest.raises(SystemExit):  # argparse's own usage error
        main(["eval", "--target-llm-share", "0.3", "--target-quality", "0.9"])
    assert "not allowed with argument" in capsys.readouterr().err  # argparse's usage, not ours
