"""Prometheus metrics of the server (``GET /metrics``), on a registry of their own per app."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from langchain_slm_router.savings import RouterStats, escalation_reason
from langchain_slm_router.trace import RouteResult

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    120.0)


class RouterStatsCollector(Collector):
    """The router's running totals (:meth:`SLMRouter.stats`) as Prometheus metrics, read at scrape time.

    Counters: ``slm_router_tokens_total{model,direction}``, ``slm_router_stage_time_seconds_total{stage}``,
    ``slm_router_llm_calls_total``, ``slm_router_failed_queries_total{type}``. Gauges (estimates, see
    :mod:`langchain_slm_router.savings`): ``slm_router_estimated_cost_actual``,
    ``slm_router_estimated_cost_always_llm``, ``slm_router_estimated_cost_saved``,
    ``slm_router_estimated_time_saved_seconds``.
    """

    def __init__(self, stats: Callable[[], RouterStats]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self.stats()
        tokens = CounterMetricFamily("slm_router_tokens", "Tokens per model and direction (input, output)",
                                     labels=["model", "direction"])
        for model, t in s.tokens.items():
            tokens.add_metric([model, "input"], t.input_tokens)
            tokens.add_metric([model, "output"], t.output_tokens)
        yield tokens
        stage_time = CounterMetricFamily("slm_router_stage_time_seconds",
                                         "Time per stage, answered queries added up", labels=["stage"])
        for stage, ms in s.time_ms.items():
            stage_time.add_metric([stage], ms / 1000.0)
        yield stage_time
        yield CounterMetricFamily("slm_router_llm_calls", "Queries that called the fallback LLM", value=s.llm_calls)
        failed = CounterMetricFamily("slm_router_failed_queries", "Queries that got no answer, by error type",
                                     labels=["type"])
        for kind, n in s.failed.items():
            failed.add_metric([kind], n)
        yield failed
        e = s.savings
        for name, value, doc in (
            ("cost_actual", e.cost_actual, "What the answers cost at the configured prices"),
            ("cost_always_llm", e.cost_always_llm, "ESTIMATED cost had every query gone to the fallback"),
            ("cost_saved", e.cost_saved, "ESTIMATED cost saved against always-LLM"),
            ("time_saved_seconds", None if e.time_saved_ms is None else e.time_saved_ms / 1000.0,
             "ESTIMATED time saved against always-LLM"),
        ):
            if value is not None:
                yield GaugeMetricFamily(f"slm_router_estimated_{name}", doc, value=value)


class _CacheCollector(Collector):
    """The answer cache's own counters (false hits, verifications, store errors), read at each scrape."""

    def __init__(self, get_cache: Callable[[], Any]) -> None:
        self.get_cache = get_cache

    def collect(self) -> Iterator[CounterMetricFamily]:
        cache = self.get_cache()
        if cache is None:
            return
        stats = cache.stats
        for name, doc, value in (
            ("slm_router_cache_false_hits", "Served cached answers found wrong (verification or feedback)",
             stats.false_hits),
            ("slm_router_cache_verified", "Fresh answers compared with a close cached one", stats.verified),
            ("slm_router_cache_store_errors", "Cache store calls that failed (each a miss or a skipped write)",
             stats.store_errors),
        ):
            yield CounterMetricFamily(name, doc, value=value)


