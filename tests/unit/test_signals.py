"""Issue 18's signal families on models whose answers are known: hidden states of the generating pass, context
checks, the hidden-state probe (and its exact JSON reload), gate files tied to SLM weights, and the
pre-generation gate (which never calls the SLM when it skips)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from langchain_slm_router.errors import GateFileError, GateInputError, GateSLMMismatchError
from langchain_slm_router.evaluation.datasets import squad_prompt
from langchain_slm_router.gates import FEATURE_NAMES, GatePolicy, LearnedGate, gate_features
from langchain_slm_router.gates.learned import PROBE_FEATURE
from langchain_slm_router.gates.models import LogisticModel
from langchain_slm_router.gates.pregen import QUERY_FEATURE_NAMES, PreGenerationGate, query_features, question_text
from langchain_slm_router.gates.probe import HiddenProbe
from langchain_slm_router.router import SLMRouter
from langchain_slm_router.signals import ConfidenceSignals
from langchain_slm_router.slm import ChatMessageDict, EarlyExit, LocalSLM, SLMBackend, SLMGeneration
from langchain_slm_router.slm.hidden import HiddenCapture, resolve_layers

CONTEXT = " ".join(["The Normans gave their name to Normandy, a region in France, in the 10th century."] * 6)
SQUAD = [{"role": "user", "content": squad_prompt(CONTEXT, "In what country is Normandy located?")}]


# ---------------------------------------------------------------------------------------------------- hidden states
def tiny_llama() -> Any:
    """A 4-layer Llama with random weights (built from a config; nothing downloaded)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=4,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=0, eos_token_id=1, bos_token_id=2)
    return LlamaForCausalLM(config).eval()


def test_generating_pass_hidden_states_equal_a_second_forward_pass() -> None:
    """The hooks see, at the last prompt token and over the fed answer tokens, exactly what a separate forward pass
    over prompt + answer computes at those positions (left-padded batch of two prompts of different lengths)."""
    import torch

    model = tiny_llama()
    prompts = [[5, 6, 7, 8, 9], [10, 11, 12]]
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.inference_mode(), HiddenCapture(model, [2, 0]) as cap:
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False,
                             eos_token_id=1, pad_token_id=0)
    assert cap.layers == [2, 4]
    answer_len = 4  # take the first 4 answer tokens as "the answer" for both rows
    for row, prompt in enumerate(prompts):
        answer = out[row, width:width + answer_len].tolist()
        full = torch.tensor([prompt + answer])
        with torch.inference_mode():
            states = model(full, output_hidden_states=True).hidden_states  # [0] = embeddings, [n] = layer n
        got = cap.vectors(row, answer_len)
        for n in (2, 4):
            if n == 4:  # the model's last hidden state has the final norm applied; the hook sees the layer output
                continue
            want_last = states[n][0, len(prompt) - 1]
            want_mean = states[n][0, len(prompt):len(prompt) + answer_len].mean(0)
            np.testing.assert_allclose(got[f"last_prompt@L{n}"], want_last.numpy(), atol=1e-5)
            np.testing.assert_allclose(got[f"answer_mean@L{n}"], want_mean.numpy(), atol=1e-5)
        assert len(got["answer_mean@L4"]) == 16


def test_an_empty_answer_pools_to_the_last_prompt_state_and_layers_resolve() -> None:
    import torch

    model = tiny_llama()
    with torch.inference_mode(), HiddenCapture(model, ["middle"]) as cap:
        model.generate(input_ids=torch.tensor([[5, 6, 7]]), max_new_tokens=2, do_sample=False, eos_token_id=1,
                       pad_token_id=0)
    got = cap.vectors(0, 0)
    assert got["answer_mean@L2"] == got["last_prompt@L2"]
    assert resolve_layers([0, -1, "middle", 3, 3], 30) == [30, 29, 15, 3]
    with pytest.raises(ValueError, match="outside this model's 1..30"):
        resolve_layers([31], 30)


# ---------------------------------------------------------------------------------------------------- context checks
def feats(text: str, messages: Sequence[ChatMessageDict] = SQUAD) -> dict[str, float]:
    return gate_features([0.9, 0.8], [0.1, 0.2], text, True, messages)


def test_context_checks_on_known_answers() -> None:
    span, outside, abstain = feats("France"), feats("Germany"), feats("unanswerable")
    assert span["answer_in_context"] == 1.0 and outside["answer_in_context"] == 0.0
    assert abstain["answer_in_context"] == 0.0  # the instruction's own word "unanswerable" is not the context
    # question words (len > 2): question, what, country, normandy, located; "normandy" is in the context and
    # "question" in the instruction paragraph before it (everything before the last paragraph counts as context)
    assert span["question_in_context"] == pytest.approx(2 / 5)
    assert abstain["abstain_vs_context"] == pytest.approx(1 - 4 / 5) and span["abstain_vs_context"] == 0.0
    closed_book = feats("Paris", [{"role": "user", "content": "What is the capital of France?"}])
    assert closed_book["has_context"] == 0.0 and closed_book["answer_in_context"] == 0.0
    assert set(span) == set(FEATURE_NAMES)


