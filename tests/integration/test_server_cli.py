"""``slm-router serve`` as a process: it starts, answers, requires the API key from the environment without ever
printing it, and on SIGTERM finishes the request in flight, refuses new connections and exits (with SIGTERM's status, as uvicorn does)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from langchain_slm_router.testing.processes import free_port, start_server_process

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
KEY = "cli-test-key-0123"



def test_serve_command_sigterm_finishes_in_flight_request(tmp_path) -> None:
    port = free_port()
    env = {**os.environ, "SLM_ROUTER_API_KEY": KEY, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    log = (tmp_path / "serve.log").open("w+")
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {KEY}"}
    proc = start_server_process([sys.executable, "-m", "langchain_slm_router.cli", "serve", "--port", str(port),
                                 "--no-fallback"], f"{base}/readyz", timeout_s=180, env=env, cwd=REPO, stdout=log)
    try:
        assert httpx.get(f"{base}/v1/models").status_code == 401
        result: dict = {}

        def slow_request() -> None:
            result["response"] = httpx.post(f"{base}/v1/chat/completions", headers=headers, timeout=120, json={
                "model": "slm-router", "max_tokens": 48,
                "messages": [{"role": "user", "content": "Tell me about the history of Rome."}]})

        thread = threading.Thread(target=slow_request)
        thread.start()
        while "slm_router_in_flight_requests 1.0" not in httpx.get(f"{base}/metrics", headers=headers).text:
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        thread.join(timeout=120)
        response = result["response"]
        assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"]
        # uvicorn re-raises the signal once the graceful shutdown is done: the status says "ended by SIGTERM"
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{base}/healthz", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log.seek(0)
    output = log.read()
    assert "slm-router serve:" in output and "API key required" in output
    assert KEY not in output
