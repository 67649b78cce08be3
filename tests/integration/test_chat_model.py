"""ChatSLMRouter end to end: real sympy, real SmolLM2, real ChatOllama against the Ollama-protocol test server.

Which stage answers is forced with the gate's threshold where a test needs one stage (threshold 0 keeps every SLM
answer, threshold 1 escalates every one, since no answer has mean token probability 1), so the tests do not hang
on the 135M model's confidence on a given day; everything else (answers, signals, tokens) is the models' own.
The router uses the seed's threshold gate (mean token probability): the shipped learned gate's pre-generation step
would skip the SLM on some of these questions, and these tests are about what the SLM stage does when it runs.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, get_buffer_string
from langchain_core.runnables import ConfigurableField
from langchain_core.tools import tool
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from langchain_ollama import ChatOllama
from pydantic import BaseModel

from langchain_slm_router import ChatSLMRouter, GatePolicy
from langchain_slm_router.errors import EmptyQueryError, FallbackUnavailableError

pytestmark = pytest.mark.integration

KEEP = {"configurable": {"threshold": 0.0}}  # the gate keeps every SLM answer
ESCALATE = {"configurable": {"threshold": 1.0}}  # the gate escalates every SLM answer
QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def fallback(ollama_base_url: str) -> ChatOllama:
    return ChatOllama(model="smollm2", base_url=ollama_base_url, num_predict=16, temperature=0)


@pytest.fixture(scope="module")
def router(slm, fallback) -> ChatSLMRouter:
    return ChatSLMRouter(slm=slm, fallback=fallback, max_tokens=16, answer_cache=None,  # tests repeat questions
                         gate="threshold")


@pytest.fixture(scope="module")
def llm(router: ChatSLMRouter) -> Any:
    return router.configurable_fields(
        threshold=ConfigurableField(id="threshold"),
        gate=ConfigurableField(id="gate"),
        fallback=ConfigurableField(id="fallback"),
    )


def _walk(runs: list[Any]) -> list[Any]:
    out = []
    for run in runs:
        out.append(run)
        out.extend(_walk(run.child_runs))
    return out


def test_math_answer_and_its_trace(llm) -> None:
    msg = llm.invoke("What is 17 * 23 + 4?")
    assert isinstance(msg, AIMessage) and msg.content == "395"
    meta = msg.response_metadata
    assert meta["stage"] == "math" and meta["model_name"] == "sympy"
    route = meta["route"]
    assert route["math_kind"] and route["signals"] is None and not route["fallback_tried"]
    assert set(route["latency_ms"]) == {"math", "total"}
    assert msg.usage_metadata == {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}


def test_kept_slm_answer_carries_signals_threshold_and_tokens(llm, slm) -> None:
    msg = llm.invoke(QUESTION, config=KEEP)
    route = msg.response_metadata["route"]
    assert msg.response_metadata["stage"] == "slm" and msg.response_metadata["model_name"] == slm.model_name
    assert msg.content == route["slm_answer"] and msg.content.strip()
    assert route["threshold"] == 0.0 and 0.0 < route["signals"]["mean_prob"] <= 1.0
    assert route["signals"]["mean_entropy"] >= 0 and route["latency_ms"]["slm"] > 0
    assert msg.usage_metadata["input_tokens"] == route["usage"]["slm_input_tokens"] > 0
    assert msg.usage_metadata["output_tokens"] == route["signals"]["length"] > 0


def test_history_and_system_message_reach_both_models_and_stages_are_child_runs(llm, slm) -> None:
    """One chat-model run; math engine, SLM and the fallback's own run are its children, with the full history."""
    history = [
        SystemMessage("You are a geography tutor. Answer in one short sentence."),
        HumanMessage("Which river flows through Paris?"),
        AIMessage("The Seine."),
        HumanMessage("And which river flows through Rome?"),
    ]
    collector = RunCollectorCallbackHandler()
    msg = llm.invoke(history, config={**ESCALATE, "callbacks": [collector]})
    assert msg.response_metadata["stage"] == "llm"
    roots = [r for r in collector.traced_runs if r.parent_run_id is None]
    assert len(roots) == 1 and roots[0].run_type == "llm" and roots[0].name == "ChatSLMRouter"
    runs = _walk(roots)
    names = [r.name for r in runs]
    assert "math_engine" in names and "slm" in names and "ChatOllama" in names
    # the SLM saw the whole conversation through its chat template
    slm_run = next(r for r in runs if r.name == "slm")
    conversation = slm_run.inputs["input"][0]
    prompt = slm.render(conversation)
    assert [m["role"] for m in conversation] == ["system", "user", "assistant", "user"]
    for m in history:
        assert m.content in prompt
    # the fallback got the same messages, unchanged
    fb_run = next(r for r in runs if r.name == "ChatOllama")
    assert fb_run.run_type == "llm" and fb_run.inputs["prompts"] == [get_buffer_string(history)]
    # and its answer is the router's answer
    assert fb_run.outputs["generations"][0][0]["text"] == msg.content


