"""The ``slm-router serve`` subcommand (registered by :mod:`langchain_slm_router.cli`).

``slm-router serve [--host 127.0.0.1] [--port 8000] [--config FILE] [--api-key KEY] ...``: flags override the
``server`` section of the JSON configuration file (see :mod:`langchain_slm_router.server.settings`); the API key can
also come from ``SLM_ROUTER_API_KEY``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_serve_command(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """Add ``serve`` to the ``slm-router`` subcommands."""
    p = sub.add_parser("serve", help="serve the router over the OpenAI and Ollama HTTP protocols")
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--config", type=Path, default=None, help="JSON configuration: router, fallback, server, models")
    p.add_argument("--api-key", default=None, help="require this key (default: $SLM_ROUTER_API_KEY; none: no auth)")
    p.add_argument("--fallback-model", default=None,
                   help="Ollama model of the fallback (overrides the config; default mistral)")
    p.add_argument("--fallback-url", default=None, help="Ollama server of the fallback (default: $OLLAMA_HOST)")
    p.add_argument("--no-fallback", action="store_true", help="no fallback: the SLM's answer is always returned")
    p.add_argument("--threshold", type=float, default=None, help="the gate's threshold for the base model name")
    p.add_argument("--slm-engine", choices=("local", "llamacpp"), default=None,
                   help="engine of the SLM (overrides the config's router.slm.backend; default local = "
                        "transformers; llamacpp is ~3x faster, see docs/speed.md)")
    p.add_argument("--max-concurrency", type=int, default=None, help="requests routed at once (default 32)")
    p.add_argument("--max-queue", type=int, default=None, help="requests waiting for a slot (default 128)")
    p.add_argument("--request-timeout", type=float, default=None, help="seconds per request (default 300)")
    p.add_argument("--no-coalesce", action="store_true", help="run each request's SLM call on its own")
    p.add_argument("--access-log", action="store_true", help="uvicorn's access log (never headers or keys)")
    p.set_defaults(handler=run_serve)
    return p


def build_from_args(args: argparse.Namespace) -> tuple[Any, Any]:
    """The router and server settings ``serve`` runs with: the configuration file, then the flags over it."""
    from langchain_slm_router.server.settings import ServeConfig

    config = ServeConfig.load(args.config)
    if args.slm_engine is not None:
        config.router["slm"] = {**(config.router.get("slm") or {}), "backend": args.slm_engine}
    if args.no_fallback:
        config.fallback = None
    elif args.fallback_model or args.fallback_url:
        fb = dict(config.fallback or {})
        if args.fallback_model:
            fb["model"] = args.fallback_model
        if args.fallback_url:
            fb["base_url"] = args.fallback_url
        config.fallback = fb
    router = config.build_router()
    if args.threshold is not None:
        router = router.with_options(threshold=args.threshold)
    settings = config.settings(
        host=args.host, port=args.port, api_key=args.api_key, max_concurrency=args.max_concurrency,
        max_queue=args.max_queue, request_timeout_s=args.request_timeout,
        coalesce=False if args.no_coalesce else None, access_log=True if args.access_log else None,
    )
    return router, settings


def run_serve(args: argparse.Namespace) -> int:
    """Build the router from the configuration and serve it until interrupted."""
    from langchain_slm_router.errors import ConfigError, SLMRouterError
    from langchain_slm_router.server.runner import serve

    try:
        router, settings = build_from_args(args)
    except SLMRouterError:
        raise  # typed: the command line's handler prints it
    except (ValueError, TypeError) as exc:  # a configuration the router or the settings refuse
        raise ConfigError(f"the serve configuration is invalid: {exc}".replace("\n", " ")) from exc
    auth = "API key required" if settings.api_key is not None else "no API key"
    print(f"slm-router serve: {router.display_name} at http://{settings.host}:{settings.port} "
          f"(OpenAI: /v1, Ollama: /api; {auth})", file=sys.stderr, flush=True)
    serve(router, settings)
    return 0


__all__ = ["add_serve_command", "build_from_args", "run_serve"]
