"""Every ```python block of docs/langchain.md, run in order in one namespace, then checked.

The fallback in the examples is ``ChatOllama(model=os.environ.get("FALLBACK_MODEL", "mistral"))`` at
``OLLAMA_HOST``; here both point at the Ollama-protocol test server backed by the real SmolLM2.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

pytestmark = [pytest.mark.integration, pytest.mark.requires("minilm")]  # the RAG example's embeddings

DOC = Path(__file__).resolve().parents[2] / "docs" / "langchain.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks() -> list[str]:
    return BLOCK.findall(DOC.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def docs_run(ollama_base_url: str, slm) -> dict[str, Any]:
    env = {"OLLAMA_HOST": ollama_base_url, "FALLBACK_MODEL": "smollm2"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    ns: dict[str, Any] = {"__name__": "docs_langchain"}
    outputs: list[str] = []
    errors: list[tuple[int, BaseException]] = []
    try:
        for i, code in enumerate(_blocks()):
            buf = io.StringIO()
            try:
                with contextlib.redirect_stdout(buf):
                    exec(compile(code, f"{DOC.name}[block {i}]", "exec"), ns)  # noqa: S102 - our own docs
            except Exception as exc:  # noqa: BLE001 - reported by the test below
                errors.append((i, exc))
            outputs.append(buf.getvalue())
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return {"ns": ns, "out": outputs, "errors": errors}


def test_every_example_runs(docs_run) -> None:
    assert len(_blocks()) >= 10
    assert docs_run["errors"] == [], [(i, repr(e)) for i, e in docs_run["errors"]]
    assert all(out.strip() for out in docs_run["out"])  # every example prints something


def test_first_call_and_trace(docs_run) -> None:
    ns = docs_run["ns"]
    assert docs_run["out"][0].split() == ["395", "math"]
    msg = ns["msg"]
    route = msg.response_metadata["route"]
    assert route["stage"] in ("slm", "llm") and route["signals"]["mean_prob"] > 0
    assert msg.usage_metadata["input_tokens"] >= route["usage"]["slm_input_tokens"] > 0


def test_lcel_chain(docs_run) -> None:
    ns = docs_run["ns"]
    assert isinstance(ns["chain"].invoke({"question": "What is 7 * 6?"}), str)
    assert ns["answers"] == ["1024", "x = 9"]


def test_streaming_examples(docs_run) -> None:
    ns = docs_run["ns"]
    assert ns["pieces"][0] == "36" and "".join(ns["pieces"]) == "36"
    last = ns["last"]
    assert last.chunk_position == "last" and last.content == last.response_metadata["route"]["answer"]


def test_rag_chain_retrieves_and_answers_from_context(docs_run) -> None:
    ns = docs_run["ns"]
    found = ns["retriever"].invoke("What time does the Zorblax Cafe open?")
    assert "7:30" in found[0].page_content
    assert "7:30" in ns["rag_answer"]


def test_message_history(docs_run) -> None:
    history = docs_run["ns"]["histories"]["alice"].messages
    assert [m.type for m in history] == ["human", "ai", "human", "ai"]
    assert history[0].content == "Hi, my name is Alice." and history[3].content == docs_run["ns"]["reply"].content


def test_configurable_example(docs_run) -> None:
    strict = docs_run["ns"]["strict"]
    route = strict.response_metadata["route"]
    assert route["threshold"] == 0.99
    assert (strict.response_metadata["stage"] == "slm") == (route["signals"]["mean_prob"] >= 0.99)


def test_structured_output_example(docs_run) -> None:
    out = docs_run["ns"]["out"]
    assert set(out) == {"raw", "parsed", "parsing_error"} and isinstance(out["raw"], AIMessage)


def test_tools_examples(docs_run) -> None:
    ns = docs_run["ns"]
    tool_msg = ns["tool_msg"]
    assert isinstance(tool_msg, ToolMessage) and tool_msg.content == "144" and tool_msg.artifact["stage"] == "math"
    assert any("-x**2*sin(x) + 2*x*cos(x)" in out for out in docs_run["out"])
    generic = ns["generic_tool"]
    assert generic.args == {"question": {"title": "Question", "type": "string"}}
    assert generic.invoke({"question": "What is 3^4?"}) == "81"


def test_agent_with_the_router_as_model(docs_run) -> None:
    transcript = docs_run["ns"]["transcript"]
    assert isinstance(transcript[0], HumanMessage) and isinstance(transcript[-1], AIMessage)
    assert not transcript[-1].tool_calls  # the loop ended with an answer
    for m in transcript:
        if isinstance(m, AIMessage):  # every model step went to the fallback, because tools were bound
            assert m.response_metadata["stage"] == "llm"
            assert m.response_metadata["route"]["signals"] is None
        if isinstance(m, AIMessage) and m.tool_calls:  # with a tool-calling fallback: results follow
            assert isinstance(transcript[transcript.index(m) + 1], ToolMessage)


def test_agent_calling_the_router_as_tool(docs_run) -> None:
    steps = docs_run["ns"]["steps"]
    assert isinstance(steps[0], HumanMessage) and isinstance(steps[-1], AIMessage)
    for m in steps:
        if isinstance(m, ToolMessage):
            assert m.artifact["stage"] in ("math", "slm", "llm")
