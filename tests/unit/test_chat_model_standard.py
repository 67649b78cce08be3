"""LangChain's standard unit suite for ChatSLMRouter, plus routing-logic unit tests (no model is loaded here).

The fallback is a real ``ChatOllama`` client pointed at a closed port: the unit suite only constructs models,
binds tools and builds structured-output runnables, which never contact the server. The routing-logic tests at
the end use a small fake tool-calling chat model as the fallback: requests with tools skip the local stages, so
no SLM is loaded and the fake only stands in for "a fallback that calls tools".
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import ConfigurableField, Runnable
from langchain_core.tools import tool
from langchain_ollama import ChatOllama
from langchain_tests.unit_tests import ChatModelUnitTests
from pydantic import BaseModel

from langchain_slm_router import ChatSLMRouter, GatePolicy, LocalSLM, SLMRouter
from langchain_slm_router.errors import EmptyQueryError, FallbackUnavailableError

CLOSED = "http://127.0.0.1:9"  # discard port: nothing listens; unit tests never send a request
_FALLBACK = ChatOllama(model="mistral", base_url=CLOSED)  # built once: ChatOllama sets up HTTP clients on init


class TestChatSLMRouterUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatSLMRouter]:
        return ChatSLMRouter

    @property
    def chat_model_params(self) -> dict:
        return {"fallback": _FALLBACK, "threshold": 0.6}

    # Tool calling and structured output are delegated to the fallback (ChatOllama supports both), so the
    # standard bind_tools / with_structured_output unit tests run (has_tool_calling / has_structured_output are
    # left at their defaults, which are True because ChatSLMRouter overrides both methods).


# ---------------------------------------------------------------------------------------------- routing logic
class _ToolCallingFake(BaseChatModel):
    """Stands in for a tool-calling fallback: answers every request with one call of the first bound tool."""

    tools: list[dict] = []
    seen: list[list[BaseMessage]] = []

    @property
    def _llm_type(self) -> str:
        return "tool-calling-fake"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable:
        return self.model_copy(update={"tools": list(tools)})

    def _reply(self, messages: list[BaseMessage]) -> AIMessage:
        self.seen.append(list(messages))
        if isinstance(messages[-1], ToolMessage):
            return AIMessage(content=f"The tool said: {messages[-1].content}",
                             response_metadata={"model_name": "fake-tools"},
                             usage_metadata={"input_tokens": 9, "output_tokens": 4, "total_tokens": 13})
        name = self.tools[0]["function"]["name"] if self.tools else "none"
        return AIMessage(content="", tool_calls=[{"name": name, "args": {"city": "Paris"}, "id": "call_1"}],
                         response_metadata={"model_name": "fake-tools"},
                         usage_metadata={"input_tokens": 7, "output_tokens": 3, "total_tokens": 10})

    def _generate(self, messages: list[BaseMessage], stop: Any = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._reply(messages))])

    def _stream(self, messages: list[BaseMessage], stop: Any = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        msg = self._reply(messages)
        chunks = [{"name": tc["name"], "args": json.dumps(tc["args"]), "id": tc["id"], "index": 0}
                  for tc in msg.tool_calls]
        yield ChatGenerationChunk(message=AIMessageChunk(content=msg.content, tool_call_chunks=chunks,
                                                         usage_metadata=msg.usage_metadata,
                                                         response_metadata=msg.response_metadata))


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"Sunny in {city}"


@pytest.fixture
def fake_router() -> ChatSLMRouter:
    return ChatSLMRouter(fallback=_ToolCallingFake(seen=[]), slm=LocalSLM(max_new_tokens=8))


def test_bind_tools_routes_to_the_fallback_and_keeps_tool_calls(fake_router: ChatSLMRouter) -> None:
    msg = fake_router.bind_tools([get_weather]).invoke("What is the weather in Paris?")
    assert msg.tool_calls == [{"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1", "type": "tool_call"}]
    route = msg.response_metadata["route"]
    assert msg.response_metadata["stage"] == "llm" and route["reason"] == "sent to the fallback: tools"
    assert route["signals"] is None and "slm" not in route["latency_ms"]  # the SLM never ran
    assert msg.response_metadata["model_name"] == "fake-tools"
    assert msg.usage_metadata["input_tokens"] == 7 and msg.usage_metadata["output_tokens"] == 3


def test_streamed_tool_calls_are_the_fallbacks(fake_router: ChatSLMRouter) -> None:
    chunks = list(fake_router.bind_tools([get_weather]).stream("What is the weather in Paris?"))
    full = chunks[0]
    for c in chunks[1:]:
        full = full + c
    assert chunks[-1].chunk_position == "last"
    assert [tc["name"] for tc in full.tool_calls] == ["get_weather"] and full.tool_calls[0]["args"] == {"city": "Paris"}
    assert full.usage_metadata["total_tokens"] == 10  # counted once, on the last chunk
    assert full.response_metadata["stage"] == "llm"


def test_tool_results_go_back_to_the_fallback(fake_router: ChatSLMRouter) -> None:
    """A conversation with tool traffic cannot be read by the local stages: the fallback answers it."""
    llm = fake_router.bind_tools([get_weather])
    question = "What is the weather in Paris?"
    call = llm.invoke(question)
    result = get_weather.invoke(call.tool_calls[0])
    final = llm.invoke([("human", question), call, result])
    assert final.content == "The tool said: Sunny in Paris"
    assert final.response_metadata["stage"] == "llm"


def test_with_structured_output_is_the_fallbacks() -> None:
    class Answer(BaseModel):
        city: str

    class _Structured(_ToolCallingFake):
        def with_structured_output(self, schema: Any, **kwargs: Any) -> Runnable:
            from langchain_core.runnables import RunnableLambda

            return RunnableLambda(lambda msgs: schema(city="Paris"))

    llm = ChatSLMRouter(fallback=_Structured(seen=[]))
    assert llm.with_structured_output(Answer).invoke("Which city is the capital of France?") == Answer(city="Paris")


def test_tools_without_a_fallback_raise_a_typed_error() -> None:
    llm = ChatSLMRouter(fallback=None)
    with pytest.raises(FallbackUnavailableError, match="fallback"):
        llm.bind_tools([get_weather])
    with pytest.raises(FallbackUnavailableError):
        llm.with_structured_output(dict)


def test_empty_input_is_a_typed_error(fake_router: ChatSLMRouter) -> None:
    with pytest.raises(EmptyQueryError):
        fake_router.bind_tools([get_weather]).invoke("   ")


# ---------------------------------------------------------------------------------------------- configuration
def test_convenience_arguments_fold_into_the_router() -> None:
    fallback = ChatOllama(model="mistral", base_url=CLOSED)
    llm = ChatSLMRouter(fallback=fallback, threshold=0.8, max_tokens=16, temperature=0.0, max_retries=4,
                        on_fallback_error="return_slm")
    # the default SLM's default gate is the shipped learned gate (keep at P(correct) >= 0.5); threshold moves it
    assert llm.router.gate.threshold == 0.8 and llm.gate.threshold == 0.5
    assert llm.router.fallback is fallback and llm.fallback is fallback
    assert llm.router.slm.max_new_tokens == 16
    assert llm.router.fallback_retries == 4 and llm.router.on_fallback_error == "return_slm"


def test_an_existing_router_is_used_and_fallback_none_means_no_fallback() -> None:
    core = SLMRouter(gate=GatePolicy(min_mean_prob=0.3, max_mean_entropy=2.0), fallback=None)
    llm = ChatSLMRouter(router=core)
    assert llm.router.gate == core.gate and llm.fallback is None
    assert ChatSLMRouter(router=core, threshold=0.9).router.gate.max_mean_entropy == 2.0


def test_configurable_fields_rebuild_the_router() -> None:
    fallback = ChatOllama(model="mistral", base_url=CLOSED)
    other = ChatOllama(model="qwen2.5", base_url=CLOSED)
    llm = ChatSLMRouter(fallback=fallback).configurable_fields(
        threshold=ConfigurableField(id="threshold"),
        fallback=ConfigurableField(id="fallback"),
        gate=ConfigurableField(id="gate"),
    )
    default, _ = llm._prepare({})
    assert default.router.gate.threshold == 0.5 and default.router.fallback is fallback
    tuned, _ = llm._prepare({"configurable": {"threshold": 0.95, "fallback": other}})
    assert tuned.router.gate.threshold == 0.95 and tuned.router.fallback is other
    gated, _ = llm._prepare({"configurable": {"gate": GatePolicy(min_mean_prob=None, max_mean_entropy=1.5)}})
    assert gated.router.gate.max_mean_entropy == 1.5 and gated.router.gate.min_mean_prob is None


def test_model_dump_is_json_without_weights() -> None:
    llm = ChatSLMRouter(fallback=ChatOllama(model="mistral", base_url=CLOSED), threshold=0.7)
    dumped = llm.model_dump(mode="json")
    text = json.dumps(dumped)
    # the shipped gate file is named by its hash and thresholds, not inlined (it is ~1 MB of numbers)
    assert dumped["threshold"] == 0.7 and dumped["router"]["gate"]["gate"] == "shipped"
    assert dumped["router"]["gate"]["min_p_correct"] == 0.7 and len(dumped["router"]["gate"]["sha256"]) == 64
    assert dumped["router"]["slm"]["max_new_tokens"] == 64 and dumped["fallback"]["model"] == "mistral"
    assert len(text) < 20_000  # configuration only: no tensors, no tokenizer
    rebuilt = ChatSLMRouter(**{**dumped, "fallback": ChatOllama(**dumped["fallback"])})
    assert rebuilt.router.gate == llm.router.gate and rebuilt.router.slm == llm.router.slm


def test_a_dump_naming_a_shipped_gate_this_version_lacks_is_refused() -> None:
    llm = ChatSLMRouter(fallback=ChatOllama(model="mistral", base_url=CLOSED))
    dumped = llm.model_dump(mode="json")
    dumped["router"]["gate"]["sha256"] = "0" * 64
    with pytest.raises(ValueError, match="does not ship"):
        ChatSLMRouter(**{**dumped, "fallback": ChatOllama(**dumped["fallback"])})
    seed = ChatSLMRouter(fallback=ChatOllama(model="mistral", base_url=CLOSED), gate="threshold")
    assert seed.model_dump(mode="json")["router"]["gate"]["min_mean_prob"] == 0.6  # other gates are dumped whole


def test_identifying_params_and_ls_params() -> None:
    llm = ChatSLMRouter(fallback=ChatOllama(model="mistral", base_url=CLOSED), max_tokens=32)
    params = llm._identifying_params
    assert params["slm"] == "SmolLM2-135M-Instruct+nanoqa" and params["fallback"] == "ChatOllama(mistral)"
    assert params["threshold"] == 0.5 and params["max_new_tokens"] == 32
    assert params["gate"]["gate"] == "learned" and len(json.dumps(params)) < 2_000  # not the gate's ~1 MB file
    ls = llm._get_ls_params(stop=["\n"])
    assert ls["ls_provider"] == "slm_router" and ls["ls_max_tokens"] == 32 and ls["ls_stop"] == ["\n"]
    assert llm._llm_type == "slm-router"
