"""``slm-router serve`` with real clients: the openai client, ChatOpenAI, the ollama client and ChatOllama talk
to the server (started here on a free 127.0.0.1 port) and get the router's own answers, streamed and not.

The router is the real one: the math engine, the real SmolLM2 with the threshold gate, and the fallback
ChatOllama talking to the project's Ollama-protocol test server. Each answer is compared with what
``SLMRouter.route`` gives for the same question in-process.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from langchain_slm_router.router import SLMRouter
from langchain_slm_router.server import RouterServer, ServerSettings

pytestmark = pytest.mark.integration

MATH_Q = "What is 12 * 7?"
QA_Q = "What is the chemical symbol for gold?"
ESCALATE_MODEL = "slm-router:threshold-0.999"
"""A model name selecting a configuration: the gate keeps no SLM answer, so the fallback answers."""


@pytest.fixture(scope="module")
def server(router_server):
    return router_server


@pytest.fixture(scope="module")
def expected(router: SLMRouter) -> dict[str, object]:
    """The in-process answers the server must reproduce."""
    escalating = router.with_options(threshold=0.999)
    return {"math": router.route(MATH_Q), "qa": router.route(QA_Q), "llm": escalating.route(QA_Q)}


# --------------------------------------------------------------------------- the openai client
def test_openai_client_answers_with_the_trace(server: RouterServer, expected) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=server.openai_base_url, api_key="unused", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="slm-router", messages=[{"role": "user", "content": QA_Q}])
    completion = raw.parse()
    assert completion.choices[0].message.content == expected["qa"].answer
    trace = completion.model_extra["slm_router"]
    assert trace["stage"] == expected["qa"].stage == "slm"
    assert trace["signals"]["mean_prob"] == pytest.approx(expected["qa"].signals.mean_prob, abs=1e-4)
    assert raw.headers["x-slm-router-stage"] == "slm"
    assert raw.headers["x-slm-router-fallback-tried"] == "false"
    assert float(raw.headers["x-slm-router-mean-prob"]) == pytest.approx(trace["signals"]["mean_prob"], abs=1e-4)
    assert completion.usage.total_tokens == expected["qa"].total_tokens > 0

    math = client.chat.completions.create(model="slm-router", messages=[{"role": "user", "content": MATH_Q}])
    assert math.choices[0].message.content == "84" == expected["math"].answer
    assert math.model_extra["slm_router"]["stage"] == "math"


def test_openai_client_streams_with_usage(server: RouterServer, expected) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=server.openai_base_url, api_key="unused", max_retries=0)
    chunks = list(client.chat.completions.create(
        model="slm-router", messages=[{"role": "user", "content": QA_Q}], stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected["qa"].answer
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == expected["qa"].total_tokens
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(final) == 1 and final[0].model_extra["slm_router"]["stage"] == "slm"


def test_model_name_selects_a_configuration_and_escalation_streams(server: RouterServer, expected) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=server.openai_base_url, api_key="unused", max_retries=0)
    done = client.chat.completions.create(model=ESCALATE_MODEL, messages=[{"role": "user", "content": QA_Q}])
    assert done.choices[0].message.content == expected["llm"].answer
    trace = done.model_extra["slm_router"]
    assert trace["stage"] == "llm" and trace["fallback_tried"] and trace["threshold"] == 0.999
    assert trace["slm_answer"] == expected["llm"].slm_answer  # the escalated draft is in the trace
    assert trace["early_exit"] == expected["llm"].early_exit
    with client.chat.completions.with_streaming_response.create(
            model=ESCALATE_MODEL, messages=[{"role": "user", "content": QA_Q}], stream=True) as response:
        assert response.headers["x-slm-router-stage"] == "llm"
        chunks = list(response.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected["llm"].answer


def test_stop_and_max_tokens(server: RouterServer, router: SLMRouter) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=server.openai_base_url, api_key="unused", max_retries=0)
    short = client.chat.completions.create(model="slm-router", max_tokens=3,
                                           messages=[{"role": "user", "content": QA_Q}])
    assert short.choices[0].message.content == router.with_options(max_tokens=3).route(QA_Q).answer
    assert short.model_extra["slm_router"]["usage"]["slm_output_tokens"] <= 3
    full = router.route(QA_Q).answer
    cut = client.chat.completions.create(model="slm-router", stop=["gold"],
                                         messages=[{"role": "user", "content": QA_Q}])
    assert cut.choices[0].message.content == full[: full.index("gold")]
    streamed = client.chat.completions.create(model="slm-router", stop=["gold"], stream=True,
                                              messages=[{"role": "user", "content": QA_Q}])
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == full[: full.index("gold")]


def test_openai_errors(server: RouterServer) -> None:
    import openai

    client = openai.OpenAI(base_url=server.openai_base_url, api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "hi"}])
    assert err.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError, match="empty"):
        client.chat.completions.create(model="slm-router", messages=[{"role": "user", "content": "   "}])
    with pytest.raises(openai.BadRequestError, match="n=1"):
        client.chat.completions.create(model="slm-router", n=2, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.APIStatusError, match="max_query_chars") as err:
        client.chat.completions.create(model="slm-router", messages=[{"role": "user", "content": "x " * 20_000}])
    assert err.value.status_code == 413
    big = httpx.post(f"{server.openai_base_url}/chat/completions", timeout=30,
                     json={"model": "slm-router", "messages": [{"role": "user", "content": "y" * 1_100_000}]})
    assert big.status_code == 413 and "max_body_bytes" in big.json()["error"]["message"]
    assert [m.id for m in client.models.list()] == ["slm-router"]


# --------------------------------------------------------------------------- LangChain clients
def test_chat_openai_invoke_and_stream(server: RouterServer, expected) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="slm-router", base_url=server.openai_base_url, api_key="unused", max_retries=0)
    assert llm.invoke(QA_Q).content == expected["qa"].answer
    assert "".join(c.content for c in llm.stream(MATH_Q)) == "84"


def test_chat_ollama_invoke_and_stream(server: RouterServer, expected) -> None:
    from langchain_ollama import ChatOllama

    llm = ChatOllama(model="slm-router", base_url=server.base_url)
    message = llm.invoke(QA_Q)
    assert message.content == expected["qa"].answer
    assert message.usage_metadata["total_tokens"] == expected["qa"].total_tokens
    assert "".join(c.content for c in llm.stream(QA_Q)) == expected["qa"].answer
    escalated = ChatOllama(model=ESCALATE_MODEL, base_url=server.base_url)
    assert "".join(c.content for c in escalated.stream(QA_Q)) == expected["llm"].answer


async def test_chat_ollama_async(server: RouterServer, expected) -> None:
    from langchain_ollama import ChatOllama

    llm = ChatOllama(model="slm-router", base_url=server.base_url)
    answers = await asyncio.gather(llm.ainvoke(QA_Q), llm.ainvoke(MATH_Q))
    assert [a.content for a in answers] == [expected["qa"].answer, "84"]


# --------------------------------------------------------------------------- the ollama client
def test_ollama_client_chat_generate_tags_show(server: RouterServer, expected) -> None:
    import ollama

    client = ollama.Client(host=server.base_url)
    response = client.chat(model="slm-router", messages=[{"role": "user", "content": QA_Q}])
    assert response.message.content == expected["qa"].answer
    assert response.done_reason == "stop" and response.eval_count == expected["qa"].output_tokens
    parts = list(client.chat(model="slm-router", messages=[{"role": "user", "content": MATH_Q}], stream=True))
    assert "".join(p.message.content for p in parts) == "84"
    assert parts[-1].done
    raw = httpx.post(f"{server.base_url}/api/chat", timeout=60, json={  # the trace field, as JSON
        "model": "slm-router", "messages": [{"role": "user", "content": MATH_Q}], "stream": False})
    assert raw.json()["slm_router"]["stage"] == "math" and raw.headers["x-slm-router-stage"] == "math"
    generated = client.generate(model="slm-router", prompt=QA_Q)
    assert generated.response == expected["qa"].answer
    streamed = "".join(p.response for p in client.generate(model="slm-router", prompt=QA_Q, stream=True))
    assert streamed == expected["qa"].answer
    assert [m.model for m in client.list().models] == ["slm-router:latest"]
    assert client.show("slm-router").modelinfo["slm_router.threshold"] == 0.6
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="mistral", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 404
    assert httpx.get(f"{server.base_url}/api/version").json()["version"]


# --------------------------------------------------------------------------- a RAG chain
@pytest.mark.requires("minilm")  # the example's embeddings
def test_rag_chain_pointed_at_the_server(server: RouterServer, router: SLMRouter) -> None:
    """A LangChain RAG chain (retriever | prompt | chat model | parser) with the server as its chat model."""
    from langchain_core.documents import Document
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnablePassthrough
    from langchain_core.vectorstores import InMemoryVectorStore
    from langchain_openai import ChatOpenAI

    from langchain_slm_router.embeddings import MiniLMEmbeddings

    docs = [Document(page_content="The Zorblax Cafe in Lyon opens every day at 7:30 in the morning."),
            Document(page_content="Lake Tiberon is the deepest lake in the fictional country of Varnia.")]
    retriever = InMemoryVectorStore.from_documents(docs, MiniLMEmbeddings()).as_retriever(search_kwargs={"k": 1})
    prompt = ChatPromptTemplate.from_messages([("system", "Answer using only this context:\n{context}"),
                                               ("human", "{question}")])
    llm = ChatOpenAI(model="slm-router", base_url=server.openai_base_url, api_key="unused", max_retries=0)
    chain = ({"context": retriever | (lambda found: "\n".join(d.page_content for d in found)),
              "question": RunnablePassthrough()} | prompt | llm | StrOutputParser())
    question = "What time does the Zorblax Cafe open?"
    answer = chain.invoke(question)
    in_process = ({"context": retriever | (lambda found: "\n".join(d.page_content for d in found)),
                   "question": RunnablePassthrough()} | prompt
                  | (lambda p: router.route(p.to_messages()).answer)).invoke(question)
    assert answer == in_process
    assert "7:30" in answer


# --------------------------------------------------------------------------- health, metrics, auth, limits
def test_health_ready_metrics(server: RouterServer) -> None:
    assert httpx.get(f"{server.base_url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server.base_url}/readyz").json()["status"] == "ready"
    for model, question in ((ESCALATE_MODEL, QA_Q), ("slm-router", MATH_Q), ("no-such-model", MATH_Q)):
        httpx.post(f"{server.openai_base_url}/chat/completions", timeout=120,
                   json={"model": model, "messages": [{"role": "user", "content": question}]})
    text = httpx.get(f"{server.base_url}/metrics").text
    for needle in ('slm_router_answers_total{stage="math"}', 'slm_router_answers_total{stage="llm"}',
                   "slm_router_escalations_total{reason=", "slm_router_llm_calls_avoided_total",
                   'slm_router_stage_latency_seconds_bucket{le="0.001",stage="math"}',
                   "slm_router_slm_tokens_per_second", "slm_router_in_flight_requests",
                   'slm_router_request_latency_seconds_count{protocol="openai"}',
                   'slm_router_errors_total{type="ModelNotFoundError"}',
                   'slm_router_requests_total{endpoint="/v1/chat/completions",protocol="openai",status="200"}'):
        assert needle in text, needle


def test_api_key(router: SLMRouter) -> None:
    import openai

    secret = "s3cret-key-for-test"
    with RouterServer(router, ServerSettings(port=0, api_key=secret)) as srv:
        denied = httpx.post(f"{srv.openai_base_url}/chat/completions", timeout=30,
                            json={"model": "slm-router", "messages": [{"role": "user", "content": MATH_Q}]})
        assert denied.status_code == 401 and secret not in denied.text
        assert denied.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(f"{srv.base_url}/api/tags", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(f"{srv.base_url}/healthz").status_code == 200  # probes need no key
        ok = openai.OpenAI(base_url=srv.openai_base_url, api_key=secret).chat.completions.create(
            model="slm-router", messages=[{"role": "user", "content": MATH_Q}])
        assert ok.choices[0].message.content == "84"
        assert secret not in repr(srv.settings)


async def test_full_queue_is_429_and_timeout_is_504(router: SLMRouter) -> None:
    settings = ServerSettings(port=0, max_concurrency=1, max_queue=0, request_timeout_s=60)
    with RouterServer(router, settings) as srv:
        async with httpx.AsyncClient(base_url=srv.openai_base_url, timeout=120) as client:
            body = {"model": "slm-router", "messages": [{"role": "user", "content": QA_Q}]}
            statuses = [r.status_code for r in await asyncio.gather(*[client.post("/chat/completions", json=body)
                                                                      for _ in range(4)])]
            assert statuses.count(200) >= 1 and statuses.count(429) >= 1
            assert set(statuses) <= {200, 429}
            busy = await client.post("/chat/completions", json=body)
            assert busy.status_code == 200  # the slot is free again
    with RouterServer(router, ServerSettings(port=0, request_timeout_s=0.05)) as srv:
        slow = httpx.post(f"{srv.base_url}/api/chat", timeout=60,
                          json={"model": ESCALATE_MODEL, "messages": [{"role": "user", "content": QA_Q}],
                                "stream": False})
        assert slow.status_code == 504 and "request_timeout_s" in slow.json()["error"]
