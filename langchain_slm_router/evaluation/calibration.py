"""Choose the gate threshold that meets a target on labelled data, and check it on held-out data.

Targets (one of):

* ``max_llm_share``: at most this fraction of queries may reach the LLM (e.g. 0.3 for "70% fewer LLM calls");
  the threshold with the best quality among those within the budget is chosen (ties: fewer LLM calls).
* ``min_quality_ratio``: quality must reach at least this fraction of always-LLM quality (e.g. 0.95); the
  threshold with the fewest LLM calls among those that reach it is chosen (ties: better quality).

When no threshold meets the target, the closest one is returned with ``met=False`` (the lowest LLM share, or the
best quality). The threshold is chosen on the calibration split only; :func:`calibrate` then reports what it gives
on a separate evaluation split, which took no part in the choice.

Python API::

    from langchain_slm_router.evaluation.calibration import CalibrationTarget, choose_threshold
    choice = choose_threshold(calib_records, CalibrationTarget(max_llm_share=0.3))
    router = SLMRouter(gate=GatePolicy(min_mean_prob=choice.threshold))
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field, model_validator

from langchain_slm_router.evaluation import systems
from langchain_slm_router.evaluation.metrics import default_thresholds
from langchain_slm_router.evaluation.systems import Record
from langchain_slm_router.gates import Gate, GatePolicy


class CalibrationTarget(BaseModel):
    """What the calibrated threshold must achieve (exactly one of the two)."""

    max_llm_share: float | None = Field(default=None, ge=0.0, le=1.0)
    min_quality_ratio: float | None = Field(default=None, gt=0.0)

    @model_validator(mode="after")
    def _one(self) -> CalibrationTarget:
        if (self.max_llm_share is None) == (self.min_quality_ratio is None):
            raise ValueError("give exactly one of max_llm_share or min_quality_ratio")
        return self

    def describe(self) -> str:
        if self.max_llm_share is not None:
            return f"at most {100 * self.max_llm_share:.0f}% LLM calls"
        return f"at least {100 * (self.min_quality_ratio or 0):.0f}% of always-LLM quality"


class ThresholdChoice(BaseModel):
    """The chosen threshold and what it gave on the data it was chosen on."""

    threshold: float
    met: bool
    quality: float
    llm_share: float
    llm_quality: float
    target: CalibrationTarget
    n: int


class CalibrationResult(BaseModel):
    """A threshold chosen on the calibration split and its result on the held-out split."""

    choice: ThresholdChoice
    heldout_quality: float
    heldout_llm_share: float
    heldout_llm_quality: float
    heldout_n: int
    heldout_met: bool


def _evaluate(records: Sequence[Record], threshold: float, gate: Gate | None = None) -> tuple[float, float]:
    outs = [systems.router(r, threshold, gate) for r in records]
    n = max(1, len(outs))
    return sum(o.score for o in outs) / n, sum(o.llm_called for o in outs) / n


def _llm_quality(records: Sequence[Record]) -> float:
    return sum(systems.always_llm(r).score for r in records) / max(1, len(records))


def _meets(target: CalibrationTarget, quality: float, share: float, llm_quality: float) -> bool:
    eps = 1e-9
    if target.max_llm_share is not None:
        return share <= target.max_llm_share + eps
    return quality >= (target.min_quality_ratio or 0.0) * llm_quality - eps


def _gate_scores(records: Sequence[Record], gate: Gate) -> list[float]:
    out = []
    for r in records:
        gen = systems.record_generation(r)
        if gen is not None and not r.get("math"):
            p = gate.decide(gen, systems.record_messages(r)).p_correct
            if p is not None:
                out.append(float(p))
    return out


def choose_threshold(records: Sequence[Record], target: CalibrationTarget,
                     thresholds: Sequence[float] | None = None, gate: Gate | None = None) -> ThresholdChoice:
    """The headline threshold of ``gate`` that meets ``target`` on ``records``.

    ``gate`` defaults to :class:`GatePolicy` (threshold on mean token probability); a :class:`LearnedGate`'s
    threshold is its minimum P(correct), searched over the P(correct) values the records give.
    """
    if not records:
        raise ValueError("calibration needs at least one labelled record")
    if thresholds is not None:
        grid = list(thresholds)
    elif gate is None or isinstance(gate, GatePolicy):
        grid = default_thresholds(records)
    else:
        grid = sorted({0.0, 1.0, *_gate_scores(records, gate)})
    llm_q = _llm_quality(records)
    rows = [(t, *_evaluate(records, t, gate)) for t in grid]
    ok = [row for row in rows if _meets(target, row[1], row[2], llm_q)]
    if ok:
        if target.max_llm_share is not None:
            best = max(ok, key=lambda r: (r[1], -r[2], -r[0]))
        else:
            best = min(ok, key=lambda r: (r[2], -r[1], r[0]))
        met = True
    else:
        best = min(rows, key=lambda r: (r[2], -r[1])) if target.max_llm_share is not None else \
            max(rows, key=lambda r: (r[1], -r[2]))
        met = False
    return ThresholdChoice(threshold=best[0], met=met, quality=best[1], llm_share=best[2], llm_quality=llm_q,
                           target=target, n=len(records))


def calibrate(calib_records: Sequence[Record], eval_records: Sequence[Record],
              target: CalibrationTarget, gate: Gate | None = None) -> CalibrationResult:
    """Choose on ``calib_records``, report on ``eval_records`` (which must be a different split)."""
    calib_ids = {r.get("id") for r in calib_records}
    if any(r.get("id") in calib_ids for r in eval_records):
        raise ValueError("the held-out split shares questions with the calibration split")
    choice = choose_threshold(calib_records, target, gate=gate)
    quality, share = _evaluate(eval_records, choice.threshold, gate)
    llm_q = _llm_quality(eval_records)
    return CalibrationResult(choice=choice, heldout_quality=quality, heldout_llm_share=share,
                             heldout_llm_quality=llm_q, heldout_n=len(eval_records),
                             heldout_met=_meets(target, quality, share, llm_q))


__all__ = ["CalibrationResult", "CalibrationTarget", "ThresholdChoice", "calibrate", "choose_threshold"]
