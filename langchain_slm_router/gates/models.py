"""The numeric models a learned gate stores as JSON: a logistic regression, boosted trees, calibration maps.

Each is a frozen pydantic model of plain numbers that evaluates itself without scikit-learn; the ``fit_*``
functions build them with scikit-learn. Used by :class:`~langchain_slm_router.gates.learned.LearnedGate` (after the
answer) and :class:`~langchain_slm_router.gates.pregen.PreGenerationGate` (before it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

_Finite = Annotated[float, Field(allow_inf_nan=False)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LogisticModel(_Frozen):
    """``score = intercept + sum(coef * (x - mean) / scale)``."""

    kind: Literal["logistic"] = "logistic"
    mean: list[_Finite]
    scale: list[_Finite]
    coef: list[_Finite]
    intercept: _Finite

    @model_validator(mode="after")
    def _shapes(self) -> LogisticModel:
        if not len(self.mean) == len(self.scale) == len(self.coef):
            raise ValueError("mean, scale and coef must have one entry per feature")
        if any(s <= 0 for s in self.scale):
            raise ValueError("scale entries must be > 0")
        return self

    @property
    def n_features(self) -> int:
        return len(self.coef)

    def score(self, x: Sequence[float]) -> float:
        return self.intercept + sum(c * (v - m) / s for c, v, m, s in zip(self.coef, x, self.mean, self.scale))


class TreeArrays(_Frozen):
    """One regression tree as scikit-learn stores it: node arrays; a leaf has ``left == right == -1``."""

    left: list[int]
    right: list[int]
    feature: list[int]
    threshold: list[_Finite]
    value: list[_Finite]

    @model_validator(mode="after")
    def _shapes(self) -> TreeArrays:
        n = len(self.left)
        if n == 0 or not n == len(self.right) == len(self.feature) == len(self.threshold) == len(self.value):
            raise ValueError("tree arrays must be non-empty and of one length")
        for i, (lo, hi) in enumerate(zip(self.left, self.right)):
            if (lo == -1) != (hi == -1):
                raise ValueError(f"node {i}: a node has both children or none")
            if lo != -1 and not (i < lo < n and i < hi < n):
                raise ValueError(f"node {i}: children must point forward inside the tree")
        return self

    def predict(self, x: Sequence[float]) -> float:
        node = 0
        while self.left[node] != -1:  # children point forward, so this ends within len(left) steps
            node = self.left[node] if x[self.feature[node]] <= self.threshold[node] else self.right[node]
        return self.value[node]


class BoostedTrees(_Frozen):
    """``score = init + learning_rate * sum(tree(x))`` (scikit-learn's binary gradient boosting, log-loss)."""

    kind: Literal["gbt"] = "gbt"
    n_features: int = Field(ge=1)
    init: _Finite
    learning_rate: _Finite = Field(gt=0)
    trees: list[TreeArrays] = Field(min_length=1)

    @model_validator(mode="after")
    def _features_in_range(self) -> BoostedTrees:
        for tree in self.trees:
            if any(f >= self.n_features or (f < 0 and lo != -1) for f, lo in zip(tree.feature, tree.left)):
                raise ValueError("a tree splits on a feature index outside the feature list")
        return self

    def score(self, x: Sequence[float]) -> float:
        return self.init + self.learning_rate * sum(t.predict(x) for t in self.trees)


class IsotonicMap(_Frozen):
    """Piecewise-linear map from score to probability (scikit-learn's ``IsotonicRegression`` thresholds)."""

    kind: Literal["isotonic"] = "isotonic"
    x: list[_Finite] = Field(min_length=1)
    y: list[Annotated[float, Field(ge=0.0, le=1.0)]] = Field(min_length=1)

    @model_validator(mode="after")
    def _shapes(self) -> IsotonicMap:
        if len(self.x) != len(self.y):
            raise ValueError("isotonic x and y must have the same length")
        if any(b < a for a, b in zip(self.x, self.x[1:])) or any(b < a for a, b in zip(self.y, self.y[1:])):
            raise ValueError("isotonic x and y must be non-decreasing")
        return self

    def __call__(self, score: float) -> float:
        x, y = self.x, self.y
        if score <= x[0]:
            return y[0]
        if score >= x[-1]:
            return y[-1]
        lo, hi = 0, len(x) - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if x[mid] <= score:
                lo = mid
            else:
                hi = mid
        if x[hi] == x[lo]:
            return y[hi]
        return y[lo] + (y[hi] - y[lo]) * (score - x[lo]) / (x[hi] - x[lo])


class PlattMap(_Frozen):
    """``p = 1 / (1 + exp(-(a * score + b)))``."""

    kind: Literal["platt"] = "platt"
    a: _Finite
    b: _Finite

    def __call__(self, score: float) -> float:
        z = self.a * score + self.b
        return 1.0 / (1.0 + math.exp(-z)) if z >= -700 else 0.0



def fit_logistic(X: Any, y: Any, c: float = 1.0) -> LogisticModel:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    clf = LogisticRegression(C=c, max_iter=2000).fit((X - mean) / scale, y)
    return LogisticModel(mean=mean.tolist(), scale=scale.tolist(), coef=clf.coef_[0].tolist(),
                         intercept=float(clf.intercept_[0]))


def fit_trees(X: Any, y: Any, seed: int) -> BoostedTrees:
    import numpy as np
    from sklearn.ensemble import GradientBoostingClassifier

    clf = GradientBoostingClassifier(n_estimators=60, max_depth=2, learning_rate=0.1, subsample=0.8,
                                     random_state=seed).fit(X, y)
    prior = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    trees = []
    for est in clf.estimators_[:, 0]:
        t = est.tree_
        trees.append(TreeArrays(left=t.children_left.tolist(), right=t.children_right.tolist(),
                                feature=t.feature.tolist(), threshold=t.threshold.tolist(),
                                value=t.value[:, 0, 0].tolist()))
    return BoostedTrees(n_features=X.shape[1], init=math.log(prior / (1 - prior)),
                        learning_rate=float(clf.learning_rate), trees=trees)


def fit_calibration(scores: Any, y: Any, kind: str) -> IsotonicMap | PlattMap:
    if kind == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(scores, y)
        return IsotonicMap(x=iso.X_thresholds_.tolist(), y=iso.y_thresholds_.tolist())
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e6, max_iter=1000).fit(scores.reshape(-1, 1), y)
    return PlattMap(a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]))


__all__ = ["BoostedTrees", "IsotonicMap", "LogisticModel", "PlattMap", "TreeArrays", "fit_calibration",
           "fit_logistic", "fit_trees"]
