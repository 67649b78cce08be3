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

import functools
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from langchain_slm_router.errors import GateFileError, GateInputError, GateSLMMismatchError
from langchain_slm_router.gates.base import Gate, GateDecision, register_gate
from langchain_slm_router.gates.features import FEATURE_NAMES, SAMPLE_FEATURE_NAMES, generation_features
from langchain_slm_router.gates.models import (
    BoostedTrees,
    IsotonicMap,
    LogisticModel,
    PlattMap,
    TreeArrays,
    fit_calibration,
    fit_logistic,
    fit_trees,
)
from langchain_slm_router.gates.pregen import PreGenerationGate
from langchain_slm_router.gates.probe import HiddenProbe
from langchain_slm_router.slm.base import ChatMessageDict, SLMBackend, SLMGeneration

PROBE_FEATURE = "hidden_probe"
"""The feature a gate with a :class:`HiddenProbe` adds: the probe's log-odds on the answer's hidden states."""

GATE_FORMAT = "slm-router-gate/1"
MAX_GATE_FILE_BYTES = 8_000_000


_FITTED_SHA = "_fitted_sha256"
"""Where :attr:`LearnedGate._fitted_sha256` caches itself in the instance ``__dict__``."""


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
    """The features the model reads, in order (a subset of :data:`~langchain_slm_router.gates.features.FEATURE_NAMES`,
    the opt-in :data:`~langchain_slm_router.gates.features.SAMPLE_FEATURE_NAMES` and ``hidden_probe``)."""
    model: Annotated[LogisticModel | BoostedTrees, Field(discriminator="kind")]
    """The scoring model."""
    calibration: Annotated[IsotonicMap | PlattMap, Field(discriminator="kind")] | None = None
    """Score -> probability map fit on a separate split (``None``: the logistic score's own sigmoid)."""
    min_p_correct: float = Field(default=0.5, ge=0.0, le=1.0)
    """Keep the answer when P(correct) >= this."""
    info: dict[str, Any] = Field(default_factory=dict)
    """What the gate was fit on (data, sizes, label rule) and its held-out metrics; informational."""
    probe: HiddenProbe | None = None
    """A linear probe on the SLM's hidden states; its score is the feature ``hidden_probe``."""
    pre: PreGenerationGate | None = None
    """Optional pre-generation gate: the router skips the SLM for a query it finds hopeless."""
    slm_name: str | None = None
    """The SLM the gate was fitted for (informational; ``slm_sha256`` is what is checked)."""
    slm_sha256: str | None = None
    """sha256 of that SLM's weights (:meth:`SLMBackend.weights_sha256`): a router whose SLM has other weights
    refuses the gate (:class:`~langchain_slm_router.errors.GateSLMMismatchError`). ``None``: not tied to one."""

    @model_validator(mode="after")
    def _consistent(self) -> LearnedGate:
        known = (*FEATURE_NAMES, *SAMPLE_FEATURE_NAMES, *((PROBE_FEATURE,) if self.probe is not None else ()))
        unknown = [f for f in self.feature_names if f not in known]
        if unknown:
            raise ValueError(f"unknown feature names {unknown}; known: {list(known)}")
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
        """This gate keeping answers at P(correct) >= ``threshold``. A pre-generation gate whose skip threshold is
        above the new one is lowered to it: a query is never skipped as hopeless when an answer predicted that
        likely to be right would now be kept (``threshold=0`` runs the SLM on every query and keeps every answer)."""
        update: dict[str, Any] = {"min_p_correct": float(threshold)}
        if self.pre is not None and self.pre.min_p_correct > threshold:
            update["pre"] = self.pre.model_copy(update={"min_p_correct": float(threshold)})
        copy = self.model_copy(update=update)
        if _FITTED_SHA in self.__dict__:  # only thresholds changed: the fitted numbers' hash still holds
            copy.__dict__[_FITTED_SHA] = self.__dict__[_FITTED_SHA]
        return copy

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> LearnedGate:
        """A copy; its identity hash is computed afresh (an update may change the fitted numbers)."""
        copy = super().model_copy(update=update, deep=deep)
        copy.__dict__.pop(_FITTED_SHA, None)
        return copy

    def check_slm(self, slm: SLMBackend | None) -> None:
        """Refuse an SLM whose weights differ from those the gate was fitted for."""
        if self.slm_sha256 is None or slm is None:
            return
        theirs = slm.weights_sha256()
        if theirs != self.slm_sha256:
            raise GateSLMMismatchError(
                f"This learned gate was fitted for the SLM {self.slm_name or '?'} (weights sha256 "
                f"{self.slm_sha256[:12]}...), but the router's SLM is {slm.model_name} (weights "
                f"{(theirs or 'unknown')[:12]}...): its P(correct) would mean nothing for that model. Fit a gate "
                "for this SLM (`slm-router train-gate`), or use gate='threshold'.")

    def pre_decide(self, messages: Sequence[ChatMessageDict]) -> GateDecision | None:
        return self.pre.decide(messages) if self.pre is not None else None

    def features_of(self, generation: SLMGeneration, messages: Sequence[ChatMessageDict] = ()) -> dict[str, float]:
        """Every feature of one answer, with ``hidden_probe`` when the gate has a probe."""
        features = generation_features(generation, messages)
        if self.probe is not None:
            features[PROBE_FEATURE] = self.probe.score(generation.hidden)
        return features

    def decide(self, generation: SLMGeneration, messages: Sequence[ChatMessageDict] = ()) -> GateDecision:
        features = self.features_of(generation, messages)
        p = self.p_correct(features)
        used = {name: round(features[name], 6) for name in self.feature_names}
        if generation.signals.length == 0:
            return GateDecision(keep=False, p_correct=p, features=used, reasons=["fail: empty answer"])
        keep = p >= self.min_p_correct
        return GateDecision(keep=keep, p_correct=p, features=used,
                            reasons=[f"{'pass' if keep else 'fail'}: P(correct) {p:.3f} >= {self.min_p_correct}"])

    # ------------------------------------------------------------------ scoring
    def vector(self, features: Mapping[str, float]) -> list[float]:
        """The model's input vector from a features dict.

        Raises:
            GateInputError: a feature the gate was fitted on is missing (e.g. ``sample_agreement`` from an SLM
                that was not asked for samples).
        """
        missing = [name for name in self.feature_names if name not in features]
        if missing:
            hint = " Run the SLM with samples=K (LocalSLM(samples=4)) as when the gate was fitted." \
                if any(name in SAMPLE_FEATURE_NAMES for name in missing) else ""
            raise GateInputError(f"This learned gate needs the features {', '.join(missing)}, which the answer "
                                 f"lacks.{hint}")
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

    def identity(self) -> dict[str, Any]:
        """The gate's name, the SHA-256 of its fitted numbers (the file less its thresholds), its SLM and its keep
        and skip thresholds: a few hundred bytes in place of the whole file (the shipped one is ~1 MB of JSON)."""
        return {"gate": self.gate_name, "sha256": self._fitted_sha256, "slm_name": self.slm_name,
                "min_p_correct": self.min_p_correct,
                "pre_min_p_correct": self.pre.min_p_correct if self.pre is not None else None}

    @functools.cached_property
    def _fitted_sha256(self) -> str:
        """SHA-256 of what decides but the thresholds (``info`` is description), computed once per gate and kept by
        :meth:`with_threshold`'s copies."""
        data = self.model_dump(mode="json", exclude={"info"})
        data.pop("min_p_correct", None)
        if isinstance(data.get("pre"), dict):
            data["pre"].pop("min_p_correct", None)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

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
        hidden: Sequence[Mapping[str, Sequence[float]] | None] | None = None,
        probe_vector: str | None = None,
        probe_components: int | None = 64,
        probe_c: float = 0.05,
        slm: SLMBackend | None = None,
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
            hidden: per row, the answer's hidden-state vectors (``SLMGeneration.hidden``); with ``probe_vector``
                a :class:`HiddenProbe` on that vector is fit and its score added as the feature ``hidden_probe``
                (out-of-fold scores, 5 folds, on the fitting part, so the combiner does not trust an overfit probe).
            probe_components: PCA components of the probe (``None``: the whole vector).
            probe_c: the probe's inverse L2 strength.
            slm: the SLM the rows came from; the gate is tied to its weights (``slm_sha256``).
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
        index = np.arange(len(y))
        if calibration == "none":
            fit_idx, cal_idx = index, index[:0]
        else:
            stratify = y if min(y.sum(), len(y) - y.sum()) >= 2 else None
            fit_idx, cal_idx = train_test_split(index, test_size=calib_fraction, random_state=seed,
                                                stratify=stratify)
        probe: HiddenProbe | None = None
        if probe_vector is not None:
            if hidden is None or any(h is None or probe_vector not in h for h in hidden):
                raise ValueError(f"a probe on {probe_vector!r} needs that hidden vector for every row")
            H = np.asarray([h[probe_vector] for h in hidden], dtype=float)  # type: ignore[index]
            column = np.zeros(len(y))
            column[fit_idx] = _out_of_fold(H[fit_idx], y[fit_idx], probe_vector, probe_components, probe_c, seed)
            probe = HiddenProbe.fit(H[fit_idx], y[fit_idx], probe_vector, components=probe_components, c=probe_c,
                                    seed=seed)
            column[cal_idx] = [probe.score({probe_vector: h}) for h in H[cal_idx]]
            X = np.column_stack([X, column])
            names.append(PROBE_FEATURE)
        X_fit, y_fit, X_cal, y_cal = X[fit_idx], y[fit_idx], X[cal_idx], y[cal_idx]
        scorer = fit_logistic(X_fit, y_fit) if model == "logistic" else fit_trees(X_fit, y_fit, seed)
        cal: IsotonicMap | PlattMap | None = None
        if calibration != "none":
            scores = np.asarray([scorer.score(x) for x in X_cal])
            cal = fit_calibration(scores, y_cal, calibration)
        gate = cls(feature_names=names, model=scorer, calibration=cal, min_p_correct=min_p_correct, probe=probe,
                   slm_name=slm.model_name if slm is not None else None,
                   slm_sha256=slm.weights_sha256() if slm is not None else None,
                   info={**dict(info or {}), "n_rows": len(y), "n_right": int(y.sum()), "n_fit": len(y_fit),
                         "n_calibration": len(y_cal), "model": model, "calibration": calibration, "seed": seed})
        if len(y_cal):
            from langchain_slm_router.statistics import auroc, expected_calibration_error

            p = [gate.p_correct(dict(zip(names, x))) for x in X_cal]
            gate = gate.model_copy(update={"info": {**gate.info, "calibration_split": {
                "auroc": auroc(p, [bool(v) for v in y_cal]), "ece": expected_calibration_error(p, y_cal)}}})
        return gate


def _out_of_fold(H: Any, y: Any, vector: str, components: int | None, c: float, seed: int) -> Any:
    """Probe scores of each row from a probe fit on the other folds (stratified 5-fold)."""
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    out = np.zeros(len(y))
    folds = max(2, min(5, int(y.sum()), int(len(y) - y.sum())))
    for train, test in StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(H, y):
        probe = HiddenProbe.fit(H[train], y[train], vector, components=components, c=c, seed=seed)
        out[test] = [probe.score({vector: h}) for h in H[test]]
    return out


__all__ = [
    "GATE_FORMAT",
    "PROBE_FEATURE",
    "BoostedTrees",
    "IsotonicMap",
    "LearnedGate",
    "LogisticModel",
    "PlattMap",
    "TreeArrays",
]
