"""``slm-router serve`` returns every routing slot and SLM thread, and keeps answering while a request works.

Real server on a loopback port, the real router (math engine, SmolLM2 behind the gate, the Ollama-protocol test
server as the fallback), real clients that hang up early, are cancelled, or run past the server's time bound.
"""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest

from langchain_slm_router import MathEngine
from langchain_slm_router.router import SLMRouter
from langchain_slm_router.server import RouterServer, ServerSettings

pytestmark = pytest.mark.integration

HARD_MATH = "integrate x^30*sin(x)^9"
QA_Q = "What is the capital of France?"


def _in_flight(srv: RouterServer) -> float:
    text = httpx.get(f"{srv.base_url}/metrics").text
    line = next(line for line in text.splitlines() if line.startswith("slm_router_in_flight_requests "))
    return float(line.split()[1])


def _wait_idle(srv: RouterServer, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (srv.service.active or srv.service.waiting):
        time.sleep(0.05)


async def test_hard_math_does_not_stall_health_or_slm_requests(router: SLMRouter) -> None:
    # no fallback: the test is about the loop, and the fallback's own generation would only add minutes on a busy CPU
    hard = router.with_options(math_engine=MathEngine(timeout_s=3.0), fallback=None)
    with RouterServer(hard, ServerSettings(port=0)) as srv:
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=120) as client:
            math_req = asyncio.ensure_future(client.post("/v1/chat/completions", json={
                "model": "slm-router", "messages": [{"role": "user", "content": HARD_MATH}], "max_tokens": 4}))
            await asyncio.sleep(0.5)  # the hard query is computing now
            t0 = time.perf_counter()
            health = await client.get("/healthz")
            health_s = time.perf_counter() - t0
            slm = await client.post("/v1/chat/completions", json={
                "model": "slm-router", "messages": [{"role": "user", "content": QA_Q}], "max_tokens": 4})
            slm_done_first = not math_req.done()
            math = await math_req
    assert health.status_code == 200 and health_s < 0.5, f"/healthz took {health_s:.2f} s"
    assert slm.status_code == 200 and slm.json()["slm_router"]["stage"] in ("slm", "llm")
    assert slm_done_first, "the SLM request waited for the hard math query"
    assert math.status_code == 200 and math.json()["slm_router"]["stage"] == "slm"  # the math engine declined


def _hang_up_before_the_answer(srv: RouterServer, path: str, body: bytes) -> None:
    """Send a whole request, then close the connection before reading a byte of the answer."""
    with socket.create_connection(("127.0.0.1", srv.port)) as sock:
        sock.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


async def test_slots_and_slm_threads_come_back_after_100_abandoned_requests(router: SLMRouter) -> None:
    settings = ServerSettings(port=0, max_concurrency=4, max_queue=200, request_timeout_s=0.4)
    # an SLM answer takes longer than the time bound; no fallback (each request ends in the SLM or its time bound)
    long_router = router.with_options(max_tokens=1000, fallback=None)
    with RouterServer(long_router, settings) as srv:
        statuses: list[int] = []
        # 40 streams whose client hangs up before the first byte (both protocols)
        for i in range(40):
            if i % 2:
                _hang_up_before_the_answer(srv, "/v1/chat/completions", (
                    b'{"model":"slm-router","stream":true,"messages":[{"role":"user","content":"What is %d + 1?"}]}'
                    % i))
            else:
                _hang_up_before_the_answer(srv, "/api/chat", (
                    b'{"model":"slm-router","messages":[{"role":"user","content":"What is %d * 2?"}]}' % i))
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=60) as client:
            # 30 streams the client closes after the first line
            for i in range(30):
                async with client.stream("POST", "/api/chat", json={
                        "model": "slm-router", "messages": [{"role": "user", "content": f"What is {i} - 1?"}]}) as r:
                    statuses.append(r.status_code)
                    async for _ in r.aiter_lines():
                        break
            # 20 requests the client cancels while the SLM works, 10 that run past request_timeout_s (504)
            for i in range(20):
                task = asyncio.ensure_future(client.post("/v1/chat/completions", json={
                    "model": "slm-router", "messages": [{"role": "user", "content": f"Tell me a story {i}."}]}))
                await asyncio.sleep(0.1)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            timed_out = await asyncio.gather(*(client.post("/api/chat", json={
                "model": "slm-router", "stream": i % 2 == 0,
                "messages": [{"role": "user", "content": f"Write a long poem about the sea, part {i}."}]})
                for i in range(10)))
            statuses += [r.status_code for r in timed_out]
        _wait_idle(srv)
        assert srv.service.active == 0 and srv.service.waiting == 0
        assert srv.service._slots._value == settings.max_concurrency  # every slot is free
        assert _in_flight(srv) == 0
        # the SLM threads stopped: the model's lock is free after the step that was running when the callers left
        # (one prefill: up to ~30 s on two cores at load 17), not after the abandoned answers of up to 1000 tokens
        # each (many minutes there)
        lock = router.slm.loaded.lock
        assert lock.acquire(timeout=90.0), "an abandoned generation still holds the SLM"
        lock.release()
        assert statuses.count(504) + statuses.count(200) == len(statuses)
        assert statuses.count(504) >= 1
        # and the server still answers
        ok = httpx.post(f"{srv.base_url}/api/chat", timeout=60, json={
            "model": "slm-router", "stream": False, "messages": [{"role": "user", "content": "What is 3 * 3?"}]})
        assert ok.status_code == 200 and ok.json()["message"]["content"] == "9"
