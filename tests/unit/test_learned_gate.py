"""LearnedGate: fitting recovers a known rule, files round-trip exactly, bad files are typed errors; the exact
early-exit rule of GatePolicy; agreement labels. No model is loaded here."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from langchain_slm_router.errors import GateFileError
from langchain_slm_router.gates import FEATURE_NAMES, GatePolicy, LearnedGate, gate_features, make_gate
from langchain_slm_router.gates.training import agreement_label, record_examples, traffic_examples
from langchain_slm_router.signals import ConfidenceSignals
from langchain_slm_router.slm.base import SLMGeneration


def _gen(probs: list[float], text: str = "Paris", finished: bool = True) -> SLMGeneration:
    ents = [0.5] * len(probs)
    return SLMGeneration(text=text, token_probs=probs, token_entropies=ents,
                         signals=ConfidenceSignals.from_tokens(probs, ents), input_tokens=10,
                         output_tokens=len(probs), finished=finished, latency_ms=1.0)


def _synthetic(n: int, seed: int) -> tuple[list[dict[str, float]], list[bool]]:
    """Right exactly when the first token is likely and the answer appears in the prompt (a known rule)."""
    rng = random.Random(seed)
    rows, labels = [], []
    for _ in range(n):
        first = rng.random()
        grounded = rng.random() < 0.5
        probs = [first] + [rng.uniform(0.3, 1.0) for _ in range(rng.randint(1, 6))]
        answer = "blue whale" if grounded else "red panda"
        f = gate_features(probs, [0.3] * len(probs), answer, True,
                          [{"role": "user", "content": "The blue whale is the largest animal. Which is largest?"}])
        rows.append(f)
        labels.append(first > 0.5 and grounded)
    return rows, labels


def test_features_cover_every_name_and_quantiles() -> None:
    f = gate_features([0.1, 0.2, 0.3, 0.4, 1.0], [0.0] * 5, "unanswerable", False, [])
    assert tuple(f) == FEATURE_NAMES
    assert f["min_prob"] == 0.1 and f["q50_prob"] == pytest.approx(0.3) and f["q25_prob"] == pytest.approx(0.2)
    assert f["first_prob"] == 0.1 and f["abstained"] == 1.0 and f["finished"] == 0.0
    empty = gate_features([], [], "", True, [])
    assert empty["mean_prob"] == 0.0 and empty["log_length"] == 0.0


@pytest.mark.parametrize("model", ["logistic", "gbt"])
def test_fit_recovers_a_known_rule_and_is_calibrated(model: str) -> None:
    rows, labels = _synthetic(1200, seed=1)
    gate = LearnedGate.fit(rows, labels, model=model, seed=0)
    test_rows, test_labels = _synthetic(400, seed=2)
    p = [gate.p_correct(r) for r in test_rows]
    accuracy = sum((pi >= 0.5) == y for pi, y in zip(p, test_labels)) / len(p)
    assert accuracy > (0.9 if model == "gbt" else 0.8)
    # calibrated: among answers given P >= 0.7, most are right; among P <= 0.3, few are
    hi = [y for pi, y in zip(p, test_labels) if pi >= 0.7]
    lo = [y for pi, y in zip(p, test_labels) if pi <= 0.3]
    assert hi and lo and sum(hi) / len(hi) > 0.7 and sum(lo) / len(lo) < 0.3
    assert gate.info["n_calibration"] > 0 and gate.info["calibration_split"]["auroc"] > 0.85


def test_tree_scores_equal_scikit_learns() -> None:
    import numpy as np
    from sklearn.ensemble import GradientBoostingClassifier

    rows, labels = _synthetic(300, seed=3)
    gate = LearnedGate.fit(rows, labels, model="gbt", calibration="none", seed=0)
    X = np.asarray([[r[n] for n in FEATURE_NAMES] for r in rows])
    clf = GradientBoostingClassifier(n_estimators=60, max_depth=2, learning_rate=0.1, subsample=0.8,
                                     random_state=0).fit(X, np.asarray(labels, dtype=int))
    ours = [gate.score(r) for r in rows]
    assert np.allclose(ours, clf.decision_function(X), atol=1e-9)


def test_saved_gate_reloads_bit_identical_with_the_same_decisions(tmp_path: Path) -> None:
    rows, labels = _synthetic(300, seed=4)
    for model in ("logistic", "gbt"):
        gate = LearnedGate.fit(rows, labels, model=model, calibration="platt" if model == "gbt" else "isotonic")
        path = gate.save(tmp_path / f"{model}.json")
        again = LearnedGate.load(path)
        assert again == gate and again.to_json() == gate.to_json()
        assert make_gate("learned", **json.loads(path.read_text())) == gate
        # a dumped router configuration rebuilds the learned gate through the registry
        from langchain_slm_router import SLMRouter

        dumped = SLMRouter(gate=gate, fallback=None, slm=None).model_dump(mode="json")
        assert SLMRouter(**{**dumped, "fallback": None}).gate == gate
        for probs in ([0.9, 0.8], [0.2, 0.9, 0.4], [0.6]):
            a, b = gate.decide(_gen(probs)), again.decide(_gen(probs))
            assert (a.keep, a.p_correct, a.features) == (b.keep, b.p_correct, b.features)
            assert 0.0 <= a.p_correct <= 1.0 and set(a.features) == set(FEATURE_NAMES)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: "not json {", "invalid JSON"),
    (lambda d: json.dumps([1, 2]), "format"),
    (lambda d: json.dumps({**d, "format": "pickle"}), "format"),
    (lambda d: json.dumps({**d, "feature_names": ["os.system"] + d["feature_names"][1:]}), "unknown feature"),
    (lambda d: json.dumps({**d, "model": {**d["model"], "coef": d["model"]["coef"][:-1]}}), "one entry per feature"),
    (lambda d: json.dumps({**d, "model": {**d["model"], "kind": "__import__"}}), "valid gate file"),
    (lambda d: json.dumps({**d, "calibration": {"kind": "isotonic", "x": [0, 1], "y": [1.0, 0.0]}}), "non-decreasing"),
    (lambda d: json.dumps({**d, "extra_code": "print(1)"}), "valid gate file"),
    (lambda d: json.dumps(d).replace('"intercept": ', '"intercept": NaN, "x": '), "valid gate file"),
])
def test_malformed_or_tampered_gate_files_are_typed_errors(tmp_path: Path, mutate, message) -> None:
    rows, labels = _synthetic(200, seed=5)
    data = json.loads(LearnedGate.fit(rows, labels).to_json())
    bad = tmp_path / "bad.json"
    bad.write_text(mutate(data))
    with pytest.raises(GateFileError, match=message):
        LearnedGate.load(bad)


def test_tree_that_loops_or_points_outside_is_rejected(tmp_path: Path) -> None:
    rows, labels = _synthetic(200, seed=6)
    data = json.loads(LearnedGate.fit(rows, labels, model="gbt").to_json())
    tree = data["model"]["trees"][0]
    tree["left"][1] = 0  # a child pointing back: would loop
    (tmp_path / "loop.json").write_text(json.dumps(data))
    with pytest.raises(GateFileError, match="forward"):
        LearnedGate.load(tmp_path / "loop.json")
    with pytest.raises(GateFileError, match="cannot be read"):
        LearnedGate.load(tmp_path / "missing.json")


def test_fit_needs_both_classes() -> None:
    rows, _ = _synthetic(50, seed=7)
    with pytest.raises(ValueError, match="both right and wrong"):
        LearnedGate.fit(rows, [True] * 50)


def test_learned_gate_threshold_and_empty_answer() -> None:
    rows, labels = _synthetic(300, seed=8)
    gate = LearnedGate.fit(rows, labels)
    assert gate.threshold == 0.5 and gate.with_threshold(0.9).threshold == 0.9
    assert not gate.with_threshold(0.0).decide(_gen([])).keep
    assert gate.with_threshold(0.0).decide(_gen([0.1])).keep and not gate.with_threshold(1.01 - 0.01 + 1e-9).decide(
        _gen([0.1], text="red panda")).keep


# ------------------------------------------------------------------ early exit (exact rule)
def test_early_exit_for_the_mean_rule_is_exact() -> None:
    rule = GatePolicy(min_mean_prob=0.6).early_exit()
    assert rule is not None
    # 10 tokens at 0.1 and 5 left: at best (1 + 5) / 15 = 0.4 < 0.6 -> stop
    assert rule([0.1] * 10, 5)
    # 2 tokens at 0.1 and 30 left: (0.2 + 30) / 32 > 0.6 -> go on
    assert not rule([0.1] * 2, 30)
    # exhaustive check on small cases: stop only when no continuation (perfect tokens, any length) can pass
    rng = random.Random(0)
    for _ in range(2000):
        n, left = rng.randint(1, 6), rng.randint(0, 6)
        probs = [rng.random() for _ in range(n)]
        can_pass = any((sum(probs) + j) / (n + j) >= 0.6 for j in range(left + 1))
        assert rule(probs, left) == (not can_pass)


def test_early_exit_other_checks_and_combinations() -> None:
    assert GatePolicy(min_mean_prob=None, min_min_prob=0.3).early_exit()([0.9, 0.2], 50)
    assert GatePolicy(min_mean_prob=None, max_length=3).early_exit()([0.9] * 4, 50)
    assert not GatePolicy(min_mean_prob=None, max_length=3).early_exit()([0.9] * 3, 50)
    assert GatePolicy(min_mean_prob=None, max_mean_entropy=1.0).early_exit() is None  # nothing it can bound
    assert GatePolicy(early_exit_enabled=False).early_exit() is None
    any_rule = GatePolicy(min_mean_prob=0.6, min_min_prob=0.3, combine="any").early_exit()
    assert not any_rule([0.95, 0.9, 0.05], 0)  # the mean check (0.63) still passes
    assert any_rule([0.1, 0.05], 0)
    assert GatePolicy(min_mean_prob=0.6, max_mean_entropy=1.0, combine="any").early_exit() is None


# ------------------------------------------------------------------ labels from traffic and records
def test_agreement_label() -> None:
    assert agreement_label("Paris", "The answer is Paris.")
    assert agreement_label("the Seine river", "Seine River")
    assert not agreement_label("Lyon", "Paris")
    assert agreement_label("unanswerable", "The context does not say.")
    assert not agreement_label("unanswerable", "Paris")
    assert not agreement_label("1912", "1921", bar=0.5)


def test_examples_from_traffic_and_records() -> None:
    traffic = [
        {"messages": [{"role": "user", "content": "Capital of France?"}],
         "slm": {"text": "Paris", "token_probs": [0.9], "token_entropies": [0.1], "finished": True},
         "llm": {"text": "Paris."}},
        {"messages": [{"role": "user", "content": "Capital of Italy?"}],
         "slm": {"text": "Milan", "token_probs": [0.4], "token_entropies": [1.1], "finished": True},
         "llm": {"text": "Rome"}},
        {"messages": [], "slm": {"text": "x", "token_probs": [0.1], "early_exit": True}, "llm": {"text": "y"}},
    ]
    feats, labels = traffic_examples(traffic)
    assert labels == [True, False] and feats[0]["first_prob"] == 0.9
    records = [
        {"math": {"answer": "4"}, "slm": {}, "prompt": "2+2"},
        {"math": None, "prompt": "Q", "slm": {"text": "A", "signals": ConfidenceSignals.from_tokens([0.7], [0.2]).model_dump(),
                                               "token_probs": [0.7], "token_entropies": [0.2], "correct": True},
         "llm": {"text": "B"}},
    ]
    feats, labels = record_examples(records)
    assert labels == [True] and len(feats) == 1
    assert record_examples(records, label="agreement")[1] == [False]


def test_sampled_agreement_features_and_a_gate_that_needs_them() -> None:
    """Samples that say the greedy answer (after SQuAD normalisation) raise sample_agreement; different ones raise
    sample_distinct; a gate fitted on them learns the rule, and refuses an answer without samples, clearly."""
    from langchain_slm_router.errors import GateInputError
    from langchain_slm_router.gates.features import SAMPLE_FEATURE_NAMES, agreement_features, generation_features

    assert agreement_features("The Eiffel Tower.", ["the eiffel tower", "Eiffel Tower", "a tower", "Paris"]) == \
        {"sample_agreement": 0.5, "sample_distinct": 0.75}
    assert agreement_features("Au", ["Au"] * 4) == {"sample_agreement": 1.0, "sample_distinct": 0.25}
    assert agreement_features("Au", []) == {"sample_agreement": 0.0, "sample_distinct": 0.0}
    plain = _gen([0.9, 0.8])
    assert not set(SAMPLE_FEATURE_NAMES) & set(generation_features(plain))  # no samples, no such features
    sampled = plain.model_copy(update={"samples": ["Paris", "paris.", "Lyon"]})
    assert generation_features(sampled)["sample_agreement"] == pytest.approx(2 / 3)

    rng = random.Random(3)
    rows, labels = [], []
    for _ in range(200):  # right exactly when most samples agree: token features carry no signal here
        agree = rng.randint(0, 4)
        samples = ["Paris"] * agree + ["Lyon", "Nice", "Metz", "Caen"][: 4 - agree]
        rows.append(generation_features(_gen([0.7, 0.7]).model_copy(update={"samples": samples})))
        labels.append(agree >= 3)
    gate = LearnedGate.fit(rows, labels, feature_names=[*FEATURE_NAMES, *SAMPLE_FEATURE_NAMES])
    agreed = _gen([0.7, 0.7]).model_copy(update={"samples": ["Paris"] * 4})
    split = _gen([0.7, 0.7]).model_copy(update={"samples": ["Lyon", "Nice", "Metz", "Paris"]})
    assert gate.decide(agreed).keep and not gate.decide(split).keep
    assert LearnedGate.model_validate_json(gate.to_json()) == gate  # the names are valid in a file
    with pytest.raises(GateInputError, match="samples=K"):
        gate.decide(_gen([0.7, 0.7]))