# ---------------------------------------------------------------------------------------------------- probe
def separable(n: int = 200, d: int = 24, seed: int = 0) -> tuple[np.ndarray, list[bool]]:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    X = rng.normal(size=(n, d))
    X[:, 3] += np.where(y, 2.5, -2.5)
    return X, list(y)


def generation(text: str, probs: Sequence[float], hidden: dict[str, list[float]] | None = None) -> SLMGeneration:
    ents = [0.1] * len(probs)
    return SLMGeneration(text=text, token_probs=list(probs), token_entropies=ents,
                         signals=ConfidenceSignals.from_tokens(probs, ents), input_tokens=10,
                         output_tokens=len(probs), finished=True, latency_ms=1.0, hidden=hidden)


def probe_gate() -> tuple[LearnedGate, np.ndarray, list[bool]]:
    X, y = separable()
    rows = [feats("France") for _ in y]
    gate = LearnedGate.fit(rows, y, feature_names=["mean_prob"], hidden=[{"v": list(x)} for x in X],
                           probe_vector="v", probe_components=8)
    return gate, X, y


def test_the_probe_learns_a_known_direction_and_the_gate_uses_it() -> None:
    from langchain_slm_router.evaluation.metrics import auroc

    gate, X, y = probe_gate()
    assert gate.feature_names == ["mean_prob", PROBE_FEATURE] and gate.probe is not None
    scores = [gate.probe.score({"v": list(x)}) for x in X]
    assert auroc(scores, y) > 0.85
    right = gate.decide(generation("France", [0.9], {"v": [0, 0, 0, 4.0] + [0] * 20}), SQUAD)
    wrong = gate.decide(generation("France", [0.9], {"v": [0, 0, 0, -4.0] + [0] * 20}), SQUAD)
    assert right.p_correct > wrong.p_correct and right.features and PROBE_FEATURE in right.features
    with pytest.raises(GateInputError, match="lacks"):
        gate.decide(generation("France", [0.9]), SQUAD)  # a backend without hidden states


def test_the_probe_reloads_from_json_bit_identically(tmp_path) -> None:
    gate, X, _ = probe_gate()
    path = gate.save(tmp_path / "gate.json")
    again = LearnedGate.load(path)
    assert again == gate and again.to_json() == gate.to_json()
    for x in X[:20]:
        h = {"v": list(x)}
        assert again.probe.score(h) == gate.probe.score(h)  # exact, not approximate
    assert b"pickle" not in path.read_bytes() and json.loads(path.read_text())["probe"]["vector"] == "v"
    broken = json.loads(path.read_text())
    broken["probe"]["coef"] = broken["probe"]["coef"][:-1]
    with pytest.raises(GateFileError):
        LearnedGate.from_json(json.dumps(broken))


def test_the_stored_probe_scores_like_its_sklearn_pipeline() -> None:
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = separable()
    probe = HiddenProbe.fit(X, y, "v", components=5, c=0.05)
    pipe = make_pipeline(StandardScaler(), PCA(n_components=5, random_state=0),
                         LogisticRegression(C=0.05, max_iter=5000, class_weight="balanced")).fit(X, y)
    ours = np.asarray([probe.score({"v": list(x)}) for x in X])
    np.testing.assert_allclose(ours, pipe.decision_function(X), atol=1e-6)


# ---------------------------------------------------------------------------------------------------- SLM identity
def test_a_gate_fitted_for_other_weights_is_refused() -> None:
    gate, _, _ = probe_gate()
    foreign = gate.model_copy(update={"slm_name": "some-other-model", "slm_sha256": "0" * 64})
    with pytest.raises(GateSLMMismatchError, match="fitted for the SLM some-other-model"):
        SLMRouter(slm=LocalSLM(), gate=foreign, fallback=None)
    mine = gate.model_copy(update={"slm_sha256": LocalSLM().weights_sha256()})
    assert SLMRouter(slm=LocalSLM(), gate=mine, fallback=None).gate == mine
    assert len(LocalSLM().weights_sha256()) == 64


