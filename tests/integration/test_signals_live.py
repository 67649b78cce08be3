"""Issue 18 on the real default SLM: hidden states of the generating pass, and the default gate of a bare router."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from langchain_slm_router.gates import GatePolicy, LearnedGate, gate_features
from langchain_slm_router.gates import defaults
from langchain_slm_router.gates.learned import PROBE_FEATURE
from langchain_slm_router.router import SLMRouter
from langchain_slm_router.slm import LocalSLM
from langchain_slm_router.slm.adapter import ADAPTERS_DIR

pytestmark = pytest.mark.integration

QUESTIONS = [[{"role": "user", "content": "What is the capital of France?"}],
             [{"role": "user", "content": "Who wrote the play Hamlet?"}]]


def test_hidden_states_come_from_the_generating_pass_and_change_no_answer(slm: LocalSLM) -> None:
    plain = slm.model_copy(update={"hidden_layers": [], "max_new_tokens": 16})
    captured = slm.model_copy(update={"hidden_layers": None, "max_new_tokens": 16})
    a, b = plain.generate_batch(QUESTIONS), captured.generate_batch(QUESTIONS)
    for x, y in zip(a, b):
        assert x.text == y.text and x.token_probs == y.token_probs and x.hidden is None
        assert set(y.hidden) == {"last_prompt@L15", "answer_mean@L15", "last_prompt@L30", "answer_mean@L30"}
        assert all(len(v) == 576 and np.isfinite(v).all() for v in y.hidden.values())
        assert y.hidden["answer_mean@L15"] != y.hidden["last_prompt@L15"]  # the answer moved the state


def test_sampled_answers_come_with_the_greedy_one_and_change_it_not(slm: LocalSLM) -> None:
    """``samples=K``: K sampled answers per prompt beside the unchanged greedy answer, and the agreement features
    from them; a prompt over the input bound keeps its error and gets no samples. (Their time is added to the
    answer's latency; not asserted: a first, cold call can be slower than a warm one with samples.)"""
    from langchain_slm_router.errors import QueryTooLongError
    from langchain_slm_router.gates.features import generation_features

    greedy = slm.model_copy(update={"max_new_tokens": 12, "hidden_layers": []})
    sampling = greedy.model_copy(update={"samples": 3, "max_input_tokens": 64})
    too_long = [{"role": "user", "content": "word " * 200}]
    plain = greedy.generate_batch(QUESTIONS)
    *answers, refused = sampling.generate_batch([*QUESTIONS, too_long])
    assert isinstance(refused, QueryTooLongError)
    for p, a, conv in zip(plain, answers, QUESTIONS):
        assert a.text == p.text and a.token_probs == p.token_probs and p.samples is None
        assert len(a.samples) == 3 and all(isinstance(t, str) for t in a.samples)
        features = generation_features(a, conv)
        assert 0.0 <= features["sample_agreement"] <= 1.0 and 1 / 3 <= features["sample_distinct"] <= 1.0


def test_a_bare_router_uses_the_gate_fitted_for_its_slm_and_the_trace_shows_it(slm, tmp_path, monkeypatch) -> None:
    """A gate file for the default SLM's weights in the shipped folder becomes SLMRouter()'s gate; the trace
    carries P(correct) and the features, the hidden-state probe's score among them."""
    rng = np.random.default_rng(0)
    y = list(rng.random(80) < 0.4)
    rows = [gate_features([0.9, 0.5], [0.1, 0.4], "Paris", True, QUESTIONS[0]) for _ in y]
    hidden = [{"answer_mean@L15": list(rng.normal(size=576) + (1.0 if v else -1.0))} for v in y]
    gate = LearnedGate.fit(rows, y, feature_names=["mean_prob", "first_prob"], hidden=hidden,
                           probe_vector="answer_mean@L15", probe_components=8, slm=LocalSLM(),
                           info={"shipped": True})
    gate.save(tmp_path / "smollm2.json")
    monkeypatch.setattr(defaults, "SHIPPED_GATES_DIR", tmp_path)
    defaults._gates_in.cache_clear()
    try:
        router = SLMRouter(fallback=None, math_engine=None)
        assert router.gate == gate
        fast = router.with_options(max_tokens=16)
        assert fast.gate == gate  # same weights, same gate
        result = fast.route("What is the capital of France?")
        assert result.stage == "slm" and result.slm_answer  # no fallback: the SLM's answer, kept or low-confidence
        assert result.p_correct is not None and 0.0 <= result.p_correct <= 1.0
        assert result.gate_features is not None and PROBE_FEATURE in result.gate_features
        assert isinstance(SLMRouter(gate="threshold", fallback=None).gate, GatePolicy)  # the seed's rule by name
        assert isinstance(SLMRouter(slm=None, fallback=None).gate, GatePolicy)  # no SLM: no gate file fits
    finally:
        defaults._gates_in.cache_clear()


def test_the_shipped_gate_is_the_default_for_the_default_slm_and_other_weights_keep_the_seed_rule(slm, tmp_path) -> None:
    """The default SLM is the one issue 19's table chose (SmolLM2 + the NanoQA adapter), loaded offline, and a bare
    ``SLMRouter()`` on it uses the learned gate fitted for those weights (gates/shipped/smollm2-nanoqa.json), with
    its hidden-state probe and pre-generation gate, and its trace shows P(correct) and the features;
    ``gate="fitted"`` names the same gate; the stock model gets its own shipped gate; an SLM no gate was fitted for
    gets the seed's rule by default and a clear error with ``gate="fitted"``."""
    from langchain_slm_router.errors import ConfigError

    assert LocalSLM().model_name == "SmolLM2-135M-Instruct+nanoqa" == slm.loaded.name
    router = SLMRouter(slm=slm.model_copy(update={"max_new_tokens": 16}), fallback=None, math_engine=None,
                       answer_cache=None)
    gate = router.gate
    assert isinstance(gate, LearnedGate) and defaults.is_shipped(gate)
    assert gate.slm_name == "SmolLM2-135M-Instruct+nanoqa" and gate.slm_sha256 == slm.weights_sha256()
    assert gate.probe is not None and gate.probe.vector == "answer_mean@L15"
    assert gate.pre is not None and gate.info["fitted_on"]["squad_v2"] >= 200 and gate.threshold == 0.5
    assert SLMRouter(slm=slm, gate="fitted", fallback=None).gate == gate
    result = router.route("Context: The Normans gave their name to Normandy, a region in France.\n\n"
                          "Question: In what country is Normandy?")
    assert result.stage == "slm" and result.slm_answer  # no fallback: the SLM's answer, kept or low-confidence
    assert result.p_correct is not None and 0.0 <= result.p_correct <= 1.0
    assert result.gate_features is not None and PROBE_FEATURE in result.gate_features
    assert "pre_p_correct" in (result.gate_features or {}) or any("pre-generation" in r for r in result.gate_reasons)
    stock = slm.model_copy(update={"adapter": None})
    stock_gate = SLMRouter(slm=stock, fallback=None).gate  # the stock model's own shipped gate (issue 18)
    assert isinstance(stock_gate, LearnedGate) and defaults.is_shipped(stock_gate)
    assert stock_gate.slm_sha256 == stock.weights_sha256() != gate.slm_sha256
    assert stock_gate.info["fitted_on"]["squad_v2"] >= 1000
    retrained = tmp_path / "my-adapter"  # a user's own adapter: other weights, so no shipped gate
    shutil.copytree(ADAPTERS_DIR / "nanoqa", retrained)
    weights = retrained / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of the last weight: a valid file, other weights
    weights.write_bytes(bytes(data))
    mine = slm.model_copy(update={"adapter": str(retrained)})
    assert isinstance(SLMRouter(slm=mine, fallback=None).gate, GatePolicy)
    with pytest.raises(ConfigError, match="no fitted gate file matches"):
        SLMRouter(slm=mine, gate="fitted", fallback=None)
    with pytest.raises(ConfigError, match="no fitted gate file matches"):
        SLMRouter(slm=LocalSLM(adapter=None, model="HuggingFaceTB/SmolLM2-360M-Instruct"), gate="fitted",
                  fallback=None)
