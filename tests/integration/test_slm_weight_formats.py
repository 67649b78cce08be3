"""LocalSLM weight formats (float32, bfloat16, int8): each loads, answers and gives valid signals; bad ones fail typed."""

from __future__ import annotations

import math

import pytest

from langchain_slm_router.errors import ModelLoadError
from langchain_slm_router.slm import LocalSLM, load_model

pytestmark = pytest.mark.integration

EASY = [{"role": "user", "content": "What is the capital of France?"}]
OTHER = [{"role": "user", "content": "Name three primary colours."}]
PROMPTS = [EASY, OTHER] + [[{"role": "user", "content": q}] for q in (
    "What is the boiling point of water in Celsius?", "Who wrote Romeo and Juliet?",
    "What is the largest planet in the solar system?", "How many days are in a week?")]

TOLERANCE = {"bfloat16": 0.05, "int8": 0.45}
"""Largest mean |p_format - p_float32| over the float32 answers' tokens (teacher-forced: each format scores the
same tokens, so one early difference does not snowball). Measured on an AVX2 CPU (2026-12-05): bfloat16 0.006,
int8 0.28 (int8 activations are quantised per call; x86 kernels differ between AVX2 and VNNI, hence the margin). A
broken format (wrong scales, wrong layer) puts near-zero probability on the float32 answer: a difference near the
float32 mean probability itself, ~0.65."""


@pytest.fixture(scope="module")
def float32_answers(slm) -> list:
    """The deterministic float32 answers to PROMPTS, 16 tokens each."""
    return slm.model_copy(update={"max_new_tokens": 16}).generate_batch(PROMPTS)


def test_float32_knows_the_capital_of_france(float32_answers) -> None:
    assert "Paris" in float32_answers[0].text  # behaviour checks use float32, deterministic on any CPU


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_weight_format_loads_answers_and_gives_valid_signals(dtype, slm, float32_answers) -> None:
    from langchain_slm_router.testing.ollama_server import score_local

    fmt = LocalSLM(max_new_tokens=8, dtype=dtype)
    gens = fmt.generate_batch([EASY, OTHER])
    assert any(g.text for g in gens)
    for gen in gens:
        assert 0 <= gen.output_tokens <= 8  # the token budget holds
        if not gen.text:  # the model may end at once (int8 NanoQA did on "Name three primary colours." on an AVX2
            assert gen.finished and gen.output_tokens == 0  # CPU); every gate escalates an empty answer
        assert all(0.0 <= p <= 1.0 for p in gen.token_probs)
        assert all(math.isfinite(h) and h >= 0.0 for h in gen.token_entropies)
        assert math.isfinite(gen.signals.mean_entropy) and 0.0 <= gen.signals.mean_prob <= 1.0
    assert [g.text for g in fmt.generate_batch([EASY, OTHER])] == [g.text for g in gens]  # same answers twice
    # agreement with float32 on the same tokens, within the documented tolerance (never the exact words)
    diffs = [abs(math.exp(q.logprob) - math.exp(f.logprob))
             for conv, ref in zip(PROMPTS, float32_answers)
             for f, q in zip(score_local(slm, conv, ref.token_ids, k=1), score_local(fmt, conv, ref.token_ids, k=1))]
    assert sum(diffs) / len(diffs) <= TOLERANCE[dtype], sum(diffs) / len(diffs)
    # the format is part of the shared-model key: a different model object, the float32 one untouched
    assert fmt.loaded is not slm.loaded and fmt.loaded is load_model(dtype=dtype)


def test_int8_layers_are_quantized() -> None:
    import torch
    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

    modules = list(LocalSLM(dtype="int8").loaded.model.modules())
    assert not any(isinstance(m, torch.nn.Linear) for m in modules)
    assert sum(isinstance(m, DynamicInt8Linear) for m in modules) == 30 * 7 + 1  # 7 per layer, and lm_head


def test_unsupported_weight_format_is_a_typed_error() -> None:
    with pytest.raises(ModelLoadError, match="CPU only"):
        load_model(dtype="int8", device="meta")
    with pytest.raises(ModelLoadError, match="Unknown SLM weight format"):
        load_model(dtype="int4")


@pytest.mark.requires("llama_cpp")
def test_speed_doc_example_runs(doc_examples) -> None:
    (out,) = doc_examples.run("speed.md")
    assert out.startswith("slm ") and out[4:].strip()  # llama.cpp's words vary by CPU; its stage does not
