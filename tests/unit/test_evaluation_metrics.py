"""Metrics, systems, calibration and reports on small handmade per-question records (no model runs)."""

from __future__ import annotations

import json
import math

import pytest

from langchain_slm_router.evaluation import systems
from langchain_slm_router.evaluation.calibration import CalibrationTarget, calibrate, choose_threshold
from langchain_slm_router.evaluation.datasets import load_dataset, mixed_counts
from langchain_slm_router.evaluation.metrics import (
    auroc,
    percentile,
    precision_recall_f1,
    signal_aurocs,
    summarize,
    sweep,
)


def _rec(i: int, mean_prob: float, slm_ok: bool, llm_ok: bool = True, math: bool = False,
         slm_ms: float = 100.0, llm_ms: float = 1000.0) -> dict:
    score = lambda ok: {"score": float(ok), "correct": ok, "em": float(ok), "f1": float(ok)}  # noqa: E731
    return {
        "id": f"q{i}", "dataset": "nq_open",
        "math": {"answer": "4", **score(True)} if math else None, "math_latency_ms": 1.0,
        "slm": {"text": "a", "latency_ms": slm_ms, "finished": True,
                "signals": {"mean_prob": mean_prob, "min_prob": mean_prob / 2, "mean_entropy": 1 - mean_prob,
                            "mean_logprob": math_log(mean_prob), "length": 3}, **score(slm_ok)},
        "llm": {"text": "b", "latency_ms": llm_ms, **score(llm_ok)},
    }


def math_log(p: float) -> float:
    return math.log(p) if p > 0 else -1e9


def test_auroc_known_values() -> None:
    assert auroc([0.9, 0.8, 0.3, 0.1], [True, True, False, False]) == 1.0
    assert auroc([0.1, 0.3, 0.8, 0.9], [True, True, False, False]) == 0.0
    assert auroc([0.5, 0.5, 0.5, 0.5], [True, False, True, False]) == 0.5
    # one inversion out of 2*2 pairs
    assert auroc([0.9, 0.4, 0.5, 0.1], [True, True, False, False]) == pytest.approx(0.75)
    assert auroc([0.1, 0.2], [True, True]) is None


def test_auroc_matches_pairwise_definition() -> None:
    import random

    rng = random.Random(3)
    scores = [round(rng.random(), 1) for _ in range(40)]  # rounding makes ties
    labels = [rng.random() < 0.4 for _ in range(40)]
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    pairwise = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
    assert auroc(scores, labels) == pytest.approx(pairwise)


def test_precision_recall_f1_and_percentile() -> None:
    p, r, f = precision_recall_f1([True, True, False, False], [True, False, True, False])
    assert (p, r, f) == (0.5, 0.5, 0.5)
    assert precision_recall_f1([False, False], [False, False]) == (None, None, None)
    assert percentile([1, 2, 3, 4, 5], 50) == 3
    assert percentile([0, 10], 95) == pytest.approx(9.5)
    assert math.isnan(percentile([], 50))


def test_signal_aurocs_perfect_separator() -> None:
    recs = [_rec(0, 0.95, True), _rec(1, 0.9, True), _rec(2, 0.4, False), _rec(3, 0.2, False)]
    au = signal_aurocs(recs)
    assert au["mean_prob"] == 1.0 and au["min_prob"] == 1.0 and au["mean_logprob"] == 1.0
    assert au["mean_entropy"] == 1.0  # oriented: lower entropy = more confident
    assert au["length"] == 0.5  # all lengths equal: no information


def test_router_oracle_and_always_systems() -> None:
    recs = [_rec(0, 0.95, True), _rec(1, 0.9, False), _rec(2, 0.4, False), _rec(3, 0.2, True),
            _rec(4, 0.1, False, math=True)]
    llm = [systems.always_llm(r) for r in recs]
    r06 = [systems.router(r, 0.6) for r in recs]
    assert [o.stage for o in r06] == ["slm", "slm", "llm", "llm", "math"]
    assert [o.latency_ms for o in r06] == [101.0, 101.0, 1101.0, 1101.0, 1.0]
    m = summarize("router", r06, recs, llm, threshold=0.6)
    assert m.llm_calls == 2 and m.pct_llm_avoided == pytest.approx(60.0)
    assert m.quality == pytest.approx(4 / 5)  # q1 kept although wrong
    # gated = q0..q3; should escalate = q1, q2; escalated = q2, q3 -> P = R = 1/2
    assert (m.routing_precision, m.routing_recall, m.routing_f1) == (0.5, 0.5, 0.5)
    assert m.speedup_vs_llm == pytest.approx(5000 / (101 + 101 + 1101 + 1101 + 1))
    orc = summarize("oracle", [systems.oracle(r) for r in recs], recs, llm)
    assert orc.routing_f1 == 1.0 and orc.quality == 1.0 and orc.llm_calls == 2
    slm_only = summarize("always-SLM", [systems.always_slm(r) for r in recs], recs, llm)
    assert slm_only.quality == pytest.approx(2 / 5) and slm_only.routing_f1 is None
    assert slm_only.pct_of_llm == pytest.approx(40.0)


