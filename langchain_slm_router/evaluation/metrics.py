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

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from langchain_slm_router.evaluation.systems import Outcome, Record
from langchain_slm_router.signals import HIGHER_IS_CONFIDENT
from langchain_slm_router.statistics import (  # re-exported: the formulas live in the leaf module
    auroc,
    expected_calibration_error,
    percentile,
    precision_recall_f1,
)

SIGNALS = ("mean_prob", "min_prob", "mean_logprob", "mean_entropy", "length")


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