def test_escalated_answer_is_the_fallbacks_with_both_models_tokens(llm, fallback) -> None:
    other = fallback.model_copy(update={"model": "smollm2:latest"})
    msg = llm.invoke(QUESTION, config={"configurable": {"threshold": 1.0, "fallback": other}})
    route = msg.response_metadata["route"]
    assert msg.response_metadata["stage"] == "llm" and route["fallback_tried"]
    assert route["fallback_model"] == "ChatOllama(smollm2:latest)"  # the configured fallback answered
    assert msg.response_metadata["model_name"] == "smollm2:latest"  # the fallback's own metadata
    assert msg.response_metadata["done_reason"] in ("stop", "length")
    assert route["slm_answer"] and "gate escalated" in route["reason"]
    usage = route["usage"]
    assert msg.usage_metadata["input_tokens"] == usage["slm_input_tokens"] + usage["llm_input_tokens"]
    assert msg.usage_metadata["output_tokens"] == usage["slm_output_tokens"] + usage["llm_output_tokens"]
    assert usage["llm_output_tokens"] > 0 and usage["slm_output_tokens"] > 0


def test_stop_sequences_cut_the_slm_answer(llm) -> None:
    full = llm.invoke(QUESTION, config=KEEP)
    words = full.content.split()
    assert len(words) > 2
    stop = " " + words[2]
    cut = llm.invoke(QUESTION, config=KEEP, stop=[stop])
    assert cut.response_metadata["stage"] == "slm"
    assert cut.content == full.content[: full.content.index(stop)]
    assert cut.response_metadata["route"]["slm_answer"] == full.content  # the trace keeps the whole draft


def test_configurable_gate_policy(llm) -> None:
    """A gate allowing at most one answer token escalates every real answer; the trace names the failed check."""
    msg = llm.invoke("Name a primary colour.", config={"configurable": {
        "gate": GatePolicy(min_mean_prob=None, max_length=1)}})
    route = msg.response_metadata["route"]
    assert route["signals"]["length"] > 1
    assert msg.response_metadata["stage"] == "llm"
    assert any(r.startswith("fail: length") for r in route["gate_reasons"])


def test_stream_local_answer_arrives_complete_then_in_pieces(llm) -> None:
    chunks = list(llm.stream(QUESTION, config=KEEP))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    text_chunks = [c for c in chunks if c.content]
    full = chunks[0]
    for c in chunks[1:]:
        full = full + c
    assert chunks[-1].chunk_position == "last"
    assert full.response_metadata["stage"] == "slm"
    assert full.content == full.response_metadata["route"]["slm_answer"]
    assert len(text_chunks) == len([w for w in full.content.split(" ") if w])  # word pieces
    assert full.usage_metadata["output_tokens"] == full.response_metadata["route"]["signals"]["length"]


