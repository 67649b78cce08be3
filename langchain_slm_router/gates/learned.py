"""A learned, calibrated gate: P(the SLM's answer is right) from the answer's features, kept above a threshold.

:class:`LearnedGate` scores the features of :mod:`~langchain_slm_router.gates.features` with a logistic regression
(default) or gradient-boosted trees, both fit with scikit-learn, and maps the score to a calibrated probability
with isotonic regression (default) or Platt scaling fit on a *separate* split, so that ``p_correct = 0.8`` means
right about 80% of the time. The answer is kept when ``p_correct >= min_p_correct``.

A gate is stored as a small JSON file — coefficients or tree arrays, feature names, the calibration map, what it
was fit on and its metrics — and evaluated from those numbers alone: loading a gate file never runs code
(no pickle), and a malformed or tampered file is a :class:`~langchain_slm_router.errors.GateFileError`.

Python API::

    from langchain_slm_router.gates import LearnedGate
    gate = LearnedGate.fit(feature_rows, labels)          # rows: gate_features(...) dicts; labels: bools
    gate.save("gate.json")
    router = SLMRouter(gate=LearnedGate.load("gate.json"))
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from langchain_slm_router.errors import GateFileError
from langchain_slm_router.gates.base import Gate, GateDecision, register_gate
from langchain_slm_router.gates.features import FEATURE_NAMES, generation_features
from langchain_slm_router.slm.base import ChatMessageDict, SLMGeneration

GATE_FORMAT = "slm-router-gate/1"
MAX_GATE_FILE_BYTES = 8_000_000

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


@register_gate
class LearnedGate(Gate):
    """Keep the SLM's answer when the calibrated P(correct) from its features is at least ``min_p_correct``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gate_name: ClassVar[str] = "learned"

    format: Literal["slm-router-gate/1"] = GATE_FORMAT
    """File format version."""
    gate: Literal["learned"] = "learned"
    """The registry name, so a dumped router configuration rebuilds this gate."""
    feature_names: list[str]
    """The features the model reads, in order (a subset of :data:`~langchain_slm_router.gates.features.FEATURE_NAMES`)."""
    model: Annotated[LogisticModel | BoostedTrees, Field(discriminator="kind")]
    """The scoring model."""
    calibration: Annotated[IsotonicMap | PlattMap, Field(discriminator="kind")] | None = None
    """Score -> probability map fit on a separate split (``None``: the logistic score's own sigmoid)."""
    min_p_correct: float = Field(default=0.5, ge=0.0, le=1.0)
    """Keep the answer when P(correct) >= this."""
    info: dict[str, Any] = Field(default_factory=dict)
    """What the gate was fit on (data, sizes, label rule) and its held-out metrics; informational."""

    @model_validator(mode="after")
    def _consistent(self) -> LearnedGate:
        unknown = [f for f in self.feature_names if f not in FEATURE_NAMES]
        if unknown:
            raise ValueError(f"unknown feature names {unknown}; known: {list(FEATURE_NAMES)}")
        if len(set(self.feature_names)) != len(self.feature_names):
            raise ValueError("feature names must be unique")
        if self.model.n_features != len(self.feature_names):
            raise ValueError(f"the model reads {self.model.n_features} features but {len(self.feature_names)} "
                             "are named")
        return self

    # ------------------------------------------------------------------ the Gate protocol
    @property
    def threshold(self) -> float:
        """The headline threshold: minimum P(correct)."""
        return self.min_p_correct

    def with_threshold(self, threshold: float) -> LearnedGate:
        return self.model_copy(update={"min_p_correct": float(threshold)})

    def decide(self, generation: SLMGeneration, messages: Sequence[ChatMessageDict] = ()) -> GateDecision:
        features = generation_features(generation, messages)
        p = self.p_correct(features)
        used = {name: round(features[name], 6) for name in self.feature_names}
        if generation.signals.length == 0:
            return GateDecision(keep=False, p_correct=p, features=used, reasons=["fail: empty answer"])
        keep = p >= self.min_p_correct
        return GateDecision(keep=keep, p_correct=p, features=used,
                            reasons=[f"{'pass' if keep else 'fail'}: P(correct) {p:.3f} >= {self.min_p_correct}"])

    # ------------------------------------------------------------------ scoring
    def vector(self, features: Mapping[str, float]) -> list[float]:
        """The model's input vector from a features dict."""
        return [float(features[name]) for name in self.feature_names]

    def score(self, features: Mapping[str, float]) -> float:
        """The model's raw score (log-odds before calibration)."""
        return self.model.score(self.vector(features))

    def p_correct(self, features: Mapping[str, float]) -> float:
        """Calibrated probability that the answer with these features is right."""
        s = self.score(features)
        if self.calibration is not None:
            return float(min(1.0, max(0.0, self.calibration(s))))
        return PlattMap(a=1.0, b=0.0)(s)

    # ------------------------------------------------------------------ files
    def to_json(self) -> str:
        """The gate as JSON text."""
        return json.dumps(self.model_dump(mode="json"), indent=1, sort_keys=True)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the gate to ``path`` as JSON."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(self.to_json() + "\n", encoding="utf-8")
        return out

    @classmethod
    def from_json(cls, text: str, source: str = "<text>") -> LearnedGate:
        """Parse and validate gate JSON; anything malformed is a :class:`GateFileError`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GateFileError(f"{source} is not a gate file: invalid JSON ({exc}).") from exc
        if not isinstance(data, dict) or data.get("format") != GATE_FORMAT:
            raise GateFileError(f"{source} is not a gate file: expected a JSON object with format "
                                f"{GATE_FORMAT!r}. Make one with `slm-router train-gate`.")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise GateFileError(f"{source} is not a valid gate file: {exc.error_count()} problem(s): "
                                f"{str(exc)[:600]}") from exc

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LearnedGate:
        """Read a gate written by :meth:`save` (or ``slm-router train-gate``)."""
        p = Path(path)
        try:
            size = p.stat().st_size
        except OSError as exc:
            raise GateFileError(f"Gate file {p} cannot be read: {exc}. Make one with `slm-router train-gate`.") from exc
        if size > MAX_GATE_FILE_BYTES:
            raise GateFileError(f"Gate file {p} is {size} bytes, over the {MAX_GATE_FILE_BYTES}-byte limit.")
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise GateFileError(f"Gate file {p} cannot be read as UTF-8 text: {exc}.") from exc
        return cls.from_json(text, source=str(p))

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(
        cls,
        rows: Sequence[Mapping[str, float]],
        labels: Sequence[bool],
        *,
        model: Literal["logistic", "gbt"] = "logistic",
        calibration: Literal["isotonic", "platt", "none"] = "isotonic",
        feature_names: Sequence[str] = FEATURE_NAMES,
        calib_fraction: float = 0.3,
        min_p_correct: float = 0.5,
        seed: int = 0,
        info: Mapping[str, Any] | None = None,
    ) -> LearnedGate:
        """Fit the scoring model on one part of the rows and the calibration map on the other.

        Args:
            rows: one :func:`~langchain_slm_router.gates.features.gate_features` dict per SLM answer.
            labels: whether each answer was right (gold labels, or agreement with the LLM).
            model: ``"logistic"`` (scikit-learn ``LogisticRegression`` on standardised features) or ``"gbt"``
                (``GradientBoostingClassifier``, depth-2 trees).
            calibration: ``"isotonic"`` or ``"platt"``, fit on the held-back ``calib_fraction`` of the rows;
                ``"none"`` uses all rows for the model and the logistic score's own sigmoid.
            feature_names: which features to use.
            calib_fraction: share of the rows kept back for calibration (stratified).
            min_p_correct: the keep threshold of the returned gate.
            seed: random seed of the split and the trees.
            info: what the rows are, stored in the file.
        """
        import numpy as np
        from sklearn.model_selection import train_test_split

        names = list(feature_names)
        y = np.asarray([bool(v) for v in labels], dtype=int)
        if len(rows) != len(y):
            raise ValueError("rows and labels must have the same length")
        if len(y) < 10 or y.min() == y.max():
            raise ValueError(f"fitting a gate needs at least 10 rows with both right and wrong answers "
                             f"(got {len(y)} rows, {int(y.sum())} right)")
        X = np.asarray([[float(r[n]) for n in names] for r in rows], dtype=float)
        if calibration == "none":
            X_fit, y_fit, X_cal, y_cal = X, y, X[:0], y[:0]
        else:
            stratify = y if min(y.sum(), len(y) - y.sum()) >= 2 else None
            X_fit, X_cal, y_fit, y_cal = train_test_split(X, y, test_size=calib_fraction, random_state=seed,
                                                          stratify=stratify)
        scorer = _fit_logistic(X_fit, y_fit) if model == "logistic" else _fit_trees(X_fit, y_fit, seed)
        cal: IsotonicMap | PlattMap | None = None
        if calibration != "none":
            scores = np.asarray([scorer.score(x) for x in X_cal])
            cal = _fit_calibration(scores, y_cal, calibration)
        gate = cls(feature_names=names, model=scorer, calibration=cal, min_p_correct=min_p_correct,
                   info={**dict(info or {}), "n_rows": len(y), "n_right": int(y.sum()), "n_fit": len(y_fit),
                         "n_calibration": len(y_cal), "model": model, "calibration": calibration, "seed": seed})
        if len(y_cal):
            from langchain_slm_router.statistics import auroc, expected_calibration_error

            p = [gate.p_correct(dict(zip(names, x))) for x in X_cal]
            gate = gate.model_copy(update={"info": {**gate.info, "calibration_split": {
                "auroc": auroc(p, [bool(v) for v in y_cal]), "ece": expected_calibration_error(p, y_cal)}}})
        return gate


def _fit_logistic(X: Any, y: Any) -> LogisticModel:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    clf = LogisticRegression(C=1.0, max_iter=2000).fit((X - mean) / scale, y)
    return LogisticModel(mean=mean.tolist(), scale=scale.tolist(), coef=clf.coef_[0].tolist(),
                         intercept=float(clf.intercept_[0]))


def _fit_trees(X: Any, y: Any, seed: int) -> BoostedTrees:
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


def _fit_calibration(scores: Any, y: Any, kind: str) -> IsotonicMap | PlattMap:
    if kind == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(scores, y)
        return IsotonicMap(x=iso.X_thresholds_.tolist(), y=iso.y_thresholds_.tolist())
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e6, max_iter=1000).fit(scores.reshape(-1, 1), y)
    return PlattMap(a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]))


__all__ = [
    "GATE_FORMAT",
    "BoostedTrees",
    "IsotonicMap",
    "LearnedGate",
    "LogisticModel",
    "PlattMap",
    "TreeArrays",
]
