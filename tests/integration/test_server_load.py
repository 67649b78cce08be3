"""A bounded load test of ``slm-router serve`` on loopback, and a shutdown in the middle of the load.

Small on purpose (a few dozen requests): the large run, with timings, is ``benchmarks/bench_server.py``. Checks:
every request is answered or refused with a documented status, none is lost or duplicated, and every answer
equals the in-process ``SLMRouter.route`` answer to the same question (the SLM calls of concurrent requests are
coalesced into batches, which must not change answers).
"""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from langchain_slm_router.router import SLMRouter
from langchain_slm_router.server import RouterServer, ServerSettings

pytestmark = pytest.mark.integration

QUESTIONS = [
    "What is the capital of France?",
    "What is 15 + 27?",
    "Who wrote Romeo and Juliet?",
    "What is the square root of 144?",
    "What color is the sky on a clear day?",
    "What is 9 * 8?",
    "How many days are in a week?",
    "What is the largest planet in the solar system?",
]
DOCUMENTED = {200, 429, 503, 504}


@pytest.fixture(scope="module")
def router(slm, fallback_llm) -> SLMRouter:
    # load: every request must run the pipeline (no answer cache); the seed's threshold gate, so that the SLM stage
    # keeps answers and the coalescing batcher is exercised (the shipped learned gate escalates most of them)
    return SLMRouter(slm=slm.model_copy(update={"max_new_tokens": 16}), fallback=fallback_llm,
                     answer_cache=None, gate="threshold")


@pytest.fixture(scope="module")
def sequential(router: SLMRouter) -> dict[str, tuple[str, str]]:
    """The one-by-one answers (answer, stage) of every question."""
    return {q: (r.answer, r.stage) for q in QUESTIONS for r in [router.route(q)]}


async def _ask(client: httpx.AsyncClient, i: int, question: str) -> tuple[int, int, dict | None]:
    if i % 2:
        response = await client.post("/v1/chat/completions", json={
            "model": "slm-router", "user": str(i), "messages": [{"role": "user", "content": question}]})
        body = response.json()
        return i, response.status_code, {"answer": body["choices"][0]["message"]["content"],
                                         "stage": body["slm_router"]["stage"]} if response.status_code == 200 else None
    response = await client.post("/api/chat", json={
        "model": "slm-router", "stream": False, "messages": [{"role": "user", "content": question}]})
    body = response.json()
    return i, response.status_code, {"answer": body["message"]["content"],
                                     "stage": body["slm_router"]["stage"]} if response.status_code == 200 else None


async def test_concurrent_load_answers_equal_sequential(router: SLMRouter, sequential) -> None:
    n, concurrency = 32, 16
    settings = ServerSettings(port=0, max_concurrency=concurrency, max_queue=64)
    with RouterServer(router, settings) as srv:
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=300, limits=limits) as client:
            started = time.perf_counter()
            results = await asyncio.gather(*[_ask(client, i, QUESTIONS[i % len(QUESTIONS)]) for i in range(n)])
            wall = time.perf_counter() - started
        batcher = srv.service.batcher
        assert batcher is not None
        slm_requests = sum(1 for i in range(n) if sequential[QUESTIONS[i % len(QUESTIONS)]][1] != "math")
        print(f"{n} requests, {concurrency} concurrent: {wall:.1f} s, {n / wall:.1f} req/s; "
              f"{batcher.conversations} SLM conversations in {batcher.batches} batches")
    assert sorted(i for i, _, _ in results) == list(range(n))  # none lost, none duplicated
    assert [status for _, status, _ in results] == [200] * n
    for i, _, got in results:
        question = QUESTIONS[i % len(QUESTIONS)]
        assert (got["answer"], got["stage"]) == sequential[question], question
    assert batcher.conversations == slm_requests
    assert batcher.batches < slm_requests  # concurrent SLM calls were coalesced


async def test_shutdown_during_load_loses_no_accepted_request(router: SLMRouter, sequential) -> None:
    n = 24
    srv = RouterServer(router, ServerSettings(port=0, max_concurrency=8, max_queue=64)).start()
    stopper: threading.Thread | None = None

    async def stop_when_busy() -> None:
        nonlocal stopper
        while srv.service.accepted < 6:
            await asyncio.sleep(0.01)
        stopper = threading.Thread(target=srv.stop)
        stopper.start()

    async def ask(client: httpx.AsyncClient, i: int) -> tuple[int, int | str, dict | None]:
        await asyncio.sleep(0.05 * i)  # arrivals spread over the shutdown
        try:
            return await _ask(client, i, QUESTIONS[i % len(QUESTIONS)])
        except httpx.TransportError as exc:  # connection refused or closed before the request was read
            return i, type(exc).__name__, None

    async with httpx.AsyncClient(base_url=srv.base_url, timeout=300,
                                 limits=httpx.Limits(max_connections=n)) as client:
        results, _ = await asyncio.gather(asyncio.gather(*[ask(client, i) for i in range(n)]), stop_when_busy())
    assert stopper is not None
    stopper.join(timeout=120)
    answered = [(i, got) for i, status, got in results if status == 200]
    refused = [status for _, status, _ in results if status != 200]
    print(f"accepted {srv.service.accepted}, answered {len(answered)}, refused {refused}")
    assert len(answered) == srv.service.accepted  # every accepted request was answered
    assert 6 <= len(answered) < n and refused
    assert all(status in DOCUMENTED or isinstance(status, str) for status in refused)
    for i, got in answered:
        assert (got["answer"], got["stage"]) == sequential[QUESTIONS[i % len(QUESTIONS)]]