# ---------------------------------------------------------------------------------------------------- pre-generation
class CountingSLM(SLMBackend):
    """Answers "Paris" (sure) to everything, and counts the conversations it was asked."""

    asked: list[str] = []

    @property
    def model_name(self) -> str:
        return "counting"

    def count_tokens(self, messages: Sequence[ChatMessageDict]) -> int:
        return 5

    def generate_batch(self, conversations: Sequence[Sequence[ChatMessageDict]], *,
                       early_exit: EarlyExit | None = None) -> list[SLMGeneration | Exception]:
        self.asked.extend(c[-1]["content"] for c in conversations)
        return [generation("Paris", [0.95, 0.9]) for _ in conversations]


def shape_only_pre(skip_long: bool) -> PreGenerationGate:
    """P(correct) = sigmoid(+-20 * (log_query_words - 2)): long (or short) queries are hopeless."""
    names = list(QUERY_FEATURE_NAMES)
    coef = [(-20.0 if skip_long else 20.0) if n == "log_query_words" else 0.0 for n in names]
    model = LogisticModel(mean=[2.0] + [0.0] * (len(names) - 1), scale=[1.0] * len(names), coef=coef,
                          intercept=0.0)
    return PreGenerationGate(embedding=None, shape_features=names, model=model, min_p_correct=0.5)


def test_the_pre_generation_gate_never_calls_the_slm_when_it_skips() -> None:
    token_gate = LearnedGate(feature_names=["mean_prob"], model=LogisticModel(mean=[0.5], scale=[0.1], coef=[5.0],
                                                                              intercept=0.0))
    gate = token_gate.model_copy(update={"pre": shape_only_pre(skip_long=True)})
    slm = CountingSLM(asked=[])
    router = SLMRouter(slm=slm, gate=gate, math_engine=None, fallback=FakeListChatModel(responses=["LLM"] * 9),
                       fallback_retries=0)
    long_q = "who was the first person to walk on the surface of the moon in nineteen sixty nine"
    results = router.route_batch(["capital?", long_q])
    assert slm.asked == ["capital?"]  # the long (hopeless) query never reached the SLM
    kept, skipped = results
    assert kept.stage == "slm" and kept.p_correct is not None
    assert skipped.stage == "llm" and skipped.slm_answer is None and "pre-generation" in skipped.reason
    assert skipped.p_correct is not None and skipped.p_correct < 0.5 and "pre_gate" in skipped.latency_ms
    assert query_features([{"role": "user", "content": "a b\n\nc d e"}])["log_question_words"] == pytest.approx(
        np.log1p(3))
    assert question_text(SQUAD) == "Question: In what country is Normandy located?"


def test_without_its_embedding_model_the_pre_generation_gate_lets_every_query_through(monkeypatch) -> None:
    import importlib.util

    from langchain_slm_router import embeddings

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(embeddings.importlib.util, "find_spec",  # the optional MiniLM package is not installed
                        lambda name, *a: None if name == embeddings.EMBEDDING_PACKAGE else real_find_spec(name, *a))
    names = list(QUERY_FEATURE_NAMES)
    model = LogisticModel(mean=[0.0] * (len(names) + 384), scale=[1.0] * (len(names) + 384),
                          coef=[0.0] * (len(names) + 384), intercept=-10.0)  # would skip every query
    pre = PreGenerationGate(embedding="all-MiniLM-L6-v2", shape_features=names, model=model, min_p_correct=0.5)
    with pytest.warns(RuntimeWarning, match="pre-generation gate is off"):
        decision = pre.decide([{"role": "user", "content": "who wrote hamlet?"}])
    assert decision.keep and decision.p_correct is None and "embedding model missing" in decision.reasons[0]


def test_without_a_pre_gate_every_query_reaches_the_slm_and_early_exit_is_kept() -> None:
    slm = CountingSLM(asked=[])
    router = SLMRouter(slm=slm, gate=GatePolicy(), math_engine=None, fallback=None)
    router.route_batch(["a", "b c d e f g h i j k l m n o p"])
    assert slm.asked == ["a", "b c d e f g h i j k l m n o p"]
    assert GatePolicy().pre_decide([]) is None and GatePolicy().early_exit() is not None


def test_gate_by_name_and_the_seed_rule_one_argument_away() -> None:
    router = SLMRouter(slm=CountingSLM(asked=[]), gate="threshold", fallback=None)
    assert isinstance(router.gate, GatePolicy) and router.gate.threshold == 0.6
    assert isinstance(SLMRouter(slm=CountingSLM(asked=[]), fallback=None).gate, GatePolicy)  # no shipped gate fits


