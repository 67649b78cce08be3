"""The Ollama-protocol test server speaks the API that the real ChatOllama client uses, with a real model."""

from __future__ import annotations

import json

import httpx
import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage, SystemMessage

pytestmark = pytest.mark.integration

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_discovery_endpoints(ollama_base_url) -> None:
    with httpx.Client(base_url=ollama_base_url, timeout=30) as http:
        assert http.get("/").text == "Ollama is running"
        assert http.get("/api/version").json()["version"]
        names = [m["name"] for m in http.get("/api/tags").json()["models"]]
        assert names == ["smollm2:latest"]
        shown = http.post("/api/show", json={"model": "smollm2"}).json()
        assert shown["details"]["family"] == "llama" and shown["model_info"]["llama.context_length"] > 0
        missing = http.post("/api/show", json={"model": "mistral"})
        assert missing.status_code == 404 and "not found" in missing.json()["error"]
        unknown = http.post("/api/chat", json={"model": "mistral", "messages": QUESTION})
        assert unknown.status_code == 404 and "try pulling it first" in unknown.json()["error"]


def test_chat_streams_ndjson_that_adds_up_to_the_plain_answer(ollama_base_url) -> None:
    body = {"model": "smollm2", "messages": QUESTION, "options": {"num_predict": 24, "temperature": 0}}
    with httpx.Client(base_url=ollama_base_url, timeout=60) as http:
        plain = http.post("/api/chat", json={**body, "stream": False}).json()
        with http.stream("POST", "/api/chat", json=body) as resp:
            assert resp.headers["content-type"] == "application/x-ndjson"
            records = [json.loads(line) for line in resp.iter_lines() if line]
    assert plain["done"] is True and plain["message"]["role"] == "assistant"
    assert "Paris" in plain["message"]["content"]
    assert 0 < plain["eval_count"] <= 24 and plain["prompt_eval_count"] > 5
    assert plain["done_reason"] in ("stop", "length")
    assert len(records) > 2 and all(not r["done"] for r in records[:-1]) and records[-1]["done"]
    streamed = "".join(r["message"]["content"] for r in records)
    assert streamed.strip() == plain["message"]["content"].strip()  # greedy: same model, same answer
    assert records[-1]["eval_count"] > 0


def test_real_chat_ollama_client_invoke_and_stream(fallback_llm) -> None:
    messages = [SystemMessage("Answer in one short sentence."), HumanMessage("What is the capital of France?")]
    reply = fallback_llm.invoke(messages)
    assert "Paris" in reply.content
    assert reply.usage_metadata["output_tokens"] > 0 and reply.usage_metadata["input_tokens"] > 10
    assert reply.response_metadata["model"] == "smollm2"
    chunks = list(fallback_llm.stream(messages))
    assert len(chunks) > 2 and all(isinstance(c, AIMessageChunk) for c in chunks)
    assert "".join(c.content for c in chunks).strip() == reply.content.strip()


async def test_real_chat_ollama_client_async(fallback_llm) -> None:
    reply = await fallback_llm.ainvoke("Name a primary colour.")
    chunks = [c async for c in fallback_llm.astream("Name a primary colour.")]
    assert reply.content.strip() and "".join(c.content for c in chunks).strip() == reply.content.strip()
