"""SLMRouterLLM without running a model: message conversion, metadata, construction, trace layout, tools."""

from __future__ import annotations

import base64

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from llama_index.core.base.llms.types import (
    AudioBlock,
    ChatMessage,
    ImageBlock,
    MessageRole,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
)
from llama_index.core.llms import LLM

from langchain_slm_router import GatePolicy, LocalSLM, SLMRouter
from langchain_slm_router.errors import InvalidQueryError
from langchain_slm_router.messages import Conversation
from langchain_slm_router.trace import RouteResult
from llama_index_integration import SLMRouterLLM, math_tool, response_trace, router_tool, to_langchain_messages


def test_roles_map_to_langchain_messages() -> None:
    msgs = to_langchain_messages([
        ChatMessage(role=MessageRole.SYSTEM, content="Be brief."),
        ChatMessage(role=MessageRole.DEVELOPER, content="No markdown."),
        ChatMessage(role=MessageRole.USER, content="Hi"),
        ChatMessage(role=MessageRole.ASSISTANT, content="Hello!"),
        ChatMessage(role=MessageRole.MODEL, content="Again"),
        ChatMessage(role=MessageRole.TOOL, content="42", additional_kwargs={"tool_call_id": "call-1"}),
        ChatMessage(role=MessageRole.USER, content="And now?"),
    ])
    assert [type(m) for m in msgs] == [SystemMessage, SystemMessage, HumanMessage, AIMessage, AIMessage,
                                       ToolMessage, HumanMessage]
    assert [m.content for m in msgs] == ["Be brief.", "No markdown.", "Hi", "Hello!", "Again", "42", "And now?"]
    assert msgs[5].tool_call_id == "call-1"
    # the router reads them: chat history and the system message reach the SLM's chat template as dicts
    conv = Conversation(msgs[:5] + [msgs[6]])
    assert conv.dicts[0] == {"role": "system", "content": "Be brief."}
    assert conv.question == "And now?" and conv.local_ok


def test_text_blocks_are_joined_and_thinking_dropped() -> None:
    msg = ChatMessage(role="user", blocks=[TextBlock(text="Context: A."), ThinkingBlock(content="hmm"),
                                           TextBlock(text="Question: B?")])
    (converted,) = to_langchain_messages([msg])
    assert converted.content == "Context: A.\nQuestion: B?"
    assert to_langchain_messages([ChatMessage(role="assistant", content=None)])[0].content == ""


def test_image_blocks_become_image_content_and_go_to_the_fallback() -> None:
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    )
    msgs = to_langchain_messages([
        ChatMessage(role="user", blocks=[TextBlock(text="What is in this picture?"),
                                         ImageBlock(image=png, image_mimetype="image/png")]),
    ])
    blocks = msgs[0].content
    assert blocks[0] == {"type": "text", "text": "What is in this picture?"}
    assert blocks[1]["type"] == "image_url"
    assert blocks[1]["image_url"]["url"].startswith("data:image/png;base64,iVBOR")
    assert not Conversation(msgs).local_ok  # the local stages cannot read images
    by_url = to_langchain_messages([ChatMessage(role="user", blocks=[ImageBlock(url="https://example.com/a.png")])])
    assert by_url[0].content == [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]


def test_tool_calls_and_results_become_langchain_tool_traffic() -> None:
    msgs = to_langchain_messages([
        ChatMessage(role="user", content="What is 2 + 2?"),
        ChatMessage(role="assistant", blocks=[ToolCallBlock(tool_call_id="c1", tool_name="math_engine",
                                                            tool_kwargs={"question": "2 + 2"})]),
        ChatMessage(role="tool", content="4", additional_kwargs={"tool_call_id": "c1"}),
        ChatMessage(role="user", content="So?"),
    ])
    assert msgs[1].tool_calls == [{"name": "math_engine", "args": {"question": "2 + 2"}, "id": "c1",
                                   "type": "tool_call"}]
    assert msgs[2].tool_call_id == "c1"
    assert not Conversation(msgs).local_ok  # tool traffic goes to the fallback
    (raw,) = to_langchain_messages([ChatMessage(role="assistant", blocks=[
        ToolCallBlock(tool_name="f", tool_kwargs='{"x": 1}')])])
    assert raw.tool_calls[0]["args"] == {"x": 1} and raw.tool_calls[0]["id"] == "call_0"