def test_stream_escalated_answer_streams_the_fallbacks_tokens(llm) -> None:
    chunks = list(llm.stream(QUESTION, config=ESCALATE))
    full = chunks[0]
    for c in chunks[1:]:
        full = full + c
    route = full.response_metadata["route"]
    assert full.response_metadata["stage"] == "llm"
    assert full.content == route["answer"]
    assert len([c for c in chunks if c.content]) > 1  # token by token, as the fallback produced them
    # usage counted once, on the last chunk, for both models
    assert sum(1 for c in chunks if c.usage_metadata) == 1 and chunks[-1].usage_metadata
    assert full.usage_metadata["output_tokens"] == (route["usage"]["slm_output_tokens"]
                                                    + route["usage"]["llm_output_tokens"])


async def test_async_invoke_batch_stream_and_events(llm) -> None:
    msg = await llm.ainvoke("What is 6 * 7?")
    assert msg.content == "42" and msg.response_metadata["stage"] == "math"
    outs = await llm.abatch(["What is 2^10?", QUESTION], config=KEEP)
    assert outs[0].content == "1024" and outs[1].response_metadata["stage"] == "slm"
    pieces = [c async for c in llm.astream("What is 15% of 240?")]
    assert "".join(c.content for c in pieces) == "36" and pieces[-1].response_metadata["stage"] == "math"
    events = [e async for e in llm.astream_events("Solve 3x - 7 = 20", version="v2")]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "on_chat_model_start" and kinds[-1] == "on_chat_model_end"
    assert "on_chat_model_stream" in kinds
    end = events[-1]["data"]["output"]
    assert end.response_metadata["stage"] == "math" and "9" in end.content


def test_batch_keeps_order_and_fails_alone(llm) -> None:
    outs = llm.batch(["What is 3 * 7?", "   ", "derivative of x^3"], return_exceptions=True)
    assert outs[0].content == "21"
    assert isinstance(outs[1], EmptyQueryError)
    assert outs[2].response_metadata["stage"] == "math" and outs[2].content.replace(" ", "") == "3*x**2"


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"Sunny in {city}"


def test_bind_tools_sends_the_request_to_the_fallback(router, fallback) -> None:
    """Tools skip the local stages; the answer is exactly the fallback's own answer to the same request."""
    question = "What is the weather in Paris?"
    msg = router.bind_tools([get_weather]).invoke(question)
    own = fallback.bind_tools([get_weather]).invoke(question)
    route = msg.response_metadata["route"]
    assert msg.response_metadata["stage"] == "llm" and route["reason"] == "sent to the fallback: tools"
    assert route["signals"] is None and "slm" not in route["latency_ms"]
    assert msg.content == own.content and msg.tool_calls == own.tool_calls
    assert msg.usage_metadata["input_tokens"] == own.usage_metadata["input_tokens"]


def test_with_structured_output_is_the_fallbacks(router, fallback) -> None:
    class City(BaseModel):
        name: str

    question = "Which city is the capital of France?"
    ours = router.with_structured_output(City, include_raw=True).invoke(question)
    own = fallback.with_structured_output(City, include_raw=True).invoke(question)
    assert set(ours) == {"raw", "parsed", "parsing_error"}
    assert ours["raw"].content == own["raw"].content
    assert ours["parsed"] == own["parsed"]


def test_fallback_down_is_a_typed_error_or_a_marked_slm_answer(slm) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connections are refused
    down = ChatOllama(model="smollm2", base_url=f"http://127.0.0.1:{port}", num_predict=8)
    strict = ChatSLMRouter(slm=slm, fallback=down, threshold=1.0, max_tokens=8, fallback_retries=0)
    with pytest.raises(FallbackUnavailableError, match="ollama serve"):
        strict.invoke(QUESTION)
    lenient = ChatSLMRouter(slm=slm, fallback=down, threshold=1.0, max_tokens=8, fallback_retries=0,
                            on_fallback_error="return_slm")
    chunks = list(lenient.stream(QUESTION))
    full = chunks[0]
    for c in chunks[1:]:
        full = full + c
    route = full.response_metadata["route"]
    assert full.response_metadata["stage"] == "slm" and route["low_confidence"] and route["fallback_tried"]
    assert full.content == route["slm_answer"] and route["fallback_error"]
