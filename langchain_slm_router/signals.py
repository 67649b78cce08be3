"""Confidence signals computed from the small model's own token probabilities.

The SLM is asked to answer; while it generates, the probability it gave each token it chose (and the entropy of
each next-token distribution) are kept. :class:`ConfidenceSignals` summarises them; the gate
(:mod:`langchain_slm_router.gate`) decides on these numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

#: Signals for which a *higher* value means *more* confident.
HIGHER_IS_CONFIDENT: dict[str, bool] = {
    "mean_prob": True,
    "min_prob": True,
    "mean_logprob": True,
    "mean_entropy": False,
    "length": False,
}


class ConfidenceSignals(BaseModel):
    """Summary of one generated answer's token probabilities.

    Attributes:
        mean_prob: mean probability of the chosen tokens, in [0, 1] (the default gate signal).
        min_prob: smallest chosen-token probability, in [0, 1].
        mean_entropy: mean entropy (nats) of the next-token distributions, >= 0.
        mean_logprob: mean natural-log probability of the chosen tokens, <= 0.
        length: number of answer tokens (end-of-sequence excluded).
    """

    model_config = ConfigDict(frozen=True)

    mean_prob: float = Field(ge=0.0, le=1.0)
    min_prob: float = Field(ge=0.0, le=1.0)
    mean_entropy: float = Field(ge=0.0)
    mean_logprob: float = Field(le=0.0)
    length: int = Field(ge=0)

    @classmethod
    def from_tokens(
        cls, token_probs: Sequence[float], token_entropies: Sequence[float]
    ) -> ConfidenceSignals:
        """Summarise per-token probabilities and entropies. An empty answer has zero confidence."""
        if len(token_probs) != len(token_entropies):
            raise ValueError("token_probs and token_entropies must have the same length")
        n = len(token_probs)
        if n == 0:
            return cls(mean_prob=0.0, min_prob=0.0, mean_entropy=0.0, mean_logprob=-1e9, length=0)
        probs = [min(1.0, max(0.0, float(p))) for p in token_probs]
        logps = [math.log(p) if p > 0 else -1e9 for p in probs]
        return cls(
            mean_prob=sum(probs) / n,
            min_prob=min(probs),
            mean_entropy=max(0.0, sum(float(h) for h in token_entropies) / n),
            mean_logprob=min(0.0, sum(logps) / n),
            length=n,
        )
