"""When a similar cached question may answer a new one: a static threshold, or a per-entry learned one.

:class:`StaticThreshold` is the field's usual rule (GPTCache 0.8, RedisVL 0.9): a hit when the cosine similarity
clears one global number.

:class:`AdaptiveThreshold` follows the method of vCache (Schroeder et al., "vCache: Verified Semantic Prompt
Caching", ICLR 2026; written from the paper, none of its code used). Each cached entry keeps the verified
observations of later questions matched against it: (similarity, whether its answer was right for them). The
probability that the entry's answer is right for a question at similarity ``s`` is modelled per entry as a
logistic curve, ``P(correct | s) = sigmoid(a + b (s - s0))`` (the paper's ``sigmoid(gamma (s - t))``, threshold
``t = s0 - a / b``), fitted online by maximum a-posteriori estimation, with a Laplace posterior. As in the paper,
the decision is randomised so that the error rate is bounded per request: with ``e`` the *upper confidence bound*
of the entry's error probability at ``s`` and ``delta`` the user's ``max_false_hit_rate``, the cached answer is
served with probability ``min(1, delta / e)`` and otherwise explored (answered afresh). A request is then
answered wrongly from the cache with probability at most ``min(1, delta / e) * e <= delta``.

* an entry that has seen close hard negatives learns a high threshold, one that has only seen paraphrases a
  lower one, so the bound holds per entry instead of on average;
* an explored question is answered afresh and the two answers are compared (the *verification* that feeds the
  curve); a served hit is verified again at ``verify_rate`` (at the cost of a model call), and a user's "wrong
  answer" is one more observation.

Where the paper starts each entry from no knowledge, the prior of each entry's curve here is the curve fitted on
all entries' observations together (a hierarchical prior), so a new entry starts from what the cache has learned
about the embedding model's similarities rather than from scratch; its own observations then move it.
"""

from __future__ import annotations

import math
import random
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Sequence
from statistics import NormalDist
from typing import ClassVar, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

_S0 = 0.85  # centre of the similarity axis (keeps the two parameters nearly uncorrelated)


class Decision(NamedTuple):
    """A threshold's verdict on the nearest cached entry."""

    hit: bool
    """Serve the cached answer."""
    p_wrong: float | None = None
    """The (upper bound of the) probability that the cached answer is wrong for this question, when modelled."""
    serve_probability: float | None = None
    """The probability with which a randomised threshold served it."""


