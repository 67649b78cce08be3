"""ChatModelSLM's pure parts: reading both logprob layouts, the top-k entropy bound, token estimates, configuration.

No server is contacted: building a chat model does not connect. The end-to-end behaviour against real engines is in
``tests/integration/test_engine_slm.py``.
"""

from __future__ import annotations

import math

import pytest
from langchain_core.messages import AIMessage
from langchain_ollama import ChatOllama
from langchain_openai import ChatOpenAI
from ollama import ChatResponse

from langchain_slm_router.errors import LogprobsUnavailableError, QueryTooLongError
from langchain_slm_router.slm import SLM_BACKENDS, ChatModelSLM, make_backend
from langchain_slm_router.slm.chat_model_slm import generation_from_message, parse_logprobs, topk_entropy

ENTRIES = [
    {"token": "Paris", "logprob": math.log(0.8), "top_logprobs": [
        {"token": "Paris", "logprob": math.log(0.8)}, {"token": "Lyon", "logprob": math.log(0.15)}]},
    {"token": ".", "logprob": math.log(0.5), "top_logprobs": [
        {"token": ".", "logprob": math.log(0.5)}, {"token": "!", "logprob": math.log(0.25)}]},
]


def ollama_model(**kwargs) -> ChatOllama:
    return ChatOllama(model="m", base_url="http://127.0.0.1:9", **{"logprobs": True, "top_logprobs": 2, **kwargs})


def test_both_layouts_are_read_alike() -> None:
    # what ChatOllama hands back: the ollama client's Logprob objects, not dicts
    ollama_objects = ChatResponse.model_validate({"message": {"role": "assistant", "content": "Paris."},
                                                  "logprobs": ENTRIES}).logprobs
    assert type(ollama_objects[0]).__name__ == "Logprob"
    for metadata in ({"logprobs": ENTRIES}, {"logprobs": {"content": ENTRIES, "refusal": None}},
                     {"logprobs": ollama_objects}):
        parsed = parse_logprobs(metadata)
        assert [e["token"] for e in parsed] == ["Paris", "."]
        assert parsed[1]["top_logprobs"][1]["logprob"] == pytest.approx(math.log(0.25))
    assert parse_logprobs({}) is None and parse_logprobs({"logprobs": None}) is None


def test_top_k_entropy_is_a_lower_bound_that_grows_with_k() -> None:
    probs = [0.5, 0.2, 0.1, 0.1, 0.05, 0.05]
    exact = -sum(p * math.log(p) for p in probs)
    alts = [{"logprob": math.log(p)} for p in probs]
    bounds = [topk_entropy(alts[:k], alts[0]["logprob"]) for k in range(1, len(probs) + 1)]
    assert bounds == sorted(bounds) and bounds[-1] == pytest.approx(exact) and bounds[1] < exact
    assert topk_entropy([], math.log(0.5)) == pytest.approx(0.5 * math.log(2))  # only the chosen token's term


def test_generation_from_a_reply_with_logprobs() -> None:
    reply = AIMessage(content=" Paris.", response_metadata={"logprobs": {"content": ENTRIES}, "finish_reason": "stop"},
                      usage_metadata={"input_tokens": 20, "output_tokens": 2, "total_tokens": 22})
    gen = generation_from_message(reply, latency_ms=5.0, input_tokens=99, max_new_tokens=16)
    assert gen.text == "Paris." and gen.token_probs == pytest.approx([0.8, 0.5]) and gen.finished
    assert gen.signals.mean_prob == pytest.approx(0.65) and gen.input_tokens == 20 and gen.output_tokens == 2
    assert gen.top_logprobs[0] == {"Paris": pytest.approx(math.log(0.8)), "Lyon": pytest.approx(math.log(0.15))}
    cut = AIMessage(content="Paris.", response_metadata={"logprobs": ENTRIES, "done_reason": "length"})
    assert not generation_from_message(cut, latency_ms=1.0, input_tokens=9, max_new_tokens=2).finished
    with pytest.raises(LogprobsUnavailableError):
        generation_from_message(AIMessage(content="Paris."), latency_ms=1.0, input_tokens=9, max_new_tokens=2)


def test_logprobs_must_be_asked_for() -> None:
    with pytest.raises(LogprobsUnavailableError, match="logprobs=True"):
        ChatModelSLM(chat_model=ollama_model(logprobs=False, top_logprobs=None))
    with pytest.raises(LogprobsUnavailableError):
        ChatModelSLM(chat_model=ChatOpenAI(model="m", base_url="http://127.0.0.1:9/v1", api_key="-"))
    bound = ChatOpenAI(model="m", base_url="http://127.0.0.1:9/v1", api_key="-").bind(logprobs=True)
    assert ChatModelSLM(chat_model=bound).model_name == "ChatOpenAI(m)"


def test_registered_and_configures_the_chat_model() -> None:
    assert SLM_BACKENDS["chat_model"] is ChatModelSLM
    slm = make_backend("chat_model", chat_model=ollama_model(temperature=0.8), max_new_tokens=12)
    assert slm.model_name == "ChatOllama(m)"
    assert slm._model.num_predict == 12 and slm._model.temperature == 0.0  # noqa: SLF001 - the configured copy
    assert slm.chat_model.temperature == 0.8  # the user's model is not changed
    openai = ChatModelSLM(chat_model=ChatOpenAI(model="m", base_url="http://127.0.0.1:9/v1", api_key="-",
                                                logprobs=True), max_new_tokens=7)
    assert openai._model.max_tokens == 7 and openai._model.extra_body == {"max_tokens": 7}  # noqa: SLF001


def test_token_estimate_and_overflow_rule() -> None:
    slm = ChatModelSLM(chat_model=ollama_model(), system_prompt=None, max_input_tokens=50)
    assert slm.count_tokens([{"role": "user", "content": "x" * 40}]) == 10 + 4
    long = [{"role": "user", "content": "word " * 100}]
    assert isinstance(slm.generate_batch([long])[0], QueryTooLongError)  # no request is sent for it
    with pytest.raises(QueryTooLongError, match="estimated"):
        slm.prepare(long)
    msgs, n, truncated = slm.model_copy(update={"overflow": "truncate"}).prepare(long)
    assert truncated and n <= 50 and msgs[0]["content"].startswith("word") and msgs[0]["content"].endswith("word ")


def test_a_configuration_dict_builds_the_chat_model() -> None:
    from pydantic import ValidationError

    from langchain_slm_router.router import SLMRouter

    router = SLMRouter(slm={"backend": "chat_model", "max_new_tokens": 16, "chat_model": {
        "provider": "ollama", "model": "qwen2.5:1.5b", "base_url": "http://127.0.0.1:9"}}, fallback=None)
    assert isinstance(router.slm, ChatModelSLM) and router.slm.model_name == "ChatOllama(qwen2.5:1.5b)"
    assert router.slm.chat_model.logprobs is True and router.slm.chat_model.top_logprobs == 5
    openai = ChatModelSLM(chat_model={"provider": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1",
                                      "api_key": "-", "top_logprobs": 20})
    assert type(openai.chat_model).__name__ == "ChatOpenAI" and openai.chat_model.top_logprobs == 20
    with pytest.raises(ValidationError, match="provider"):
        ChatModelSLM(chat_model={"provider": "vllm", "model": "m"})
