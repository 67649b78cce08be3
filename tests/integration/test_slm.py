"""Stage 2 on the real SmolLM2-135M-Instruct: generation, confidence signals, batching, loading once."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from langchain_slm_router.slm import LocalSLM, load_model

pytestmark = pytest.mark.integration

EASY = [{"role": "user", "content": "What is the capital of France?"}]
GARBLED = [{"role": "user", "content": "qzx vlorp ## 83 ]] wibble frax? glonk & | ~~ pluv 0x3f; trenk"}]


def test_generation_carries_per_token_probabilities_and_sane_signals(slm) -> None:
    gen = slm.generate(EASY)
    assert "Paris" in gen.text
    n = gen.output_tokens
    assert 0 < n <= slm.max_new_tokens and len(gen.token_ids) == len(gen.token_probs) == len(gen.token_entropies) == n
    assert all(0.0 < p <= 1.0 for p in gen.token_probs)
    assert all(h >= 0.0 for h in gen.token_entropies)
    s = gen.signals
    assert s.mean_entropy > 0.0  # greedy decoding of a real distribution is never certain at every step
    assert s.length == n and math.isclose(s.mean_prob, sum(gen.token_probs) / n, rel_tol=1e-6)
    assert s.min_prob == pytest.approx(min(gen.token_probs))
    assert s.mean_logprob == pytest.approx(sum(math.log(p) for p in gen.token_probs) / n, rel=1e-5)
    assert s.mean_logprob <= math.log(s.mean_prob) + 1e-9  # Jensen: mean log p <= log mean p
    assert gen.input_tokens > 5 and gen.latency_ms > 0 and gen.finished in (True, False)


def test_confident_easy_answer_scores_above_garbled_prompt(slm) -> None:
    easy, garbled = slm.generate_batch([EASY, GARBLED])
    assert easy.signals.mean_prob > garbled.signals.mean_prob
    assert easy.signals.mean_entropy < garbled.signals.mean_entropy


def test_batch_equals_one_by_one_with_left_padding(slm) -> None:
    convs = [EASY, [{"role": "user", "content": "Name the largest planet in the solar system, please."}]]
    short = slm.model_copy(update={"max_new_tokens": 16})
    batched = short.generate_batch(convs)
    single = [short.generate(c) for c in convs]
    for b, s in zip(batched, single):
        assert b.token_ids == s.token_ids and b.text == s.text
        assert b.signals.mean_prob == pytest.approx(s.signals.mean_prob, abs=1e-3)


def test_max_new_tokens_bounds_the_answer(slm) -> None:
    gen = slm.model_copy(update={"max_new_tokens": 4}).generate(
        [{"role": "user", "content": "Write a long story about a dragon."}]
    )
    assert gen.output_tokens == 4 and not gen.finished


def test_chat_template_carries_system_and_history(slm) -> None:
    prompt = slm.render([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                         {"role": "user", "content": "Bye"}])
    assert slm.system_prompt in prompt and prompt.index("Hi") < prompt.index("Hello!") < prompt.index("Bye")
    assert prompt.rstrip().endswith("assistant")


def test_overflow_is_rejected_or_truncated(slm) -> None:
    from langchain_slm_router.errors import QueryTooLongError

    long = [{"role": "user", "content": "word " * 3000 + "What is the capital of France?"}]
    with pytest.raises(QueryTooLongError, match="max_input_tokens"):
        slm.encode(long)
    ids, truncated = slm.model_copy(update={"overflow": "truncate"}).encode(long)
    assert truncated and len(ids) <= slm.max_input_tokens
    assert "capital of France" in slm.loaded.tokenizer.decode(ids)  # the question at the end is kept


def test_model_loads_once_per_process_and_is_shared(slm) -> None:
    other = LocalSLM(max_new_tokens=8, temperature=0.0)
    assert other.loaded is slm.loaded is load_model()


def test_import_is_cheap_and_lazy() -> None:
    code = ("import sys, langchain_slm_router as r; r.SLMRouter; r.LocalSLM; "
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