class Threshold(BaseModel, ABC):
    """Decides whether the nearest cached entry answers a question, and learns from verified outcomes."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    kind: ClassVar[str] = ""

    @abstractmethod
    def decide(self, similarity: float, observations: Sequence[tuple[float, bool]]) -> Decision:
        """The verdict for a question at ``similarity`` to an entry with these verified observations."""

    def learn(self, similarity: float, correct: bool) -> None:  # noqa: B027 - optional hook
        """A verified outcome (any entry): thresholds with a shared prior update it."""


class StaticThreshold(Threshold):
    """A hit when the similarity is at least ``similarity``."""

    kind = "static"

    similarity: float = Field(default=0.9, ge=0.0, le=1.0)
    """The global similarity threshold."""

    def decide(self, similarity: float, observations: Sequence[tuple[float, bool]]) -> Decision:
        return Decision(hit=similarity >= self.similarity)


def _fit(s: np.ndarray, y: np.ndarray, mean: np.ndarray, prec: np.ndarray, iters: int = 25
         ) -> tuple[np.ndarray, np.ndarray]:
    """MAP logistic regression of y on (1, s - s0) under a Gaussian prior (damped Newton steps); returns
    (params, Laplace posterior covariance)."""
    x = np.stack([np.ones_like(s), s - _S0], axis=1)

    def objective(w: np.ndarray) -> float:
        eta = x @ w
        return float(np.sum(y * eta - np.logaddexp(0.0, eta)) - 0.5 * (w - mean) @ prec @ (w - mean))

    w = mean.copy()
    current = objective(w)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -30, 30)))
        grad = x.T @ (y - p) - prec @ (w - mean)
        hess = (x * (p * (1 - p))[:, None]).T @ x + prec
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while scale > 1e-4:  # backtrack until the posterior improves
            trial = w + scale * step
            value = objective(trial)
            if value >= current - 1e-12:
                break
            scale /= 2
        w, improvement, current = trial, value - current, value
        if improvement < 1e-9:
            break
    p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -30, 30)))
    hess = (x * (p * (1 - p))[:, None]).T @ x + prec
    return w, np.linalg.inv(hess)


class AdaptiveThreshold(Threshold):
    """vCache's per-entry threshold under a user-set error bound (see the module docstring).

    Args:
        max_false_hit_rate: the bound on the probability that a served answer is wrong (the paper's delta).
        confidence: one-sided confidence of the bound on each entry's error probability.
        prior_threshold, prior_slope: the curve before anything was verified (``t`` and ``gamma``).
        spread: how far one entry's curve may sit from the shared one a priori (standard deviation of its
            intercept and slope); smaller trusts the shared curve more.
        max_observations: most recent observations kept for the shared curve.
    """

    kind = "adaptive"

    max_false_hit_rate: float = Field(default=0.01, gt=0.0, lt=1.0)
    """Most accepted probability that a served cached answer is wrong."""
    confidence: float = Field(default=0.8, gt=0.5, lt=1.0)
    """Confidence of the upper bound on an entry's error probability."""
    prior_threshold: float = Field(default=0.95, ge=0.0, le=1.0)
    """The similarity at which a new entry's answer is right half the time, before any verification."""
    prior_slope: float = Field(default=40.0, gt=0.0)
    """The steepness of that curve before any verification."""
    spread: tuple[float, float] = (0.25, 3.0)
    """Prior standard deviation of one entry's intercept and slope around the shared curve."""
    max_observations: int = Field(default=20_000, ge=10)
    """Most recent verified observations the shared curve is fitted on."""
    seed: int | None = None
    """Seed of the randomised decisions (``None``: random)."""

    _shared: deque[tuple[float, bool]] = PrivateAttr(default=None)  # type: ignore[assignment]
    _shared_fit: tuple[np.ndarray, np.ndarray] | None = PrivateAttr(default=None)
    _since_fit: int = PrivateAttr(default=0)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    _rng: random.Random = PrivateAttr(default=None)  # type: ignore[assignment]

    def model_post_init(self, context: object) -> None:
        self._shared = deque(maxlen=self.max_observations)
        self._rng = random.Random(self.seed)

    def _prior0(self) -> tuple[np.ndarray, np.ndarray]:
        b = self.prior_slope
        mean = np.array([b * (_S0 - self.prior_threshold), b])
        return mean, np.diag([1 / 4.0**2, 1 / 40.0**2])

    def learn(self, similarity: float, correct: bool) -> None:
        with self._lock:
            self._shared.append((float(similarity), bool(correct)))
            self._since_fit += 1
            if self._shared_fit is None or self._since_fit >= max(10, len(self._shared) // 20):
                self._refit()

    def _refit(self) -> None:
        data = np.asarray(self._shared, dtype=np.float64)
        mean, prec = self._prior0()
        self._shared_fit = _fit(data[:, 0], data[:, 1], mean, prec)
        self._since_fit = 0

    def shared_curve(self) -> tuple[float, float]:
        """The shared curve as (threshold t, slope gamma): what a new entry starts from."""
        mean = self._shared_fit[0] if self._shared_fit is not None else self._prior0()[0]
        a, b = float(mean[0]), float(mean[1])
        return (_S0 - a / b if b > 0 else 1.0), b

    def _entry_prior(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            fit = self._shared_fit
        if fit is None:
            mean, prec = self._prior0()
            return mean, prec
        mean, cov = fit
        return mean, np.linalg.inv(cov + np.diag(np.square(self.spread)))

    def decide(self, similarity: float, observations: Sequence[tuple[float, bool]]) -> Decision:
        mean, prec = self._entry_prior()
        if observations:
            obs = np.asarray(observations[-200:], dtype=np.float64)
            w, cov = _fit(obs[:, 0], obs[:, 1], mean, prec)
        else:
            w, cov = mean, np.linalg.inv(prec)
        x = np.array([1.0, similarity - _S0])
        eta = float(x @ w)
        sd = math.sqrt(max(float(x @ cov @ x), 0.0))
        z = NormalDist().inv_cdf(self.confidence)
        p_wrong = 1.0 - 1.0 / (1.0 + math.exp(-max(min(eta - z * sd, 30.0), -30.0)))
        serve = min(1.0, self.max_false_hit_rate / max(p_wrong, 1e-12))
        with self._lock:
            draw = self._rng.random()
        return Decision(hit=draw < serve, p_wrong=p_wrong, serve_probability=serve)


#: Threshold kinds by name.
THRESHOLDS: dict[str, type[Threshold]] = {cls.kind: cls for cls in (StaticThreshold, AdaptiveThreshold)}

__all__ = ["THRESHOLDS", "AdaptiveThreshold", "Decision", "StaticThreshold", "Threshold"]
