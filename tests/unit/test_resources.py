"""Resources are returned: the server's socket when it cannot start; one lock per traffic-log file."""

from __future__ import annotations

import json
import os
import threading

import pytest

from langchain_slm_router import SLMRouter
from langchain_slm_router.errors import ModelLoadError
from langchain_slm_router.signals import ConfidenceSignals
from langchain_slm_router.slm import LocalSLM, SLMGeneration
from langchain_slm_router.traffic import TrafficLog


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files through /proc")
def test_router_server_closes_its_socket_when_it_cannot_start(tmp_path) -> None:
    from langchain_slm_router.server import RouterServer, ServerSettings

    router = SLMRouter(slm=LocalSLM(model=str(tmp_path / "missing.gguf")), fallback=None)
    before = _open_fds()
    for _ in range(3):
        server = RouterServer(router, ServerSettings(port=0))
        with pytest.raises(ModelLoadError, match="missing.gguf"):
            server.start(timeout=60)
        assert server._sock.fileno() == -1
    assert _open_fds() <= before


def test_traffic_logs_on_one_file_never_interleave_lines(tmp_path) -> None:
    path = tmp_path / "pairs.jsonl"
    gen = SLMGeneration(text="x" * 50_000, token_probs=[0.5], token_entropies=[0.1],
                        signals=ConfidenceSignals.from_tokens([0.5], [0.1]), input_tokens=1, output_tokens=1,
                        finished=True, latency_ms=1.0)
    logs = [TrafficLog(path), TrafficLog(str(path)), TrafficLog(tmp_path / "." / "pairs.jsonl")]
    # one lock per file: routers and their with_options copies on one file take turns (a lock per instance would
    # let two appends of over a pipe buffer each interleave on file systems without atomic appends)
    assert logs[0]._lock is logs[1]._lock is logs[2]._lock
    assert TrafficLog(tmp_path / "other.jsonl")._lock is not logs[0]._lock

    def write(log: TrafficLog, n: int) -> None:
        for i in range(40):
            log.append([{"role": "user", "content": f"q{n}-{i} " + "y" * 30_000}], gen, "z" * 40_000)

    threads = [threading.Thread(target=write, args=(logs[n % 3], n)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 240
    assert all(json.loads(line)["slm"]["text"] == gen.text for line in lines)
