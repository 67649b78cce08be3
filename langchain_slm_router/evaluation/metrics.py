"""Metrics over a system's per-question outcomes: quality, cost, routing quality and latency.

* quality: mean per-question score (SQuAD F1, exact match / accuracy elsewhere); ``pct_of_llm``: as a percentage
  of always-LLM quality on the same questions.
* stage shares, LLM calls and ``pct_llm_avoided`` (100 - LLM calls as % of always-LLM's, which calls it for every
  question).
* routing precision / recall / F1 over the questions the gate decided on: positive = should escalate (the SLM's
  answer is wrong), predicted positive = escalated.
* AUROC of each confidence signal for predicting that the SLM's answer is correct (signals oriented so that
  higher means more confident), computed by the rank-sum (Mann-Whitney) formula with ties counted half.
* latency mean / p50 / p95 per question, total wall time and speedup = always-LLM total / system total.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from langchain_slm_router.evaluation.systems import Outcome, Record
from langchain_slm_router.signals import HIGHER_IS_CONFIDENT

SIGNALS = ("mean_prob", "min_prob", "mean_logprob", "mean_entropy", "length")


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in [0, 100]) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve of ``scores`` for ``labels`` (True = positive); ``None`` with one class only."""
    if len(scores) != len(labels):
        raise ValueError("scores and labels must have the same length")
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    if not pos or not neg:
        return None
    # rank-sum with average ranks for ties
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        avg = (i + j) / 2.0 + 1.0
        for k in range(i, j + 1):
            ranks[order[k]] = avg
        i = j + 1
    rank_pos = sum(r for r, y in zip(ranks, labels) if y)
    return (rank_pos - len(pos) * (len(pos) + 1) / 2.0) / (len(pos) * len(neg))


def expected_calibration_error(probs: Sequence[float], labels: Sequence[Any], bins: int = 10) -> float:
    """ECE: the sample-weighted mean |accuracy - confidence| over ``bins`` equal-width probability bins."""
    n = len(probs)
    if n == 0:
        return 0.0
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, p in enumerate(probs) if (lo <= p < hi) or (b == bins - 1 and p == 1.0)]
        if idx:
            conf = sum(probs[i] for i in idx) / len(idx)
            acc = sum(bool(labels[i]) for i in idx) / len(idx)
            total += len(idx) / n * abs(acc - conf)
    return total


def precision_recall_f1(predicted: Sequence[bool], actual: Sequence[bool]) -> tuple[float | None, float | None,
                                                                                      float | None]:
    """Precision, recall and F1 of ``predicted`` positives against ``actual`` ones (``None`` when undefined)."""
    tp = sum(p and a for p, a in zip(predicted, actual))
    fp = sum(p and not a for p, a in zip(predicted, actual))
    fn = sum(a and not p for p, a in zip(predicted, actual))
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    if precision is None or recall is None:
        f1 = None
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def signal_aurocs(records: Sequence[Record]) -> dict[str, float | None]:
    """AUROC of each SLM confidence signal for predicting that the SLM's answer is correct."""
    rows = [r for r in records if (r.get("slm") or {}).get("signals")]
    labels = [bool(r["slm"].get("correct")) for r in rows]
    out: dict[str, float | None] = {}
    for name in SIGNALS:
        sign = 1.0 if HIGHER_IS_CONFIDENT[name] else -1.0
        out[name] = auroc([sign * float(r["slm"]["signals"][name]) for r in rows], labels)
    return out


class SystemMetrics(BaseModel):
    """One row of the results table."""

    system: str
    threshold: float | None = None
    n: int
    quality: float
    em: float
    f1: float
    pct_of_llm: float | None
    share_math: float
    share_slm: float
    share_llm: float
    llm_calls: int
    pct_llm_avoided: float
    routing_precision: float | None = None
    routing_recall: float | None = None
    routing_f1: float | None = None
    latency_mean_ms: float
    latency_p50_ms: float
    latency_p95_ms: float
    total_s: float
    speedup_vs_llm: float | None


def summarize(system: str, outcomes: Sequence[Outcome], records: Sequence[Record],
              llm_outcomes: Sequence[Outcome], threshold: float | None = None) -> SystemMetrics:
    """Metrics of one system; ``llm_outcomes`` are always-LLM's on the same questions (the baseline)."""
    n = len(outcomes)
    if n == 0:
        raise ValueError("no outcomes to summarise")
    quality = sum(o.score for o in outcomes) / n
    llm_quality = sum(o.score for o in llm_outcomes) / len(llm_outcomes) if llm_outcomes else 0.0
    lat = [o.latency_ms for o in outcomes]
    total = sum(lat) / 1000.0
    llm_total = sum(o.latency_ms for o in llm_outcomes) / 1000.0
    llm_calls = sum(o.llm_called for o in outcomes)
    gated = [(o, r) for o, r in zip(outcomes, records) if o.gated and (r.get("slm") or {}).get("signals")]
    routing: tuple[float | None, float | None, float | None] = (None, None, None)
    if gated:
        routing = precision_recall_f1([o.escalated for o, _ in gated],
                                      [not bool(r["slm"].get("correct")) for _, r in gated])
    return SystemMetrics(
        system=system, threshold=threshold, n=n, quality=quality,
        em=sum(o.em for o in outcomes) / n, f1=sum(o.f1 for o in outcomes) / n,
        pct_of_llm=100.0 * quality / llm_quality if llm_quality > 0 else None,
        share_math=sum(o.stage == "math" for o in outcomes) / n,
        share_slm=sum(o.stage == "slm" for o in outcomes) / n,
        share_llm=sum(o.stage == "llm" for o in outcomes) / n,
        llm_calls=llm_calls, pct_llm_avoided=100.0 * (1.0 - llm_calls / n),
        routing_precision=routing[0], routing_recall=routing[1], routing_f1=routing[2],
        latency_mean_ms=sum(lat) / n, latency_p50_ms=percentile(lat, 50), latency_p95_ms=percentile(lat, 95),
        total_s=total, speedup_vs_llm=llm_total / total if total > 0 else None,
    )


def sweep(records: Sequence[Record], thresholds: Sequence[float]) -> list[dict[str, Any]]:
    """Quality and LLM-call share of the router at each threshold (the quality vs % LLM calls curve)."""
    from langchain_slm_router.evaluation import systems

    out = []
    n = len(records)
    for t in thresholds:
        outs = [systems.router(r, t) for r in records]
        out.append({"threshold": t, "quality": sum(o.score for o in outs) / n,
                    "llm_share": sum(o.llm_called for o in outs) / n,
                    "latency_mean_ms": sum(o.latency_ms for o in outs) / n})
    return out


def default_thresholds(records: Sequence[Record], steps: int = 41) -> list[float]:
    """An even grid on [0, 1] plus every distinct mean_prob value (so every distinct decision is covered)."""
    grid = {round(i / (steps - 1), 6) for i in range(steps)}
    values = {round(float(r["slm"]["signals"]["mean_prob"]), 6) for r in records
              if (r.get("slm") or {}).get("signals")}
    return sorted(grid | values)


__all__ = ["SIGNALS", "SystemMetrics", "auroc", "default_thresholds", "expected_calibration_error", "percentile",
           "precision_recall_f1",
           "signal_aurocs", "summarize", "sweep"]