def test_a_record_gives_back_its_hidden_vectors_so_probe_gates_can_be_scored_from_it() -> None:
    rec = _rec(0, 0.9, True)
    assert systems.record_generation(rec).hidden is None  # an old record, or a backend without hidden states
    rec["slm"]["hidden"] = {"answer_mean@L15": [0.5, -1.25]}
    assert systems.record_generation(rec).hidden == {"answer_mean@L15": [0.5, -1.25]}


def test_sweep_is_monotone_in_llm_share() -> None:
    recs = [_rec(i, p, ok) for i, (p, ok) in enumerate([(0.9, True), (0.7, False), (0.5, True), (0.3, False)])]
    curve = sweep(recs, [0.0, 0.4, 0.6, 0.8, 1.0])
    assert [c["llm_share"] for c in curve] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert curve[-1]["quality"] == 1.0


def test_calibration_targets_and_heldout() -> None:
    calib = [_rec(i, p, ok) for i, (p, ok) in enumerate(
        [(0.95, True), (0.9, True), (0.8, True), (0.7, False), (0.6, True), (0.5, False), (0.4, False),
         (0.3, False), (0.2, False), (0.1, False)])]
    choice = choose_threshold(calib, CalibrationTarget(max_llm_share=0.3))
    assert choice.met and choice.llm_share <= 0.3
    # 4 of 10 right alone; escalating the 3 least confident (all wrong, the LLM right) gives 7 of 10
    assert choice.quality == pytest.approx(0.7) and choice.threshold > 0.3
    q = choose_threshold(calib, CalibrationTarget(min_quality_ratio=1.0))
    # every answer below 0.8 must go to the LLM (the one at 0.7 is wrong): 7 of 10
    assert q.met and q.quality == 1.0 and q.llm_share == pytest.approx(0.7) and 0.7 < q.threshold <= 0.8
    # held-out data with more low-confidence questions: the same threshold sends 3 of 4 to the LLM
    held = [_rec(100 + i, p, ok) for i, (p, ok) in enumerate([(0.99, True), (0.2, False), (0.15, False),
                                                               (0.1, False)])]
    res = calibrate(calib, held, CalibrationTarget(max_llm_share=0.3))
    assert res.choice.threshold == choice.threshold
    assert res.heldout_n == 4 and res.heldout_llm_share == 0.75 and res.heldout_quality == 1.0
    assert not res.heldout_met
    with pytest.raises(ValueError, match="shares questions"):
        calibrate(calib, calib[:2], CalibrationTarget(max_llm_share=0.3))
    with pytest.raises(ValueError):
        CalibrationTarget()


def test_dataset_splits_are_disjoint_and_prefix_stable(each_data_dir) -> None:
    for name in ("squad_v2", "nq_open", "gsm8k", "math"):
        ev = load_dataset(name, each_data_dir, 30, seed=1)
        cal = load_dataset(name, each_data_dir, 30, seed=1, split="calib")
        assert len(ev) == len(cal) == 30
        assert not {i.id for i in ev} & {i.id for i in cal}
        assert [i.id for i in load_dataset(name, each_data_dir, 10, seed=1)] == [i.id for i in ev[:10]]
    squad = load_dataset("squad_v2", each_data_dir, 50, seed=0)
    assert any(i.unanswerable for i in squad) and any(not i.unanswerable for i in squad)
    assert all("unanswerable" in i.prompt and i.question in i.prompt for i in squad)
    squad_cal = load_dataset("squad_v2", each_data_dir, 300, seed=0, split="calib")
    assert not {i.prompt.split("Context: ")[1].split("\n\nQuestion")[0] for i in squad} & \
        {i.prompt.split("Context: ")[1].split("\n\nQuestion")[0] for i in squad_cal}
    mixed = load_dataset("mixed", each_data_dir, 20, seed=0)
    assert {i.dataset for i in mixed} == {"squad_v2", "nq_open", "gsm8k", "math"}
    assert mixed_counts(20) == {"math": 8, "squad_v2": 4, "nq_open": 4, "gsm8k": 4}
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("imagenet", each_data_dir)


def test_report_outputs(tmp_path) -> None:
    from langchain_slm_router.evaluation.report import markdown, plot, write_json
    from langchain_slm_router.evaluation.summary import summarize_dataset

    recs = [_rec(i, p, ok) for i, (p, ok) in enumerate([(0.9, True), (0.7, False), (0.5, True), (0.3, False)])]
    cal = [_rec(10 + i, p, ok) for i, (p, ok) in enumerate([(0.8, True), (0.6, False), (0.4, False)])]
    s = summarize_dataset("nq_open", recs, 0.6, cal, CalibrationTarget(max_llm_share=0.5))
    names = [m.system for m in s.systems]
    assert names[:3] == ["always-SLM", "always-LLM", "router@seed (0.6)"]
    assert names[3].startswith("router@calibrated") and names[4] == "oracle"
    text = markdown([s])
    assert text.count("\n| ") == len(s.systems) + 1 and "AUROC" in text and "held out" in text
    png = plot(s, tmp_path / "q.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    write_json(tmp_path / "r.json", [s], {"nq_open": {"eval": recs, "calib": cal}}, {"k": 1})
    data = json.loads((tmp_path / "r.json").read_text())
    assert len(data["records"]["nq_open"]["eval"]) == 4 and data["summaries"][0]["n"] == 4
