"""SLMRouterLLM with the real SmolLM2, real sympy, the real all-MiniLM-L6-v2 embeddings and the real ChatOllama
client talking to the Ollama-protocol test server (backed by the same SLM) as fallback.

Answers of a 135M model are weak, so the assertions check what must hold whatever it writes: the stage and its
trace, the retrieved source document, the events handlers see, prompt sizes, and exact math answers. The routers
use the seed's threshold gate: these tests are about what the SLM stage does when it runs, and the shipped learned
gate skips it for questions it expects the stock SLM to get wrong (tests/integration/test_signals_live.py covers
the default gate).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.agent.workflow import AgentOutput, ReActAgent, ToolCallResult
from llama_index.core.base.llms.types import (
    ChatMessage,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.llm import (
    LLMChatEndEvent,
    LLMChatInProgressEvent,
    LLMChatStartEvent,
    LLMCompletionEndEvent,
    LLMCompletionStartEvent,
)
from llama_index.core.llms import CustomLLM
from llama_index.core.response_synthesizers import CompactAndRefine
from llama_index.core.tools import QueryEngineTool

from llama_index_integration import SLMRouterLLM, local_embedding, router_tool

pytestmark = pytest.mark.integration
# One event loop for the module's async tests: ChatOllama's async HTTP client keeps its pooled connections bound
# to the loop that opened them, so a second loop would find them closed.
same_loop = pytest.mark.asyncio(loop_scope="module")

STAGES = {"math", "slm", "llm"}
DOCS = [
    Document(text="The Fenwick Map Library opened in 1923. It holds about 40,000 historical maps of the northern "
                  "coast, and its reading room is open on weekdays.", metadata={"title": "fenwick"}),
    Document(text="Mount Kessel is a dormant volcano. Its last eruption was in 1781, and its summit is 2,310 metres "
                  "high. Hikers reach the crater rim in about five hours.", metadata={"title": "kessel"}),
    Document(text="The Brightwater ferry crosses the bay every 40 minutes. A single ticket costs 3 euros and "
                  "bicycles travel free.", metadata={"title": "ferry"}),
    Document(text="Tessa Lind is a glassblower from Orrin. She won the national craft prize in 2019 for a series "
                  "of blue glass bowls.", metadata={"title": "lind"}),
]


class EventLog(BaseEventHandler):
    """Records every instrumentation event LlamaIndex dispatches."""

    events: list[Any] = []

    def handle(self, event: Any, **kwargs: Any) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
def events():
    log = EventLog(events=[])
    root = get_dispatcher()
    root.add_event_handler(log)
    yield log
    root.event_handlers.remove(log)


@pytest.fixture(scope="module")
def fallback(ollama_base_url):
    """The real ChatOllama client at the test server; this module's own (fresh async connection pool)."""
    from langchain_ollama import ChatOllama

    return ChatOllama(model="smollm2", base_url=ollama_base_url, num_predict=48, temperature=0)


@pytest.fixture(scope="module")
def llm(slm, fallback) -> SLMRouterLLM:
    return SLMRouterLLM(slm=slm, fallback=fallback, answer_cache=None, gate="threshold")  # tests repeat questions


@pytest.fixture(scope="module")
def index() -> VectorStoreIndex:
    return VectorStoreIndex.from_documents(DOCS, embed_model=local_embedding())


def _check_trace(trace: dict[str, Any]) -> None:
    assert trace["stage"] in STAGES and trace["reason"]
    assert trace["latency_ms"]["total"] > 0
    if trace["stage"] == "llm":
        assert trace["fallback_tried"] and trace["fallback_model"] == "ChatOllama(smollm2)"
    if trace["signals"] is not None:  # the SLM ran: signals and threshold are in the trace
        assert 0 < trace["signals"]["mean_prob"] <= 1 and trace["threshold"] == 0.6