# ---------------------------------------------------------------------------------------------------- users' gates
def test_the_traffic_log_keeps_hidden_states_and_train_gate_fits_a_probe_on_them(tmp_path) -> None:
    import argparse

    from langchain_slm_router.gates.training import TrafficLog, build_parser, run

    X, y = separable(n=120, d=12)
    log = TrafficLog(tmp_path / "pairs.jsonl")
    for x, right in zip(X, y):
        hidden = {"answer_mean@L2": [float(v) for v in x], "answer_mean@L4": [0.0] * 12,
                  "last_prompt@L2": [1.0] * 12}
        log.append([{"role": "user", "content": "Who wrote Hamlet?"}],
                   generation("Shakespeare" if right else "Marlowe", [0.7, 0.6], hidden),
                   "Shakespeare")  # agreement with the LLM: exactly the rows where the SLM said Shakespeare
    first = json.loads((tmp_path / "pairs.jsonl").read_text().splitlines()[0])
    assert set(first["slm"]["hidden"]) == {"answer_mean@L2", "answer_mean@L4", "last_prompt@L2"}
    args = build_parser(argparse.ArgumentParser()).parse_args(
        ["--traffic", str(tmp_path / "pairs.jsonl"), "--out", str(tmp_path / "gate.json")])
    assert run(args) == 0
    gate = LearnedGate.load(tmp_path / "gate.json")
    assert gate.probe is not None and gate.probe.vector == "answer_mean@L2" and PROBE_FEATURE in gate.feature_names


def test_a_keep_threshold_below_the_skip_threshold_lowers_it_and_the_trace_shows_the_pre_check() -> None:
    token_gate = LearnedGate(feature_names=["mean_prob"], model=LogisticModel(mean=[0.5], scale=[0.1], coef=[5.0],
                                                                              intercept=0.0))
    gate = token_gate.model_copy(update={"pre": shape_only_pre(skip_long=True)})
    long_q = "who was the first person to walk on the surface of the moon in nineteen sixty nine"
    keep_all = gate.with_threshold(0.0)  # "keep every answer": nothing is hopeless any more
    assert keep_all.pre is not None and keep_all.pre.min_p_correct == 0.0
    assert gate.with_threshold(0.9).pre.min_p_correct == 0.5  # a higher keep threshold leaves the skip alone
    slm = CountingSLM(asked=[])
    router = SLMRouter(slm=slm, gate=keep_all, math_engine=None, fallback=None)
    short, long = router.route_batch(["capital?", long_q])
    assert slm.asked == ["capital?", long_q] and short.stage == long.stage == "slm"
    # the pre-generation check that let the query through is in the trace, beside the answer's own
    assert "pre_p_correct" in short.gate_features and "mean_prob" in short.gate_features
    assert short.gate_reasons[0].startswith("pass: pre-generation P(correct)")


def test_identity_is_small_tells_gates_apart_and_ignores_nothing_that_decides() -> None:
    gate = LearnedGate(feature_names=["mean_prob"], model=LogisticModel(mean=[0.5], scale=[0.1], coef=[5.0],
                                                                        intercept=0.0)).model_copy(
        update={"pre": shape_only_pre(skip_long=True)})
    other = LearnedGate(feature_names=["mean_prob"], model=LogisticModel(mean=[0.5], scale=[0.1], coef=[4.0],
                                                                         intercept=0.0))
    ident = gate.identity()
    assert ident["gate"] == "learned" and len(ident["sha256"]) == 64
    assert gate.with_threshold(0.7).identity() == {**ident, "min_p_correct": 0.7}  # same numbers, new threshold
    assert other.identity()["sha256"] != ident["sha256"]
    # a copy with other fitted numbers gets a new hash, even after this one's was computed; a description does not
    assert gate.model_copy(update={"model": other.model}).identity()["sha256"] == other.model_copy(
        update={"pre": gate.pre}).identity()["sha256"] != ident["sha256"]
    assert gate.model_copy(update={"info": {"note": "x"}}).identity() == ident
    assert GatePolicy().identity() == {"gate": "threshold", **GatePolicy().model_dump(mode="json")}


def test_a_new_slm_keeps_the_shipped_gate_only_when_its_weights_are_the_same() -> None:
    from langchain_slm_router.gates.defaults import is_shipped
    from langchain_slm_router.slm import LocalSLM

    router = SLMRouter(slm=LocalSLM(), fallback=None).with_options(threshold=0.3)  # no model is loaded
    assert is_shipped(router.gate) and router.gate.threshold == 0.3
    same = router.with_options(slm=LocalSLM(max_new_tokens=5))  # same weights: the gate and its threshold stay
    assert same.gate == router.gate
    stock = router.with_options(slm=LocalSLM(adapter=None))  # other weights: chosen again (the stock SLM's own gate)
    assert is_shipped(stock.gate) and stock.gate.threshold == 0.5 and stock.gate.slm_sha256 != router.gate.slm_sha256
    other = router.with_options(slm=LocalSLM(model="HuggingFaceTB/SmolLM2-360M-Instruct"))  # no shipped gate
    assert isinstance(other.gate, GatePolicy)
