"""Observability through a real `slm-router serve` process and real HTTP clients: an incoming W3C `traceparent`
becomes the parent of the router's query span (read back from the console exporter's JSON lines), and the
running totals are served as /v1/router/stats, as /metrics counters, and printed by `slm-router stats`."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from langchain_slm_router.testing.processes import free_port, start_server_process

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
KEY = "obs-test-key-0123"



def _spans(log: Path) -> list[dict]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"trace_id"' in line:
            out.append(json.loads(line))
    return out


def test_traceparent_stats_metrics_and_the_stats_command(tmp_path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    env = {**os.environ, "SLM_ROUTER_API_KEY": KEY, "PYTHONPATH": str(REPO)}
    headers = {"Authorization": f"Bearer {KEY}"}
    with open(log_path, "w") as log:
        proc = start_server_process(
            [sys.executable, "-m", "langchain_slm_router.cli", "serve", "--port", str(port), "--no-fallback",
             "--otel-exporter", "console"], f"{base}/readyz", timeout_s=600, env=env, cwd=REPO, stdout=log)
    try:
        trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
        response = httpx.post(f"{base}/v1/chat/completions", timeout=60, json={
            "model": "slm-router", "messages": [{"role": "user", "content": "What is 12*7?"}]},
            headers={**headers, "traceparent": f"00-{trace_id}-{parent_id}-01"})
        assert response.status_code == 200 and "84" in response.json()["choices"][0]["message"]["content"]
        untraced = httpx.post(f"{base}/api/chat", headers=headers, timeout=60, json={
            "model": "slm-router", "stream": False, "messages": [{"role": "user", "content": "What is 2+3?"}]})
        assert untraced.status_code == 200

        deadline = time.monotonic() + 10
        while len([s for s in _spans(log_path) if s["name"] == "slm_router.route"]) < 2:
            assert time.monotonic() < deadline, log_path.read_text()[-2000:]
            time.sleep(0.1)
        spans = _spans(log_path)
        routes = [s for s in spans if s["name"] == "slm_router.route"]
        joined = [s for s in routes if s["context"]["trace_id"] == f"0x{trace_id}"]
        assert len(joined) == 1 and joined[0]["parent_id"] == f"0x{parent_id}"
        assert joined[0]["attributes"]["slm_router.stage"] == "math"
        math = [s for s in spans if s["name"] == "slm_router.math" and s["context"]["trace_id"] == f"0x{trace_id}"]
        assert math and math[0]["parent_id"] == joined[0]["context"]["span_id"]
        other = [s for s in routes if s is not joined[0]]
        assert other[0]["parent_id"] is None  # no traceparent: a trace of its own

        stats = httpx.get(f"{base}/v1/router/stats", headers=headers, timeout=10).json()
        assert stats["by_stage"] == {"math": 2} and stats["llm_calls_avoided"] == 2
        assert "estimate" in stats["savings"]["method"].lower()
        assert httpx.get(f"{base}/v1/router/stats", timeout=10).status_code == 401
        metrics = httpx.get(f"{base}/metrics", headers=headers, timeout=10).text
        assert 'slm_router_stage_time_seconds_total{stage="math"}' in metrics
        assert "slm_router_llm_calls_total 0.0" in metrics

        printed = subprocess.run([sys.executable, "-m", "langchain_slm_router.cli", "stats", "--url", base],
                                 env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert printed.returncode == 0, printed.stderr
        assert "queries: 2 (2 answered, 0 failed)" in printed.stdout and "math" in printed.stdout
        as_json = subprocess.run([sys.executable, "-m", "langchain_slm_router.cli", "stats", "--url", base, "--json",
                                  "--api-key", "wrong"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert as_json.returncode == 1 and "401" in as_json.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=60)