class ServerMetrics:
    """The server's counters, gauges and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._cache_collector: _CacheCollector | None = None
        r = self.registry
        self.requests = Counter("slm_router_requests", "HTTP requests by protocol, endpoint and status code",
                                ["protocol", "endpoint", "status"], registry=r)
        self.answers = Counter("slm_router_answers", "Answers by the stage that gave them (math, slm, llm)",
                               ["stage"], registry=r)
        self.llm_calls_avoided = Counter("slm_router_llm_calls_avoided",
                                         "Answers given without calling the fallback LLM", registry=r)
        self.escalations = Counter("slm_router_escalations", "Queries the local stages did not answer, by reason",
                                   ["reason"], registry=r)
        self.errors = Counter("slm_router_errors", "Failed requests by error type", ["type"], registry=r)
        self.stage_latency = Histogram("slm_router_stage_latency_seconds",
                                       "Time spent per stage (math, slm, llm, total) as the route trace reports it",
                                       ["stage"], buckets=_LATENCY_BUCKETS, registry=r)
        self.request_latency = Histogram("slm_router_request_latency_seconds",
                                         "Time from request to answer (to the last byte when streaming)",
                                         ["protocol"], buckets=_LATENCY_BUCKETS, registry=r)
        self.slm_tokens = Counter("slm_router_slm_output_tokens", "Tokens generated by the SLM", registry=r)
        self.slm_tokens_per_s = Gauge("slm_router_slm_tokens_per_second",
                                      "Generated tokens per second of the last SLM call (all its queries)",
                                      registry=r)
        self.slm_batch_size = Histogram("slm_router_slm_batch_size", "Conversations per coalesced SLM call",
                                        buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)
        self.in_flight = Gauge("slm_router_in_flight_requests", "Requests being routed now", registry=r)
        self.queued = Gauge("slm_router_queued_requests", "Requests waiting for a routing slot", registry=r)
        self.rejected = Counter("slm_router_rejected", "Requests refused before routing, by reason",
                                ["reason"], registry=r)
        self.cache_lookups = Counter("slm_router_cache_lookups",
                                     "Answer-cache lookups by outcome (hit_exact, hit_semantic, miss)",
                                     ["outcome"], registry=r)
        self.cache_lookup_latency = Histogram("slm_router_cache_lookup_seconds", "Time of one answer-cache lookup",
                                              buckets=_LATENCY_BUCKETS, registry=r)

    def attach_cache(self, get_cache: Callable[[], Any]) -> None:
        """Export the counters of the cache ``get_cache()`` returns (``None``: nothing); a second call replaces it."""
        if self._cache_collector is None:
            self._cache_collector = _CacheCollector(get_cache)
            self.registry.register(self._cache_collector)
        self._cache_collector.get_cache = get_cache

    def watch_router(self, stats: Callable[[], RouterStats]) -> None:
        """Export the router's running totals (``router.stats``) with the server's metrics."""
        self.registry.register(RouterStatsCollector(stats))

    def observe_result(self, result: RouteResult) -> None:
        """Count one answer: its stage, LLM call avoided or escalation reason, stage latencies, SLM tokens."""
        self.answers.labels(result.stage).inc()
        if not result.fallback_tried:
            self.llm_calls_avoided.inc()
        if "cache" in result.latency_ms:
            self.cache_lookups.labels(f"hit_{result.cache_match}" if result.stage == "cache" else "miss").inc()
            self.cache_lookup_latency.observe(result.latency_ms["cache"] / 1000.0)
        reason = escalation_reason(result)
        if reason is not None:
            self.escalations.labels(reason).inc()
        for stage, ms in result.latency_ms.items():
            self.stage_latency.labels(stage).observe(ms / 1000.0)
        tokens = int(result.usage.get("slm_output_tokens", 0))
        if tokens:
            self.slm_tokens.inc(tokens)

    def observe_slm_call(self, conversations: int, generations: list[Any], seconds: float) -> None:
        """One SLM call (a coalesced batch, or one request's call): batch size and tokens per second."""
        self.slm_batch_size.observe(conversations)
        tokens = sum(int(getattr(g, "output_tokens", 0)) for g in generations)
        if seconds > 0:
            self.slm_tokens_per_s.set(tokens / seconds)

    def observe_error(self, exc: BaseException) -> None:
        self.errors.labels(type(exc).__name__).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


__all__ = ["RouterStatsCollector", "ServerMetrics", "escalation_reason"]
