"""Gate policy and confidence-signal summaries (pure logic, no model)."""

from __future__ import annotations

import math

import pytest

from langchain_slm_router.gates import GatePolicy
from langchain_slm_router.signals import ConfidenceSignals


def sig(probs: list[float], ents: list[float] | None = None) -> ConfidenceSignals:
    return ConfidenceSignals.from_tokens(probs, ents if ents is not None else [0.5] * len(probs))


def test_signals_summarise_tokens() -> None:
    s = sig([0.9, 0.5, 1.0], [0.1, 1.2, 0.0])
    assert s.mean_prob == pytest.approx((0.9 + 0.5 + 1.0) / 3)
    assert s.min_prob == pytest.approx(0.5)
    assert s.mean_entropy == pytest.approx(1.3 / 3)
    assert s.mean_logprob == pytest.approx((math.log(0.9) + math.log(0.5)) / 3)
    assert s.length == 3


def test_empty_answer_has_zero_confidence_and_is_escalated() -> None:
    s = sig([])
    assert s.length == 0 and s.mean_prob == 0.0
    decision = GatePolicy(min_mean_prob=0.0).decide_signals(s)
    assert not decision.keep


def test_signals_reject_mismatched_lengths() -> None:
    with pytest.raises(ValueError):
        ConfidenceSignals.from_tokens([0.5], [])


def test_seed_rule_keeps_at_threshold_and_escalates_below() -> None:
    gate = GatePolicy()
    assert gate.threshold == 0.6
    assert gate.decide_signals(sig([0.6, 0.6])).keep
    assert not gate.decide_signals(sig([0.59, 0.59])).keep


def test_combined_thresholds_all_and_any() -> None:
    s = sig([0.9, 0.2], [0.1, 0.1])  # mean 0.55, min 0.2
    strict = GatePolicy(min_mean_prob=0.5, min_min_prob=0.3)
    assert not strict.decide_signals(s).keep
    assert any(r.startswith("fail: min_prob") for r in strict.decide_signals(s).reasons)
    lenient = GatePolicy(min_mean_prob=0.5, min_min_prob=0.3, combine="any")
    assert lenient.decide_signals(s).keep


def test_entropy_length_and_finished_checks() -> None:
    s = sig([0.9] * 10, [2.0] * 10)
    assert not GatePolicy(min_mean_prob=None, max_mean_entropy=1.0).decide_signals(s).keep
    assert not GatePolicy(min_mean_prob=None, max_length=5).decide_signals(s).keep
    assert not GatePolicy(require_finished=True).decide_signals(s, finished=False).keep
    assert GatePolicy(require_finished=True).decide_signals(s, finished=True).keep
