"""LlamaCppSLM: the shipped GGUF (with the default NanoQA adapter as a GGUF LoRA) on llama.cpp kernels, in process,
with exact probabilities and entropies."""

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


@pytest.mark.parametrize("adapter", ["auto", None], ids=["default-nanoqa", "stock"])
def test_answers_with_valid_signals_and_matches_the_transformers_model(adapter, slm, near_tie_agreement) -> None:
    """Both engines answer with the same model: the stock GGUF, and the default (the NanoQA adapter, merged by
    transformers, converted to a GGUF LoRA for llama.cpp)."""
    cpp = LlamaCppSLM(max_new_tokens=24, adapter=adapter)
    reference = slm.model_copy(update={"max_new_tokens": 24, "adapter": adapter})
    assert cpp.model_name == reference.model_name
    assert cpp.model_name.endswith("+nanoqa") == (adapter == "auto")
    gens = cpp.generate_batch(CONVS)
    ref = reference.generate_batch(CONVS)
    assert "Paris" in ref[0].text  # the behaviour check is float32's (deterministic); llama.cpp's kernels vary by CPU
    for conv, g, r in zip(CONVS, gens, ref):
        assert g.text and 0 < g.output_tokens <= 24 and all(0.0 <= p <= 1.0 for p in g.token_probs)
        assert all(math.isfinite(h) and h >= 0 for h in g.token_entropies)
        assert g.signals.length == g.output_tokens == len(g.token_ids)
        # same weights, different kernels (4-bit in llama.cpp, dequantised float32 in torch): the same tokens up
        # to a near-tie, and the same probabilities while the tokens are the same (a wrongly converted adapter
        # fails here: its first tokens would already differ)
        near_tie_agreement(reference, conv, r, g)
        n = next((i for i, (x, y) in enumerate(zip(r.token_ids, g.token_ids)) if x != y),
                 min(len(r.token_ids), len(g.token_ids)))
        assert n >= 1
        assert max(abs(p - q) for p, q in zip(g.token_probs[:n], r.token_probs[:n])) < 0.08
    assert make_backend("llamacpp", max_new_tokens=24, adapter=adapter).model_name == cpp.model_name


def test_the_adapter_is_converted_once_and_checked_against_its_base(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SLM_ROUTER_MODELS_DIR", str(tmp_path / "models"))
    from langchain_slm_router.slm.adapter import adapter_path, gguf_lora
    from langchain_slm_router.weights import default_model_path

    base = default_model_path()
    first = gguf_lora(adapter_path("nanoqa"), base)
    assert first.parent == tmp_path / "models" / "adapters" and first.suffix == ".gguf"
    stamp = first.stat().st_mtime_ns
    assert gguf_lora(adapter_path("nanoqa"), base) == first and first.stat().st_mtime_ns == stamp  # cached
    import gguf

    reader = gguf.GGUFReader(str(first))
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.lora.alpha"].contents() == 16.0
    assert len(reader.tensors) == 2 * 7 * 8  # A and B of 7 projections in the top 8 layers
    # an adapter trained on other base weights is refused before llama.cpp loads anything
    other = tmp_path / "other.gguf"
    other.write_bytes(base.read_bytes() + b"\0")
    with pytest.raises(ModelLoadError, match="trained on base weights"):
        LlamaCppSLM(model_path=str(other), adapter="nanoqa").load()
    # a peft variant llama.cpp's LoRA format cannot express is a clear error, not another model
    import json
    import shutil

    dora = tmp_path / "dora"
    shutil.copytree(adapter_path("nanoqa"), dora)
    config = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(ModelLoadError, match="use_dora"):
        LlamaCppSLM(adapter=str(dora)).load()
    assert LlamaCppSLM(model_path=str(other)).lora_path() is None  # "auto": no adapter on another GGUF


def test_overflow_early_exit_and_router(cpp) -> None:
    small = cpp.model_copy(update={"max_input_tokens": 20})
    long = [{"role": "user", "content": "Summarise: " + "the quick brown fox jumps over the lazy dog. " * 10}]
    assert isinstance(small.generate_batch([long])[0], QueryTooLongError)
    cut = small.model_copy(update={"overflow": "truncate"}).generate_batch([long])[0]
    assert cut.truncated_input and cut.input_tokens <= 20
    gate = GatePolicy(min_mean_prob=0.95)
    long_answer = [{"role": "user", "content": "Describe the water cycle."}]  # answered at length, unsure
    full, early = cpp.generate(long_answer), cpp.generate_batch([long_answer], early_exit=gate.early_exit())[0]
    assert early.early_exit and early.output_tokens < full.output_tokens
    assert early.token_probs == full.token_probs[: early.output_tokens]
    r = SLMRouter(slm=cpp, fallback=None).route("What is the capital of France?")
    assert r.stage == "slm" and r.answer.strip() and r.slm_model == "SmolLM2-135M-Instruct+nanoqa"


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
