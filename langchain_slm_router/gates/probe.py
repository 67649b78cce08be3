"""A linear probe on the SLM's hidden states: a score for "this answer is right" from inside the model.

:class:`HiddenProbe` reads one named vector of :attr:`~langchain_slm_router.slm.SLMGeneration.hidden` (e.g.
``answer_mean@L15``: the middle layer averaged over the answer tokens, see :mod:`~langchain_slm_router.slm.hidden`),
standardises it, optionally projects it on principal components, and returns a logistic regression's log-odds.
It is fit with scikit-learn (``StandardScaler``, ``PCA``, ``LogisticRegression``) and stored as plain numbers in
the gate's JSON file, so evaluating it needs no scikit-learn and no pickle. A :class:`LearnedGate
<langchain_slm_router.gates.learned.LearnedGate>` uses its score as the feature ``hidden_probe``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import numpy as np

from pydantic import BaseModel, ConfigDict, Field, model_validator

from langchain_slm_router.errors import GateInputError

_Finite = Annotated[float, Field(allow_inf_nan=False)]


class HiddenProbe(BaseModel):
    """``score = intercept + coef . P((h - mean) / scale)``, ``P`` the optional PCA projection."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    vector: str
    """Which captured vector the probe reads (a key of ``SLMGeneration.hidden``)."""
    mean: list[_Finite]
    scale: list[_Finite]
    components: list[list[_Finite]] | None = None
    """PCA rows (``k x d``) applied to the standardised vector; ``None``: the probe reads all ``d`` numbers."""
    coef: list[_Finite]
    intercept: _Finite

    @model_validator(mode="after")
    def _shapes(self) -> HiddenProbe:
        d = len(self.mean)
        if d == 0 or len(self.scale) != d or any(s <= 0 for s in self.scale):
            raise ValueError("mean and scale must be non-empty, of one length, scale > 0")
        if self.components is not None:
            if not self.components or any(len(row) != d for row in self.components):
                raise ValueError("components must be k rows of the vector's length")
            if len(self.coef) != len(self.components):
                raise ValueError("coef needs one entry per component")
        elif len(self.coef) != d:
            raise ValueError("coef needs one entry per vector entry")
        return self

    @property
    def dim(self) -> int:
        return len(self.mean)

    def score(self, hidden: Mapping[str, Sequence[float]] | None) -> float:
        """The probe's log-odds for one answer's hidden vectors.

        Raises:
            GateInputError: the answer carries no such vector (the SLM backend does not capture hidden states, or
                not at this layer).
        """
        if not hidden or self.vector not in hidden:
            have = sorted(hidden) if hidden else "none"
            raise GateInputError(
                f"This gate's hidden-state probe reads {self.vector!r}, which the SLM's answer lacks (it has: "
                f"{have}). Use a LocalSLM that captures that layer (hidden_layers), or a gate without a probe "
                "(gate='threshold', or a LearnedGate fitted without hidden states).")
        h = hidden[self.vector]
        if len(h) != self.dim:
            raise GateInputError(f"The probe reads {self.dim} numbers from {self.vector!r} but got {len(h)}: the "
                                 "gate was fitted for another model.")
        mean, scale, components, coef = self._arrays
        z = (np.asarray(h, dtype=np.float64) - mean) / scale
        if components is not None:
            z = components @ z
        return float(self.intercept + coef @ z)

    @functools.cached_property
    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
        """The stored numbers as float64 arrays, built once per probe (a score is then two small mat-vec products)."""
        comps = None if self.components is None else np.asarray(self.components, dtype=np.float64)
        return (np.asarray(self.mean, dtype=np.float64), np.asarray(self.scale, dtype=np.float64), comps,
                np.asarray(self.coef, dtype=np.float64))

    @classmethod
    def fit(cls, vectors: Any, labels: Sequence[bool], vector: str, *, components: int | None = 64,
            c: float = 0.05, seed: int = 0) -> HiddenProbe:
        """Fit on an ``(n, d)`` array of one named vector per answer and whether each answer was right."""
        import numpy as np
        from sklearn.decomposition import PCA
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        X = np.asarray(vectors, dtype=np.float64)
        y = np.asarray([bool(v) for v in labels], dtype=int)
        scaler = StandardScaler().fit(X)
        scale = np.where(scaler.scale_ > 1e-9, scaler.scale_, 1.0)
        Z = (X - scaler.mean_) / scale
        rows = None
        if components is not None and components < min(X.shape):
            pca = PCA(n_components=components, random_state=seed).fit(Z)
            # PCA centres again; Z is already centred on the fitting rows, so its mean_ is ~0: fold it in exactly
            rows = pca.components_
            Z = (Z - pca.mean_) @ rows.T
            intercept_shift = -(pca.mean_ @ rows.T)
        clf = LogisticRegression(C=c, max_iter=5000, class_weight="balanced").fit(Z, y)
        coef = clf.coef_[0]
        intercept = float(clf.intercept_[0])
        if rows is not None:
            intercept += float(coef @ intercept_shift)
        return cls(vector=vector, mean=scaler.mean_.tolist(), scale=scale.tolist(),
                   components=rows.tolist() if rows is not None else None, coef=coef.tolist(), intercept=intercept)


__all__ = ["HiddenProbe"]
