"""One per-call contract: ``ChatSLMRouter`` and ``SLMRouterLLM`` give the same answer, stage, stops, tool calls,
usage and errors for the same call (both translate to and from ``langchain_slm_router.call.CallContract``).

The math engine is real; no SLM runs (``slm=None``); the fallback is a small scripted chat model that records what
each call bound on it (stop sequences, options, tools) and answers with a tool call when tools are bound. It only
stands in for "a fallback chat model": what is tested is the contract's translation, not a model.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from llama_index.core.base.llms.types import AudioBlock, ChatMessage, TextBlock, ToolCallBlock

from langchain_slm_router import ChatSLMRouter, SLMRouter
from langchain_slm_router.errors import FallbackUnavailableError
from llama_index_integration import SLMRouterLLM

TOOL = {"type": "function", "function": {"name": "lookup", "description": "Look a word up.",
                                         "parameters": {"type": "object", "properties": {"word": {"type": "string"}},
                                                        "required": ["word"]}}}


class _Recorder(BaseChatModel):
    """Answers "the fallback says hello world", or a ``lookup`` tool call when tools are bound; records each call."""

    calls: list[dict[str, Any]] = []

    @property
    def _llm_type(self) -> str:
        return "recorder"

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self.bind(tools=tools, **kwargs)

    def _generate(self, messages: list[BaseMessage], stop: Any = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        self.calls.append({"stop": stop, **kwargs})
        usage = {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}
        if kwargs.get("tools"):
            msg = AIMessage(content="", tool_calls=[{"name": "lookup", "args": {"word": "hello"}, "id": "t1"}],
                            usage_metadata=usage)
        else:
            msg = AIMessage(content="the fallback says hello world", usage_metadata=usage)
        return ChatResult(generations=[ChatGeneration(message=msg)])


def _both(fallback: Any = "recorder") -> tuple[ChatSLMRouter, SLMRouterLLM, _Recorder | None]:
    fb = _Recorder(calls=[]) if fallback == "recorder" else fallback
    router = SLMRouter(slm=None, fallback=fb)
    return ChatSLMRouter(router=router), SLMRouterLLM(router=router), fb


def _langchain(chat: ChatSLMRouter, text: str, **kwargs: Any) -> dict[str, Any]:
    msg = chat.invoke(text, **kwargs)
    return {"answer": msg.text, "stage": msg.response_metadata["stage"],
            "tool_calls": [(c["name"], c["args"]) for c in msg.tool_calls],
            "usage": dict(msg.usage_metadata or {})}


def _llama(llm: SLMRouterLLM, content: Any, **kwargs: Any) -> dict[str, Any]:
    message = content if isinstance(content, ChatMessage) else ChatMessage(role="user", content=content)
    resp = llm.chat([message], **kwargs)
    calls = [(b.tool_name, b.tool_kwargs) for b in resp.message.blocks if isinstance(b, ToolCallBlock)]
    usage = resp.raw["usage"]
    return {"answer": resp.message.content or "", "stage": resp.raw["stage"], "tool_calls": calls,
            "usage": {"input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"],
                      "total_tokens": usage["total_tokens"]}}


def test_stops_cut_a_local_answer_alike() -> None:
    chat, llm, _ = _both()
    a, b = _langchain(chat, "What is 2^10?", stop=["2"]), _llama(llm, "What is 2^10?", stop=["2"])
    assert a == b and a["answer"] == "10" and a["stage"] == "math"
    streamed_lc = "".join(c.text for c in chat.stream("What is 2^10?", stop=["2"]))
    streamed_li = [r.delta for r in llm.stream_chat([ChatMessage(role="user", content="What is 2^10?")], stop=["2"])]
    assert streamed_lc == "".join(streamed_li) == "10"


def test_stops_and_call_time_options_reach_the_fallback_alike() -> None:
    chat, llm, fb = _both()
    a = _langchain(chat, "Say hello.", stop=["world"], temperature=0.3)
    seen_lc = fb.calls.pop()
    b = _llama(llm, "Say hello.", stop=["world"], temperature=0.3)
    seen_li = fb.calls.pop()
    assert a == b and a["stage"] == "llm" and a["answer"] == "the fallback says hello world"
    assert seen_lc == seen_li == {"stop": ["world"], "temperature": 0.3}
    assert a["usage"] == {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}


def test_tool_calls_of_the_fallback_pass_through_alike() -> None:
    chat, llm, fb = _both()
    a = _langchain(chat, "What is 2 + 2?", tools=[TOOL])  # tools: straight to the fallback, even for math
    b = _llama(llm, "What is 2 + 2?", tools=[TOOL])
    assert a == b and a["stage"] == "llm" and a["tool_calls"] == [("lookup", {"word": "hello"})]
    assert all(call["tools"] == [TOOL] for call in fb.calls)


def test_non_text_content_goes_to_the_fallback_alike() -> None:
    chat, llm, _ = _both()
    blocks = [{"type": "text", "text": "What is 2 + 2?"},
              {"type": "audio", "base64": "UklGRg==", "mime_type": "audio/wav"}]
    a = _langchain(chat, [HumanMessage(content=blocks)])
    b = _llama(llm, ChatMessage(role="user", blocks=[TextBlock(text="What is 2 + 2?"),
                                                     AudioBlock(audio=b"RIFF", format="wav")]))
    assert a == b and a["stage"] == "llm"


def test_errors_alike() -> None:
    chat, llm, _ = _both(fallback=None)
    with pytest.raises(FallbackUnavailableError):
        chat.invoke("What is 2 + 2?", tools=[TOOL])
    with pytest.raises(FallbackUnavailableError):
        llm.chat([ChatMessage(role="user", content="What is 2 + 2?")], tools=[TOOL])
    with pytest.raises(FallbackUnavailableError):
        chat.invoke("Who wrote Hamlet?")
    with pytest.raises(FallbackUnavailableError):
        llm.chat([ChatMessage(role="user", content="Who wrote Hamlet?")])
