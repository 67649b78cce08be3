"""The route trace that every answer carries: which stage answered, with what evidence, how fast."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from langchain_slm_router.signals import ConfidenceSignals


def elapsed_ms(start: float) -> float:
    """Milliseconds since ``start`` (a ``time.perf_counter()`` reading), to the microsecond: every latency in a
    trace, a generation or an evaluation record is measured with it."""
    return round((time.perf_counter() - start) * 1000.0, 3)

Stage = Literal["math", "cache", "slm", "llm"]


class RouteResult(BaseModel):
    """An answer and its trace.

    Attributes:
        answer: the text returned to the caller.
        stage: which component answered: ``"math"`` (sympy), ``"cache"`` (an answer cached earlier),
            ``"slm"`` (local small model) or ``"llm"`` (the large-model fallback).
        reason: one line on why this stage answered.
        signals: the SLM's confidence signals, when the SLM ran.
        threshold: the gate's headline threshold (minimum mean token probability).
        gate_reasons: each gate check, passed or failed.
        p_correct: the gate's calibrated probability that the SLM's answer is right (learned gates).
        gate_features: the numbers a learned gate decided on.
        early_exit: True when the SLM stopped generating early because the gate could no longer keep its answer.
        latency_ms: time per stage that ran (``math``, ``slm``, ``llm``) and ``total``, in milliseconds.
        fallback_tried: whether the large model was called.
        fallback_model: the fallback's name, when it was tried.
        fallback_error: the fallback's error message, when it failed and ``on_fallback_error="return_slm"``
            returned the SLM's answer instead.
        low_confidence: True when the answer is the SLM's although the gate did not accept it.
        slm_answer: the SLM's draft answer, also when it was escalated.
        math_kind: the kind of math problem, when the math engine answered.
        cache_match, cache_similarity, cache_age_s, cached_stage, cache_entry_id: for a cache hit, how it
            matched (``exact``/``semantic``), the similarity, the cached entry's age, the stage that first gave the
            answer, and the entry (``entry_id`` of a stored answer too, for ``SLMRouter.feedback``).
        usage: token counts of the models that ran (``slm_input_tokens``, ``slm_output_tokens``,
            ``llm_input_tokens``, ``llm_output_tokens``).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    answer: str
    stage: Stage
    reason: str
    signals: ConfidenceSignals | None = None
    threshold: float | None = None
    gate_reasons: list[str] = Field(default_factory=list)
    p_correct: float | None = None
    gate_features: dict[str, float] | None = None
    early_exit: bool = False
    latency_ms: dict[str, float] = Field(default_factory=dict)
    fallback_tried: bool = False
    fallback_model: str | None = None
    fallback_error: str | None = None
    low_confidence: bool = False
    slm_model: str | None = None
    slm_answer: str | None = None
    math_kind: str | None = None
    usage: dict[str, int] = Field(default_factory=dict)
    cache_match: Literal["exact", "semantic"] | None = None
    """How the cached answer matched the question (cache hits only)."""
    cache_similarity: float | None = None
    """Cosine similarity of the question to the cached one (1.0 for an exact match)."""
    cache_age_s: float | None = None
    """Seconds since the served answer was cached."""
    cached_stage: str | None = None
    """The stage that produced the cached answer (``slm`` or ``llm``)."""
    cache_entry_id: str | None = None
    """The cache entry that served this answer, or that stores it."""
    llm_message: Any = Field(default=None, exclude=True, repr=False)
    """The fallback's own ``AIMessage`` (tool calls, metadata), when it answered; not serialised."""

    @property
    def input_tokens(self) -> int:
        """Prompt tokens of every model that ran (the SLM's included when its draft was escalated)."""
        return int(self.usage.get("slm_input_tokens", 0)) + int(self.usage.get("llm_input_tokens", 0))

    @property
    def output_tokens(self) -> int:
        """Generated tokens of every model that ran (the SLM's draft included when it was escalated)."""
        return int(self.usage.get("slm_output_tokens", 0)) + int(self.usage.get("llm_output_tokens", 0))

    @property
    def total_tokens(self) -> int:
        """``input_tokens + output_tokens``: the one token total both integrations report."""
        return self.input_tokens + self.output_tokens

    def trace(self) -> dict[str, Any]:
        """The trace as a JSON-ready dict (everything except the raw fallback message)."""
        return self.model_dump(mode="json")