# ---------------------------------------------------------------------------------------------- LLM calls
def test_complete_and_chat_carry_the_trace_and_fire_events(llm, events) -> None:
    debug = LlamaDebugHandler(print_trace_on_end=False)
    traced = SLMRouterLLM(router=llm.router, callback_manager=CallbackManager([debug]))

    math = traced.complete("What is 17 * 23 + 4?")
    assert math.text == "395"
    assert math.additional_kwargs["stage"] == "math" and math.raw["math_kind"] == "arithmetic"

    reply = traced.chat([ChatMessage(role="system", content="Answer in one short sentence."),
                         ChatMessage(role="user", content="What is the capital of France?")])
    trace = reply.raw
    assert reply.message.role == "assistant" and reply.message.content.strip()
    assert reply.additional_kwargs == trace and trace["answer"] == reply.message.content
    _check_trace(trace)
    assert trace["stage"] in ("slm", "llm") and trace["slm_answer"]  # the SLM drafted an answer either way
    # the gate decided on the generated tokens only: signal length = answer tokens, not prompt tokens
    assert trace["signals"]["length"] == trace["usage"]["slm_output_tokens"] > 0
    assert trace["usage"]["slm_input_tokens"] > trace["usage"]["slm_output_tokens"]
    assert trace["usage"]["prompt_tokens"] >= trace["usage"]["slm_input_tokens"]

    # LlamaIndex callback handlers: one LLM start/end pair per call
    pairs = debug.get_event_pairs(CBEventType.LLM)
    assert len(pairs) == 2 and all(len(pair) == 2 for pair in pairs)
    # instrumentation: start and end events, the end event holds our response
    assert [e.prompt for e in events.of(LLMCompletionStartEvent)] == ["What is 17 * 23 + 4?"]
    assert events.of(LLMCompletionEndEvent)[0].response.text == "395"
    assert events.of(LLMChatStartEvent)[0].messages[1].content == "What is the capital of France?"
    assert events.of(LLMChatEndEvent)[0].response.raw["stage"] == trace["stage"]


def test_streaming_math_and_escalated_answers(llm, events) -> None:
    parts = list(llm.stream_complete("Solve 3x - 7 = 20"))
    assert "".join(p.delta for p in parts) == parts[-1].text == "x = 9"
    assert parts[-1].additional_kwargs["stage"] == "math" and parts[0].additional_kwargs == {}

    # escalate= sends the call to the fallback, whose tokens stream through as they arrive
    chunks = list(llm.stream_chat([ChatMessage(role="user", content="Name a primary colour.")], escalate="test"))
    assert len(chunks) >= 2 and all(c.raw is None for c in chunks[:-1])
    assert "".join(c.delta or "" for c in chunks) == chunks[-1].message.content != ""
    assert chunks[-1].raw["stage"] == "llm" and chunks[-1].raw["reason"] == "sent to the fallback: test"
    _check_trace(chunks[-1].raw)
    progress = events.of(LLMChatInProgressEvent)
    assert len(progress) == len(chunks) and events.of(LLMChatEndEvent)[-1].response.raw["stage"] == "llm"


@same_loop
async def test_async_methods(llm, events) -> None:
    done = await llm.acomplete("What is 15% of 240?")
    assert done.text == "36" and done.additional_kwargs["stage"] == "math"

    reply = await llm.achat([ChatMessage(role="user", content="What colour is the sky on a clear day?")])
    assert reply.message.content.strip()
    _check_trace(reply.raw)

    stream = await llm.astream_chat([ChatMessage(role="user", content="What colour is the sky on a clear day?")])
    chunks = [c async for c in stream]
    # the same greedy SLM and the same gate: the streamed answer is the one achat returned
    assert chunks[-1].message.content == reply.message.content
    assert chunks[-1].raw["stage"] == reply.raw["stage"]

    pieces = [p async for p in await llm.astream_complete("derivative of x^2")]
    assert pieces[-1].text == "2*x" and pieces[-1].raw["math_kind"] == "derivative"
    assert len(events.of(LLMChatEndEvent)) == 2 and len(events.of(LLMCompletionEndEvent)) == 2


def test_structured_predict_goes_to_the_fallback(llm, events) -> None:
    from pydantic import BaseModel, ValidationError
    from llama_index.core.prompts import PromptTemplate

    class City(BaseModel):
        """A city and its country."""

        name: str
        country: str

    try:  # the test server's 135M fallback rarely writes valid JSON; a real large model does
        city = llm.structured_predict(City, PromptTemplate("Name the capital city of {country}."), country="France")
        assert isinstance(city, City)
    except (ValidationError, ValueError):
        pass
    (end,) = events.of(LLMChatEndEvent)
    assert end.response.raw["stage"] == "llm" and end.response.raw["reason"] == "sent to the fallback: structured output"
    assert end.response.raw["signals"] is None  # the SLM did not run
    assert "France" in events.of(LLMChatStartEvent)[0].messages[-1].content


