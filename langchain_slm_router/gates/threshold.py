"""The confidence gate: keep the small model's answer, or escalate to the large model.

:class:`GatePolicy` is a small, pydantic-configured policy. The default is the seed rule: keep the SLM answer when
its mean token probability is at least 0.6. Thresholds on the other signals can be added; ``combine`` says
whether every configured threshold must pass (``"all"``, the default) or any one (``"any"``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar, Literal

from pydantic import Field

from langchain_slm_router.gates.base import Gate, GateDecision, register_gate
from langchain_slm_router.signals import ConfidenceSignals
from langchain_slm_router.slm.base import ChatMessageDict, EarlyExit, SLMGeneration

DEFAULT_THRESHOLD = 0.6


@register_gate
class GatePolicy(Gate):
    """Thresholds on the SLM's confidence signals; ``None`` disables a check.

    Args:
        min_mean_prob: keep only when mean token probability >= this (seed rule: 0.6).
        min_min_prob: keep only when the least likely answer token has probability >= this.
        max_mean_entropy: keep only when mean next-token entropy (nats) <= this.
        min_mean_logprob: keep only when mean token log-probability >= this.
        max_length: keep only when the answer has at most this many tokens.
        require_finished: keep only answers the model ended itself (not cut by ``max_new_tokens``).
        combine: ``"all"`` checks must pass, or ``"any"`` one of them.
    """

    gate_name: ClassVar[str] = "threshold"

    min_mean_prob: float | None = Field(default=DEFAULT_THRESHOLD, ge=0.0, le=1.0)
    min_min_prob: float | None = Field(default=None, ge=0.0, le=1.0)
    max_mean_entropy: float | None = Field(default=None, ge=0.0)
    min_mean_logprob: float | None = Field(default=None, le=0.0)
    max_length: int | None = Field(default=None, ge=1)
    require_finished: bool = False
    combine: Literal["all", "any"] = "all"
    early_exit_enabled: bool = True
    """Stop the SLM as soon as its answer can no longer pass (exact: decisions are unchanged)."""

    @property
    def threshold(self) -> float | None:
        """The headline threshold (on mean token probability) reported in traces."""
        return self.min_mean_prob

    def with_threshold(self, threshold: float) -> GatePolicy:
        """A copy with ``min_mean_prob=threshold``."""
        return self.model_copy(update={"min_mean_prob": float(threshold)})

    def early_exit(self) -> EarlyExit | None:
        """The exact stop rule for the probability checks, when ``early_exit=True`` (else ``None``).

        After each token it asks, for every configured check on token probabilities, whether the finished answer
        could still pass it: ``min_prob`` fails for good once a token falls below it; ``mean_prob`` (and
        ``mean_logprob``) once even all-perfect remaining tokens (probability 1) could not lift the mean to the
        threshold; ``max_length`` once the answer is longer. With ``combine="all"`` one impossible check stops
        the answer, with ``"any"`` all of them must be impossible (and a check the rule cannot bound, such as
        entropy or ``require_finished``, keeps it going). It never stops an answer the full rule would keep.
        """
        if not self.early_exit_enabled:
            return None
        rule = _EarlyExitRule(self.min_mean_prob, self.min_min_prob, self.min_mean_logprob, self.max_length,
                              other_checks=self.max_mean_entropy is not None or self.require_finished,
                              combine=self.combine)
        return rule if rule.bounded else None

    def checks(self, signals: ConfidenceSignals, finished: bool = True) -> list[tuple[bool, str]]:
        """Each configured check as (passed, description)."""
        out: list[tuple[bool, str]] = []
        if self.min_mean_prob is not None:
            out.append((signals.mean_prob >= self.min_mean_prob,
                        f"mean_prob {signals.mean_prob:.3f} >= {self.min_mean_prob}"))
        if self.min_min_prob is not None:
            out.append((signals.min_prob >= self.min_min_prob,
                        f"min_prob {signals.min_prob:.3f} >= {self.min_min_prob}"))
        if self.max_mean_entropy is not None:
            out.append((signals.mean_entropy <= self.max_mean_entropy,
                        f"mean_entropy {signals.mean_entropy:.3f} <= {self.max_mean_entropy}"))
        if self.min_mean_logprob is not None:
            out.append((signals.mean_logprob >= self.min_mean_logprob,
                        f"mean_logprob {signals.mean_logprob:.3f} >= {self.min_mean_logprob}"))
        if self.max_length is not None:
            out.append((signals.length <= self.max_length, f"length {signals.length} <= {self.max_length}"))
        if self.require_finished:
            out.append((finished, "answer finished before max_new_tokens"))
        return out

    def decide(self, generation: SLMGeneration, messages: Sequence[ChatMessageDict] = ()) -> GateDecision:
        """Keep or escalate ``generation``. An empty answer is always escalated."""
        return self.decide_signals(generation.signals, generation.finished)

    def decide_signals(self, signals: ConfidenceSignals, finished: bool = True) -> GateDecision:
        """The decision from the summary signals alone (what :meth:`decide` uses)."""
        checks = self.checks(signals, finished)
        reasons = [("pass: " if ok else "fail: ") + text for ok, text in checks]
        if signals.length == 0:
            return GateDecision(keep=False, reasons=[*reasons, "fail: empty answer"])
        if not checks:
            return GateDecision(keep=True, reasons=["no checks configured: keep"])
        results = [ok for ok, _ in checks]
        keep = all(results) if self.combine == "all" else any(results)
        return GateDecision(keep=keep, reasons=reasons)


class _EarlyExitRule:
    """Callable ``(token_probs_so_far, tokens_left) -> bool``: True when the answer can no longer be kept."""

    def __init__(self, min_mean_prob: float | None, min_min_prob: float | None, min_mean_logprob: float | None,
                 max_length: int | None, *, other_checks: bool, combine: str) -> None:
        self.min_mean_prob, self.min_min_prob = min_mean_prob, min_min_prob
        self.min_mean_logprob, self.max_length = min_mean_logprob, max_length
        self.other_checks, self.combine = other_checks, combine

    @property
    def bounded(self) -> bool:
        """Whether any configured check can be decided before the answer ends."""
        some = any(v is not None for v in (self.min_mean_prob, self.min_min_prob, self.min_mean_logprob,
                                           self.max_length))
        return some and (self.combine == "all" or not self.other_checks)

    def __call__(self, probs: Sequence[float], tokens_left: int) -> bool:
        n = len(probs)
        if n == 0:
            return False
        impossible: list[bool] = []
        if self.min_mean_prob is not None:
            # the mean after j more perfect tokens, (sum + j) / (n + j), is largest at j = tokens_left
            impossible.append((sum(probs) + tokens_left) / (n + tokens_left) < self.min_mean_prob)
        if self.min_min_prob is not None:
            impossible.append(min(probs) < self.min_min_prob)
        if self.min_mean_logprob is not None:
            total = sum(math.log(p) if p > 0 else -1e9 for p in probs)
            impossible.append(total / (n + tokens_left) < self.min_mean_logprob)
        if self.max_length is not None:
            impossible.append(n > self.max_length)
        if self.combine == "all":
            return any(impossible)
        return not self.other_checks and all(impossible)
