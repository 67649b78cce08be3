"""LocalSLM weight formats (float32, bfloat16, int8): each loads, answers and gives valid signals; bad ones fail typed."""

from __future__ import annotations

import importlib.util
import math

import pytest

from langchain_slm_router.errors import ModelLoadError
from langchain_slm_router.slm import LocalSLM, load_model

pytestmark = pytest.mark.integration

EASY = [{"role": "user", "content": "What is the capital of France?"}]
OTHER = [{"role": "user", "content": "Name three primary colours."}]


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_weight_format_loads_answers_and_gives_valid_signals(dtype, slm) -> None:
    fmt = LocalSLM(max_new_tokens=16, dtype=dtype)
    easy, other = fmt.generate_batch([EASY, OTHER])
    ref = slm.model_copy(update={"max_new_tokens": 16}).generate(EASY)
    for gen in (easy, other):
        assert gen.text and 0 < gen.output_tokens <= 16
        assert all(0.0 <= p <= 1.0 for p in gen.token_probs)
        assert all(math.isfinite(h) and h >= 0.0 for h in gen.token_entropies)
        assert math.isfinite(gen.signals.mean_entropy) and 0.0 <= gen.signals.mean_prob <= 1.0
    assert "Paris" in easy.text
    assert abs(easy.signals.mean_prob - ref.signals.mean_prob) < 0.1  # same weights, coarser arithmetic
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


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                    reason="llama-cpp-python is not installed (pip install 'langchain-slm-router[llamacpp]')")
def test_speed_doc_example_runs(doc_examples) -> None:
    (out,) = doc_examples.run("speed.md")
    assert out.startswith("slm ") and "Paris" in out
