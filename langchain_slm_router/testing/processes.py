"""Start a server in a child process and wait until it is ready: the one loop the benchmarks and tests share."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any


class ServerStartError(RuntimeError):
    """The child process exited, or its ready URL did not answer 200 in time."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (for a server a test is about to start)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server_process(
    cmd: Sequence[str], ready_url: str, *, timeout_s: float = 120.0, env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None, stdout: IO[Any] | int | None = subprocess.DEVNULL, poll_s: float = 0.2,
) -> subprocess.Popen:
    """Run ``cmd`` and return the process once ``ready_url`` answers 200 (e.g. ``/readyz``).

    The process's stderr is piped (into stdout when ``stdout`` is a file) so a failed start reports its last
    lines. Raises :class:`ServerStartError` when it exits first or ``timeout_s`` passes (the process is killed).
    """
    import httpx

    merged = stdout not in (None, subprocess.DEVNULL)
    proc = subprocess.Popen(list(cmd), env=dict(env) if env is not None else None, cwd=cwd, stdout=stdout,
                            stderr=subprocess.STDOUT if merged else subprocess.PIPE)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = "" if merged or proc.stderr is None else proc.stderr.read().decode(errors="replace")[-800:]
            raise ServerStartError(f"{' '.join(map(str, cmd[:4]))} exited with {proc.returncode}: {tail}")
        try:
            if httpx.get(ready_url, timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(poll_s)
    proc.kill()
    proc.wait()
    raise ServerStartError(f"{ready_url} did not answer within {timeout_s:.0f} s")


__all__ = ["ServerStartError", "free_port", "start_server_process"]
