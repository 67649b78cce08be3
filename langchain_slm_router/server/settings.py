"""Server settings, and the JSON configuration file of ``slm-router serve --config FILE``.

The file is JSON (never pickle) with four optional sections::

    {
      "router":   {"slm": {"backend": "local", "max_new_tokens": 64}, "gate": {"min_mean_prob": 0.6}},
      "fallback": {"model": "mistral", "base_url": "http://localhost:11434", "num_predict": 256},
      "server":   {"port": 8000, "max_concurrency": 32, "max_queue": 128},
      "models":   {"strict": {"threshold": 0.9}, "mistral": {}}
    }

``router`` holds :class:`~langchain_slm_router.router.SLMRouter` fields (``slm`` and ``gate`` dicts build the
registered backend / gate named by their ``backend`` / ``gate`` key); ``fallback`` holds the arguments of
:func:`~langchain_slm_router.fallback.default_fallback` (``null``: no fallback); ``server`` holds
:class:`ServerSettings` fields; ``models`` adds model names that select a configuration (the options of
:meth:`SLMRouter.with_options <langchain_slm_router.router.SLMRouter.with_options>`: ``threshold``,
``max_tokens``, ``temperature``, ``overflow``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from langchain_slm_router.errors import ConfigError

API_KEY_ENV = "SLM_ROUTER_API_KEY"
"""Environment variable read for the API key when ``--api-key`` is not given."""


class ServerSettings(BaseModel):
    """How ``slm-router serve`` listens, limits and batches."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    """Address to bind (loopback by default; use 0.0.0.0 only behind a trusted network or with an API key)."""
    port: int = Field(default=8000, ge=0, le=65535)
    """Port to bind (0 picks a free port)."""
    model_name: str = "slm-router"
    """The model name clients ask for; ``<model_name>:latest`` and ``<model_name>:threshold-<t>`` work too."""
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """More model names, each selecting a configuration: ``{"strict": {"threshold": 0.9}}``."""
    api_key: SecretStr | None = None
    """When set, every request except /healthz and /readyz needs ``Authorization: Bearer <key>`` (or
    ``x-api-key``); else HTTP 401. Never logged."""
    max_concurrency: int = Field(default=32, ge=1, le=4096)
    """Requests routed at the same time; more wait in the queue."""
    max_queue: int = Field(default=128, ge=0, le=100_000)
    """Requests waiting for a routing slot; beyond that, HTTP 429 with ``Retry-After``."""
    queue_timeout_s: float = Field(default=60.0, gt=0)
    """Longest wait in the queue; beyond that, HTTP 503."""
    request_timeout_s: float = Field(default=300.0, gt=0)
    """Longest routing time of one request (to its first token when streaming); beyond that, HTTP 504."""
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    """Largest accepted request body; beyond that, HTTP 413 (the router's ``max_query_chars`` bounds the text)."""
    coalesce: bool = True
    """Coalesce concurrent requests' SLM calls into batches (answers are the same; see docs/server.md)."""
    max_batch: int = Field(default=32, ge=1, le=1024)
    """Most conversations in one coalesced SLM call (the SLM splits it into ``max_batch_size`` passes)."""
    batch_window_ms: float = Field(default=0.0, ge=0.0, le=1000.0)
    """Extra wait for more requests before an idle SLM starts a batch (0: start at once; batches still form
    from the requests that arrive while a batch is running)."""
    graceful_timeout_s: float = Field(default=60.0, gt=0)
    """On shutdown, how long in-flight requests may take to finish."""
    access_log: bool = False
    """uvicorn's access log (method, path, status; never headers or keys)."""


class ServeConfig(BaseModel):
    """The parsed ``--config`` file."""

    model_config = ConfigDict(extra="forbid")

    router: dict[str, Any] = Field(default_factory=dict)
    """:class:`~langchain_slm_router.router.SLMRouter` fields."""
    fallback: dict[str, Any] | None = Field(default_factory=dict)
    """Arguments of :func:`~langchain_slm_router.fallback.default_fallback`; ``None`` means no fallback."""
    server: dict[str, Any] = Field(default_factory=dict)
    """:class:`ServerSettings` fields."""
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Model names selecting a configuration (merged into ``ServerSettings.models``)."""

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None) -> ServeConfig:
        """Read a JSON configuration file (``None``: the defaults); a bad file is a :class:`ConfigError`."""
        if path is None:
            return cls()
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls.model_validate(data)
        except (OSError, ValueError, ValidationError) as exc:
            raise ConfigError(f"cannot read the server configuration {path}: {exc}; fix the file (docs/server.md shows its keys) or leave out --config") from exc

    def build_router(self) -> Any:
        """The :class:`~langchain_slm_router.router.SLMRouter` this configuration describes."""
        from langchain_slm_router.fallback import default_fallback
        from langchain_slm_router.router import SLMRouter

        fields = dict(self.router)
        if "fallback" not in fields:
            fields["fallback"] = None if self.fallback is None else default_fallback(**self.fallback)
        return SLMRouter(**fields)

    def settings(self, **overrides: Any) -> ServerSettings:
        """:class:`ServerSettings` from the file, with ``overrides`` (command-line flags; ``None`` ignored)."""
        values = {**self.server, **{k: v for k, v in overrides.items() if v is not None}}
        values["models"] = {**values.get("models", {}), **self.models}
        if values.get("api_key") is None and os.environ.get(API_KEY_ENV):
            values["api_key"] = os.environ[API_KEY_ENV]
        return ServerSettings(**values)


__all__ = ["API_KEY_ENV", "ServeConfig", "ServerSettings"]
