"""``slm-router serve``: the router behind the OpenAI and Ollama HTTP protocols (FastAPI + uvicorn).

* :func:`create_app` builds the ASGI app for an :class:`~langchain_slm_router.router.SLMRouter`;
* :class:`RouterServer` runs it in a background thread on a free port (tests, benchmarks);
* :func:`serve` runs it in the foreground (the ``slm-router serve`` command);
* :class:`ServerSettings` holds the limits (concurrency, queue, timeouts, body size), batching and the API key.

See docs/server.md for the protocols, the route-trace fields and headers, model names and metrics.
"""

from langchain_slm_router.server.app import create_app
from langchain_slm_router.server.runner import RouterServer, serve
from langchain_slm_router.server.settings import API_KEY_ENV, ServeConfig, ServerSettings

__all__ = ["API_KEY_ENV", "RouterServer", "ServeConfig", "ServerSettings", "create_app", "serve"]
