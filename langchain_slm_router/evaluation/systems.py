"""The systems compared, derived from cached per-question records.

Each question is answered once by every component: the math engine (``record["math"]``, ``None`` when it
declined), the SLM alone (``record["slm"]``) and the LLM alone (``record["llm"]``), each with its score and
measured latency. A system is then a rule that picks, per question, which of those answers is returned and which
stages ran, so the router at any threshold (and the oracle) costs nothing to evaluate:

* ``always-SLM``: the SLM answers everything (latency = SLM time).
* ``always-LLM``: the LLM answers everything (latency = LLM time).
* ``router@t``: the pipeline of :class:`~langchain_slm_router.router.SLMRouter`: the math engine's answer when it
  solves the query (latency = math time), else the SLM's when :class:`~langchain_slm_router.gates.GatePolicy`
  with ``min_mean_prob=t`` keeps it (math + SLM time), else the LLM's (math + SLM + LLM time).
* ``oracle``: like the router, but escalates exactly when the SLM's answer is wrong (the upper bound of any
  gate on this SLM and LLM).
* ``router (live)``: the answers and latencies of real ``SLMRouter.route()`` calls (``record["live_router"]``)
  with the real ``ChatOllama`` fallback, when the run measured them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from langchain_slm_router.gates import Gate, GatePolicy
from langchain_slm_router.slm.base import SLMGeneration
from langchain_slm_router.signals import ConfidenceSignals

Record = dict[str, Any]


class Outcome(BaseModel):
    """What one system did on one question."""

    model_config = ConfigDict(frozen=True)

    stage: str
    """``math``, ``slm`` or ``llm``: whose answer was returned."""
    score: float
    correct: bool
    em: float
    f1: float
    latency_ms: float
    llm_called: bool
    gated: bool
    """Whether the confidence gate decided on this question (the math engine did not answer it)."""
    escalated: bool
    """Whether the gate sent the question on to the LLM."""


def _part(record: Record, name: str) -> dict[str, Any]:
    part = record.get(name) or {}
    return part


def _outcome(record: Record, stage: str, latency: float, gated: bool, escalated: bool) -> Outcome:
    part = _part(record, stage)
    return Outcome(stage=stage, score=float(part.get("score", 0.0)), correct=bool(part.get("correct", False)),
                   em=float(part.get("em", 0.0)), f1=float(part.get("f1", 0.0)), latency_ms=float(latency),
                   llm_called=stage == "llm", gated=gated, escalated=escalated)


def slm_signals(record: Record) -> ConfidenceSignals | None:
    """The SLM's confidence signals of a record (``None`` when the SLM did not answer)."""
    signals = _part(record, "slm").get("signals")
    return ConfidenceSignals(**signals) if signals else None


def record_generation(record: Record) -> SLMGeneration | None:
    """The record's SLM answer as an :class:`SLMGeneration` (``None`` when the SLM did not answer)."""
    slm = _part(record, "slm")
    signals = slm_signals(record)
    if signals is None:
        return None
    return SLMGeneration(text=slm.get("text", ""), token_probs=slm.get("token_probs", []),
                         token_entropies=slm.get("token_entropies", []), signals=signals,
                         input_tokens=int(slm.get("input_tokens", 0)), output_tokens=int(slm.get("output_tokens", 0)),
                         finished=bool(slm.get("finished", True)), latency_ms=float(slm.get("latency_ms", 0.0)),
                         hidden=slm.get("hidden") or None)


def record_messages(record: Record) -> list[dict[str, str]]:
    """The conversation the record's SLM answered (the harness asks one user message)."""
    return [{"role": "user", "content": str(record.get("prompt", record.get("question", "")))}]


def gate_keeps(record: Record, threshold: float, policy: Gate | None = None) -> bool:
    """Whether ``policy`` (default :class:`GatePolicy`) at headline ``threshold`` keeps the record's SLM answer."""
    gen = record_generation(record)
    if gen is None:
        return False
    gate = (policy or GatePolicy()).with_threshold(threshold)
    return gate.decide(gen, record_messages(record)).keep


def always_slm(record: Record) -> Outcome:
    slm = _part(record, "slm")
    return _outcome(record, "slm", slm.get("latency_ms", 0.0), gated=False, escalated=False)


def always_llm(record: Record) -> Outcome:
    return _outcome(record, "llm", _part(record, "llm").get("latency_ms", 0.0), gated=False, escalated=False)


def _pipeline(record: Record, keep: bool) -> Outcome:
    math = record.get("math")
    math_ms = float(record.get("math_latency_ms", 0.0))
    if math:
        return _outcome(record, "math", math_ms, gated=False, escalated=False)
    slm = _part(record, "slm")
    slm_ms = float(slm.get("latency_ms", 0.0))
    if slm.get("signals") and keep:
        return _outcome(record, "slm", math_ms + slm_ms, gated=True, escalated=False)
    llm_ms = float(_part(record, "llm").get("latency_ms", 0.0))
    return _outcome(record, "llm", math_ms + slm_ms + llm_ms, gated=True, escalated=True)


def router(record: Record, threshold: float, policy: Gate | None = None) -> Outcome:
    """The math -> SLM -> gate -> LLM pipeline with ``policy`` at headline ``threshold``."""
    return _pipeline(record, gate_keeps(record, threshold, policy))


def oracle(record: Record) -> Outcome:
    """Escalate exactly when the SLM's answer is wrong."""
    return _pipeline(record, bool(_part(record, "slm").get("correct", False)))


def live_router(record: Record) -> Outcome | None:
    """The measured ``SLMRouter.route()`` call of this record, when the run made one."""
    live = record.get("live_router")
    if not live:
        return None
    stage = live["stage"]
    return Outcome(stage=stage, score=float(live.get("score", 0.0)), correct=bool(live.get("correct", False)),
                   em=float(live.get("em", 0.0)), f1=float(live.get("f1", 0.0)),
                   latency_ms=float(live.get("latency_ms", {}).get("total", 0.0)), llm_called=stage == "llm",
                   gated=stage != "math", escalated=stage == "llm")


__all__ = ["Outcome", "always_llm", "always_slm", "gate_keeps", "live_router", "oracle", "record_generation",
           "record_messages", "router", "slm_signals"]