# ---------------------------------------------------------------------------------------------- RAG prompts
def test_rag_prompts_fit_the_slm_window_or_escalate(slm, fallback, index, events) -> None:
    """A small SLM window: LlamaIndex packs retrieved context into several calls that each fit it whole."""
    window = 240
    small = SLMRouterLLM(slm=slm.model_copy(update={"max_input_tokens": window, "max_new_tokens": 16}),
                         fallback=fallback, gate="threshold")
    assert small.metadata.context_window == int((window - 32) * 0.85) + 16
    # refine prompts keep room for the previous answer: at most num_output tokens here (LlamaIndex pads 500)
    synth = CompactAndRefine(llm=small, response_padding_size=small.metadata.num_output)
    engine = index.as_query_engine(llm=small, similarity_top_k=4, response_synthesizer=synth)
    response = engine.query("Which of these places opened in 1923?")
    assert str(response).strip()
    calls = [e.response.raw for e in events.of(LLMChatEndEvent)]
    print(f"{len(calls)} LLM calls, SLM prompt tokens {[t['usage']['slm_input_tokens'] for t in calls]}")
    assert len(calls) >= 2  # four passages do not fit one 240-token prompt: the context was split, not cut
    for trace in calls:
        _check_trace(trace)
        assert trace["signals"] is not None  # the SLM answered or drafted: no prompt was too long for it
        assert trace["usage"]["slm_input_tokens"] <= window  # every QA / refine prompt reached the SLM whole
        assert trace["signals"]["length"] == trace["usage"]["slm_output_tokens"] <= 16
    prompts = [e.messages[-1].content for e in events.of(LLMChatStartEvent)]
    assert all("Which of these places opened in 1923?" in p for p in prompts)
    for doc in DOCS:  # each retrieved passage was sent exactly once (the middle of no prompt was cut)
        assert sum(doc.text.split(". ")[1] in p for p in prompts) == 1

    # a prompt longer than the SLM accepts is escalated whole to the fallback (LocalSLM(overflow="escalate"))
    long_prompt = " ".join(d.text for d in DOCS) * 3 + "\nWho is Tessa Lind?"
    out = small.complete(long_prompt)
    assert out.raw["stage"] == "llm" and f"at most {window}" in out.raw["reason"] and out.raw["signals"] is None
    assert out.raw["usage"]["llm_input_tokens"] > window


# ---------------------------------------------------------------------------------------------- engines
def test_vector_store_query_engine_answers_from_the_right_document(llm, index, events) -> None:
    retriever = index.as_retriever(similarity_top_k=1)
    for question, title in [("How high is Mount Kessel?", "kessel"), ("What does a ferry ticket cost?", "ferry"),
                            ("Which prize did the glassblower win?", "lind")]:
        assert retriever.retrieve(question)[0].node.metadata["title"] == title

    engine = index.as_query_engine(llm=llm, similarity_top_k=1)
    response = engine.query("When did the Fenwick Map Library open?")
    assert response.source_nodes[0].node.metadata["title"] == "fenwick"
    assert str(response).strip()
    (end,) = events.of(LLMChatEndEvent)
    _check_trace(end.response.raw)
    assert end.response.message.content == str(response)
    start = events.of(LLMChatStartEvent)[0]
    assert "40,000 historical maps" in start.messages[-1].content  # the retrieved context reached the router


def test_chat_engine_keeps_history(llm, index, events) -> None:
    engine = index.as_chat_engine(chat_mode="context", llm=llm, similarity_top_k=1)
    first = engine.chat("How much does a Brightwater ferry ticket cost?")
    assert first.source_nodes[0].node.metadata["title"] == "ferry" and first.response.strip()
    stream = engine.stream_chat("Do bicycles travel free on it?")
    text = "".join(stream.response_gen)
    assert text.strip() and stream.source_nodes
    history = engine.chat_history
    assert [m.role.value for m in history] == ["user", "assistant", "user", "assistant"]
    # the second call carried the first turn as chat history to the router
    second_call = events.of(LLMChatStartEvent)[-1].messages
    assert any(m.content == first.response for m in second_call if m.role.value == "assistant")
    assert all(e.response.raw["stage"] in STAGES for e in events.of(LLMChatEndEvent))