def test_audio_goes_to_the_fallback_and_unsupported_input_raises_typed_errors() -> None:
    (msg,) = to_langchain_messages([ChatMessage(role="user", blocks=[
        TextBlock(text="What is said here?"), AudioBlock(audio=b"RIFF....", format="wav")])])
    assert [b["type"] for b in msg.content] == ["text", "audio"]  # as ChatSLMRouter gets it: escalated
    assert not Conversation([msg]).local_ok
    with pytest.raises(InvalidQueryError, match="ChatMessage"):
        to_langchain_messages(["not a message"])  # type: ignore[list-item]


def test_metadata_fits_the_slm_budget() -> None:
    llm = SLMRouterLLM(slm=LocalSLM(max_new_tokens=32, max_input_tokens=1000), fallback=None)
    meta = llm.metadata
    assert isinstance(llm, LLM)
    assert meta.is_chat_model and not meta.is_function_calling_model
    assert meta.num_output == 32
    assert meta.context_window == int((1000 - 32) * 0.85) + 32
    assert meta.model_name == "slm-router:SmolLM2-135M-Instruct+nanoqa+no-fallback"
    custom = SLMRouterLLM(slm=LocalSLM(), fallback=None, context_window=700, num_output=20, context_fraction=0.5)
    assert (custom.metadata.context_window, custom.metadata.num_output) == (700, 20)
    assert SLMRouterLLM(slm=LocalSLM(max_input_tokens=400), fallback=None,
                        context_fraction=0.5).metadata.context_window == 184 + 64


def test_router_fields_build_the_router_or_apply_to_the_given_one() -> None:
    gate = GatePolicy(min_mean_prob=0.8)
    llm = SLMRouterLLM(gate=gate, fallback=None, slm=LocalSLM(overflow="truncate"))
    assert llm.router.gate is gate and llm.router.fallback is None and llm.router.slm.overflow == "truncate"
    router = SLMRouter(fallback=None)
    assert SLMRouterLLM(router=router).router is router
    applied = SLMRouterLLM(router=router, gate=gate, max_tokens=12).router
    assert applied.gate is gate and applied.slm.max_new_tokens == 12 and router.slm.max_new_tokens == 64
    assert "ChatOllama(mistral)" in SLMRouterLLM().metadata.model_name  # default fallback, not contacted
    assert SLMRouterLLM.class_name() == "SLMRouterLLM"
    assert "router" not in llm.to_dict()  # the weights and clients are not serialised


def test_response_trace_has_llama_index_token_keys() -> None:
    result = RouteResult(answer="Paris", stage="llm", reason="the gate escalated the SLM answer",
                         usage={"slm_input_tokens": 30, "slm_output_tokens": 5, "llm_input_tokens": 28,
                                "llm_output_tokens": 3})
    trace = response_trace(result)
    assert trace["stage"] == "llm" and trace["answer"] == "Paris"
    assert trace["usage"]["prompt_tokens"] == 58 and trace["usage"]["completion_tokens"] == 8
    assert trace["usage"]["total_tokens"] == 66 and trace["usage"]["slm_input_tokens"] == 30
    from llama_index.core.callbacks.token_counting import get_tokens_from_response
    from llama_index.core.base.llms.types import CompletionResponse

    assert get_tokens_from_response(CompletionResponse(text="Paris", raw=trace)) == (58, 8)


def test_structured_output_is_escalated_unless_the_caller_says_otherwise() -> None:
    assert SLMRouterLLM._escalated(None) == {"escalate": "structured output"}
    assert SLMRouterLLM._escalated({"escalate": "json", "fallback": "x"}) == {"escalate": "json", "fallback": "x"}


def test_tools_describe_themselves_and_math_tool_is_exact() -> None:
    tool = router_tool(SLMRouter(fallback=None))
    assert tool.metadata.name == "ask_router" and "question" in tool.metadata.fn_schema_str
    math = math_tool()
    assert math.call(question="What is 17 * 23 + 4?").content == "395"
    assert "not math this calculator can solve" in math.call(question="Who wrote Hamlet?").content
