"""Running the app with uvicorn: :func:`serve` (the ``slm-router serve`` command, blocking) and
:class:`RouterServer` (in a background thread, on a free port: tests, benchmarks, notebooks).

Shutdown is graceful in both: the listening socket closes and new requests get 503, requests already accepted
(routing or queued) finish, within ``ServerSettings.graceful_timeout_s``.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import uvicorn

from langchain_slm_router.router import SLMRouter
from langchain_slm_router.server.app import create_app
from langchain_slm_router.server.service import RouterService
from langchain_slm_router.server.settings import ServerSettings


class _Server(uvicorn.Server):
    """uvicorn's server; a shutdown signal first marks the service draining (new requests: 503)."""

    def __init__(self, config: uvicorn.Config, service: RouterService) -> None:
        super().__init__(config)
        self.service = service

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.service.draining = True
        super().handle_exit(sig, frame)


def _config(app: Any, settings: ServerSettings, **kwargs: Any) -> uvicorn.Config:
    return uvicorn.Config(app, host=settings.host, port=settings.port, log_level="info",
                          access_log=settings.access_log, timeout_graceful_shutdown=int(settings.graceful_timeout_s),
                          lifespan="on", **kwargs)


def serve(router: SLMRouter, settings: ServerSettings) -> None:
    """Serve ``router`` until SIGINT/SIGTERM (blocking)."""
    service = RouterService(router, settings)
    server = _Server(_config(create_app(router, settings, service=service), settings), service)
    server.run()


class RouterServer:
    """The server in a background thread on ``settings.host`` (port 0: a free one).

    Use as a context manager, or call :meth:`start` / :meth:`stop`; ``base_url`` is
    ``http://127.0.0.1:<port>``, ``openai_base_url`` adds ``/v1``.
    """

    def __init__(self, router: SLMRouter, settings: ServerSettings | None = None) -> None:
        self.settings = settings or ServerSettings(port=0)
        self.service = RouterService(router, self.settings)
        self.app = create_app(router, self.settings, service=self.service)
        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets (else each response waits ~40 ms for a
        # delayed ACK between its header and body segments)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind((self.settings.host, self.settings.port))
        except BaseException:
            self._sock.close()
            raise
        self.port = self._sock.getsockname()[1]
        self._server = _Server(_config(self.app, self.settings), self.service)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/v1"

    def start(self, timeout: float = 300.0) -> RouterServer:
        """Start serving; returns once the models are loaded and the port accepts requests.

        Raises:
            SLMRouterError: the models could not be loaded (e.g. :class:`~langchain_slm_router.errors.ModelLoadError`).
            RuntimeError: the server did not start within ``timeout`` seconds.
            In both cases the thread is stopped and the socket closed.
        """
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="slm-router-server", daemon=True)
            self._thread.start()
            deadline = time.monotonic() + timeout
            while not (self._server.started and self.service.ready):
                if not self._thread.is_alive() or time.monotonic() > deadline:
                    self.stop(timeout=5.0)
                    if self.service.load_error is not None:
                        raise self.service.load_error
                    raise RuntimeError(f"the slm-router server did not start within {timeout:g} s")
                time.sleep(0.02)
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._sock]))
        except SystemExit:  # uvicorn exits when the app's startup fails; start() raises the reason
            pass

    def stop(self, timeout: float | None = None) -> None:
        """Graceful shutdown: refuse new requests, let accepted ones finish, then stop."""
        self.service.draining = True
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else self.settings.graceful_timeout_s + 10)
            self._thread = None
        self._sock.close()

    def __enter__(self) -> RouterServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["RouterServer", "serve"]
