"""LlamaCppSLM: the shipped GGUF on llama.cpp kernels, in process, with exact probabilities and entropies."""

from __future__ import annotations

import math

import pytest

from langchain_slm_router import GatePolicy, SLMRouter
from langchain_slm_router.errors import ModelLoadError, QueryTooLongError
from langchain_slm_router.slm import LlamaCppSLM, make_backend

pytestmark = [
    pytest.mark.integration,
    pytest.mark.requires("llama_cpp"),
]

CONVS = [[{"role": "user", "content": "What is the capital of France?"}],
         [{"role": "user", "content": "Name three primary colours."}]]


@pytest.fixture(scope="module")
def cpp() -> LlamaCppSLM:
    return LlamaCppSLM(max_new_tokens=24)


def test_answers_with_valid_signals_and_matches_the_transformers_model(cpp, slm, near_tie_agreement) -> None:
    gens = cpp.generate_batch(CONVS)
    reference = slm.model_copy(update={"max_new_tokens": 24})
    ref = reference.generate_batch(CONVS)
    assert "Paris" in ref[0].text  # the behaviour check is float32's (deterministic); llama.cpp's kernels vary by CPU
    for conv, g, r in zip(CONVS, gens, ref):
        assert g.text and 0 < g.output_tokens <= 24 and all(0.0 <= p <= 1.0 for p in g.token_probs)
        assert all(math.isfinite(h) and h >= 0 for h in g.token_entropies)
        assert g.signals.length == g.output_tokens == len(g.token_ids)
        # same GGUF weights, different kernels (4-bit in llama.cpp, dequantised float32 in torch): the same tokens
        # up to a near-tie, and close confidence
        near_tie_agreement(reference, conv, r, g)
        assert abs(g.signals.mean_prob - r.signals.mean_prob) < 0.1
    assert make_backend("llamacpp", max_new_tokens=24).model_name == cpp.model_name


def test_overflow_early_exit_and_router(cpp) -> None:
    small = cpp.model_copy(update={"max_input_tokens": 20})
    long = [{"role": "user", "content": "Summarise: " + "the quick brown fox jumps over the lazy dog. " * 10}]
    assert isinstance(small.generate_batch([long])[0], QueryTooLongError)
    cut = small.model_copy(update={"overflow": "truncate"}).generate_batch([long])[0]
    assert cut.truncated_input and cut.input_tokens <= 20
    gate = GatePolicy(min_mean_prob=0.95)
    full, early = cpp.generate(CONVS[1]), cpp.generate_batch([CONVS[1]], early_exit=gate.early_exit())[0]
    assert early.early_exit and early.output_tokens < full.output_tokens
    assert early.token_probs == full.token_probs[: early.output_tokens]
    r = SLMRouter(slm=cpp, fallback=None).route("What is the capital of France?")
    assert r.stage == "slm" and r.answer.strip() and r.slm_model == "SmolLM2-135M-Instruct"


def test_missing_file_is_a_model_load_error(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="GGUF file not found"):
        LlamaCppSLM(model_path=str(tmp_path / "nope.gguf")).load()
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ModelLoadError, match="could not load"):
        LlamaCppSLM(model_path=str(bad)).load()


def test_answers_do_not_depend_on_the_previous_prompt(cpp) -> None:
    """Same prompt, same numbers: after other prompts, after itself (where a reused KV cache would leave a one-token
    suffix, which llama.cpp computes with other kernels), and in a fresh context."""
    after_others = [cpp.generate(c) for c in (*CONVS, CONVS[0], CONVS[0])]
    cpp.load().reset()
    fresh = cpp.generate(CONVS[0])
    for again in (after_others[0], after_others[-2], after_others[-1]):
        assert again.token_probs == fresh.token_probs and again.text == fresh.text


def test_sampling_with_a_temperature_is_seeded_and_keeps_the_models_probabilities(cpp) -> None:
    hot = cpp.model_copy(update={"temperature": 1.5, "seed": 7})
    first, again = hot.generate(CONVS[1]), hot.generate(CONVS[1])
    assert first.text == again.text and first.token_probs == again.token_probs
    greedy = cpp.generate(CONVS[1])
    assert first.text != greedy.text  # at T=1.5 a 24-token answer leaves the greedy path
    assert all(0.0 < p <= 1.0 for p in first.token_probs)
    assert min(first.token_probs) < min(greedy.token_probs)  # sampled tokens include less likely ones


def test_a_gguf_path_names_the_model() -> None:
    assert LlamaCppSLM(model_path="/models/qwen2.5-coder-1.5b-instruct.gguf").model_name == \
        "qwen2.5-coder-1.5b-instruct"