# ---------------------------------------------------------------------------------------------- agents
@same_loop
async def test_react_agent_with_the_router_as_its_llm(llm, index, events) -> None:
    tools = [
        router_tool(llm),
        QueryEngineTool.from_defaults(index.as_query_engine(llm=llm, similarity_top_k=1), name="local_docs",
                                      description="Facts about the Fenwick Map Library, Mount Kessel, the "
                                                  "Brightwater ferry and Tessa Lind."),
    ]
    agent = ReActAgent(tools=tools, llm=llm)
    handler = agent.run("How much does a Brightwater ferry ticket cost?", max_iterations=4)
    outputs = [ev async for ev in handler.stream_events() if isinstance(ev, AgentOutput)]
    result = await handler
    assert str(result.response.content or "").strip() and outputs
    first_prompt = events.of(LLMChatStartEvent)[0].messages
    assert first_prompt[0].role.value == "system"
    assert "ask_router" in first_prompt[0].content and "local_docs" in first_prompt[0].content  # ReAct header
    assert first_prompt[-1].content == "How much does a Brightwater ferry ticket cost?"
    assert all(o.raw["stage"] in STAGES for o in outputs)  # each agent step carries the route trace


class ScriptedReActLLM(CustomLLM):
    """The agent's planner in the tool tests: a large tool-using model is not available offline (SmolLM2-135M
    does not follow the ReAct format), so this one emits one fixed ReAct action, then answers with the
    observation. The tool it calls, the router or the RAG query engine, is the real thing under test."""

    action: str
    action_input: dict[str, Any]

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(is_chat_model=False, model_name="scripted-react")

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        last_user = prompt.rsplit("user: ", 1)[-1]  # the default messages_to_prompt: "role: content" lines
        if last_user.startswith("Observation:"):  # the tool answered: report its output
            observation = last_user.removeprefix("Observation:").split("\nassistant:", 1)[0].strip()
            text = f"Thought: I can answer without using any more tools.\nAnswer: {observation}"
            return CompletionResponse(text=text)
        action = json.dumps(self.action_input)
        return CompletionResponse(text=f"Thought: I need to use a tool.\nAction: {self.action}\nAction Input: {action}")

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        response = self.complete(prompt)
        yield CompletionResponse(text=response.text, delta=response.text)


async def _run_tool_agent(tool: Any, planner: ScriptedReActLLM, question: str) -> tuple[str, list[ToolCallResult]]:
    agent = ReActAgent(tools=[tool], llm=planner)
    handler = agent.run(question, max_iterations=3)
    calls = [ev async for ev in handler.stream_events() if isinstance(ev, ToolCallResult)]
    result = await handler
    return str(result.response.content), calls


@same_loop
async def test_router_and_rag_engine_as_agent_tools(llm, index) -> None:
    tool = router_tool(llm)
    assert tool.call(question="What is 17 * 23 + 4?").content == "395"
    direct = await tool.acall(question="What is the capital of Italy?")
    assert direct.content.strip()

    answer, calls = await _run_tool_agent(
        tool, ScriptedReActLLM(action="ask_router", action_input={"question": "integrate x*sin(x)"}),
        "What is the integral of x sin x?")
    assert [c.tool_name for c in calls] == ["ask_router"]
    assert calls[0].tool_output.content == "-x*cos(x) + sin(x) + C" == answer  # the router's exact answer

    engine_tool = QueryEngineTool.from_defaults(index.as_query_engine(llm=llm, similarity_top_k=1),
                                                name="local_docs", description="Facts about local places.")
    answer, calls = await _run_tool_agent(
        engine_tool,
        ScriptedReActLLM(action="local_docs", action_input={"input": "When did Mount Kessel last erupt?"}),
        "When did Mount Kessel last erupt?")
    (call,) = calls
    rag = call.tool_output.raw_output  # the query engine's Response, answered by the router
    assert rag.source_nodes[0].node.metadata["title"] == "kessel"
    assert str(rag).strip() and answer == str(rag).strip()


def test_async_calls_from_successive_event_loops(slm, ollama_base_url) -> None:
    """LlamaIndex's sync wrappers run a new event loop per call; the default fallback must survive that."""
    import asyncio

    from langchain_slm_router.fallback import default_fallback

    llm = SLMRouterLLM(slm=slm, fallback=default_fallback("smollm2", ollama_base_url, num_predict=8))
    question = [ChatMessage(role="user", content="Name a fruit.")]
    for _ in range(2):  # the second asyncio.run would find a pooled connection of the first, closed, loop
        reply = asyncio.run(llm.achat(question, escalate="test"))
        assert reply.raw["stage"] == "llm" and reply.message.content.strip()
        chunks = asyncio.run(_collect(llm.astream_complete("Name a fruit.", escalate="test")))
        assert chunks[-1].raw["stage"] == "llm"


async def _collect(stream_coro: Any) -> list[Any]:
    return [part async for part in await stream_coro]
