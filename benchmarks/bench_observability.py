"""What observability costs per query: savings accounting, and OpenTelemetry tracing with a tracer provider set.

Usage::

    python benchmarks/bench_observability.py                      # overhead arms + 40 real SLM-answered queries
    python benchmarks/bench_observability.py --slm-queries 0      # overhead arms only (no model load)

Two measurements, printed as tables. Times are the process's CPU time (``time.process_time``: all its threads,
the span processor's included), so other programs on a busy machine do not inflate them; the SLM query's wall
time is printed beside its CPU time.

1. **Router overhead, in µs per query**, with an instant scripted SLM (so the router's own work is all there is to
   time) answering every query locally (the gate keeps it: the SLM-answered path). Arms, interleaved round by round
   so machine load hits all of them alike:

   * ``bare``: accounting switched off (``SavingsLedger.record`` replaced by a no-op), no tracer provider;
   * ``accounting``: the default router (accounting on, no tracer provider: tracing off);
   * ``accounting+tracing``: the default router with an OpenTelemetry SDK ``TracerProvider`` and a
     ``BatchSpanProcessor`` whose exporter drops the spans (the SDK's span work, no I/O).

   Tracing off is also timed on its own: the one :func:`~langchain_slm_router.telemetry.tracer_for` call per
   ``route()`` (ns) and the ``tracing-off-check`` arm, which is ``accounting`` with that call replaced by ``None``.
2. **An SLM-answered query's time** with the real SLM (SmolLM2-135M-Instruct, transformers, one thread) on NQ-open
   questions, median over the queries the gate kept, to express each overhead as a share of it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from langchain_slm_router import router as router_module  # noqa: E402
from langchain_slm_router.gates import GatePolicy  # noqa: E402
from langchain_slm_router.router import SLMRouter  # noqa: E402
from langchain_slm_router.savings import SavingsLedger  # noqa: E402
from langchain_slm_router.signals import ConfidenceSignals  # noqa: E402
from langchain_slm_router.slm import ChatMessageDict, EarlyExit, SLMBackend, SLMGeneration  # noqa: E402
from langchain_slm_router.telemetry import tracer_for  # noqa: E402

PROBS = [0.97, 0.93, 0.95, 0.9]
ANSWER = SLMGeneration(text="Paris", token_probs=PROBS, token_entropies=[0.1] * 4,
                       signals=ConfidenceSignals.from_tokens(PROBS, [0.1] * 4), input_tokens=24, output_tokens=4,
                       finished=True, latency_ms=0.0)


class InstantSLM(SLMBackend):
    """A confident, instant SLM: only the router's own work is left to time."""

    @property
    def model_name(self) -> str:
        return "instant"

    def count_tokens(self, messages: Sequence[ChatMessageDict]) -> int:
        return 24

    def generate_batch(self, conversations: Sequence[Sequence[ChatMessageDict]], *,
                       early_exit: EarlyExit | None = None) -> list[SLMGeneration | Exception]:
        return [ANSWER for _ in conversations]


def _sdk_provider() -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    return provider


def _router(**kwargs: Any) -> SLMRouter:
    return SLMRouter(slm=InstantSLM(), gate=GatePolicy(min_mean_prob=0.6), fallback=None, **kwargs)


class _NoLedger(SavingsLedger):
    def record(self, result: Any) -> None:
        return None


def overhead(n: int, rounds: int) -> dict[str, list[float]]:
    """µs per route() of each arm, one value per round."""
    provider = _sdk_provider()
    arms = {
        "bare": _router(savings=_NoLedger()),
        "accounting": _router(),
        "tracing-off-check": _router(),
        "accounting+tracing": _router(tracer_provider=provider),
    }
    query = "What is the capital of France?"
    for r in arms.values():  # warm up (imports, caches)
        for _ in range(200):
            r.route(query)
    out: dict[str, list[float]] = {name: [] for name in arms}
    real_tracer_for = router_module.tracer_for
    for _ in range(rounds):
        for name, r in arms.items():
            router_module.tracer_for = (lambda p=None: None) if name == "tracing-off-check" else real_tracer_for
            t0 = time.process_time()
            for _ in range(n):
                r.route(query)
            out[name].append((time.process_time() - t0) / n * 1e6)
    router_module.tracer_for = real_tracer_for
    provider.shutdown()
    assert arms["accounting"].stats().by_stage == {"slm": n * rounds + 200}
    return out


def tracer_for_ns(n: int = 200_000) -> float:
    t0 = time.process_time()
    for _ in range(n):
        tracer_for(None)
    return (time.process_time() - t0) / n * 1e9


def slm_answered_ms(data_dir: Path, k: int, threads: int) -> tuple[float, float, int, int]:
    """Median route() CPU ms and wall ms of the real-SLM queries the gate kept, kept count, queries run."""
    import torch

    from langchain_slm_router.slm import LocalSLM

    torch.set_num_threads(threads)
    rows = [json.loads(line) for line in (data_dir / "nq_open_dev.jsonl").read_text().splitlines()[:k]]
    router = SLMRouter(slm=LocalSLM(max_new_tokens=24), math_engine=None, fallback=None)
    router.route(rows[0]["question"])  # load + warm up
    cpu, wall = [], []
    for row in rows:
        t0 = time.process_time()
        result = router.route(row["question"])
        if not result.low_confidence:
            cpu.append((time.process_time() - t0) * 1000)
            wall.append(result.latency_ms["total"])
    if not cpu:
        return float("nan"), float("nan"), 0, len(rows)
    return statistics.median(cpu), statistics.median(wall), len(cpu), len(rows)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1000, help="route() calls per arm per round (default 1000)")
    p.add_argument("--rounds", type=int, default=9, help="interleaved rounds (default 9)")
    p.add_argument("--slm-queries", type=int, default=40, help="real SLM queries (NQ-open dev; 0: skip)")
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("SLM_ROUTER_DATA_DIR",
                                                                        REPO.parent / "shared" / "data")),
                   help="folder with nq_open_dev.jsonl (default: $SLM_ROUTER_DATA_DIR, else ../shared/data)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the real SLM (default 1)")
    args = p.parse_args(argv)
    if args.slm_queries and not (args.data_dir / "nq_open_dev.jsonl").is_file():
        p.error(f"{args.data_dir}/nq_open_dev.jsonl not found: pass --data-dir (or --slm-queries 0)")

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start", flush=True)
    arms = overhead(args.n, args.rounds)
    med = {name: statistics.median(v) for name, v in arms.items()}
    base = med["bare"]
    print(f"\n## Router overhead per query (instant scripted SLM, gate keeps every answer; {args.n} route() calls "
          f"x {args.rounds} interleaved rounds per arm; process CPU time, median of rounds)\n")
    print("| arm | CPU µs per route() | min..max over rounds | overhead vs bare, µs | ratio to bare |")
    print("|---|---|---|---|---|")
    for name, v in arms.items():
        print(f"| {name} | {med[name]:.1f} | {min(v):.1f}..{max(v):.1f} | {med[name] - base:+.1f} | "
              f"{med[name] / base:.3f} |")
    print(f"\ntracing off: one tracer_for() per route() costs {tracer_for_ns():.0f} ns; 'tracing-off-check' (that "
          f"call replaced by None) vs 'accounting': {med['accounting'] - med['tracing-off-check']:+.2f} µs",
          flush=True)
    if args.slm_queries:
        slm_ms, wall_ms, kept, ran = slm_answered_ms(args.data_dir, args.slm_queries, args.threads)
        print(f"\n## Share of an SLM-answered query (real SmolLM2-135M-Instruct, {args.threads} thread, NQ-open dev, "
              f"max_new_tokens 24: median {slm_ms:.1f} ms CPU ({wall_ms:.1f} ms wall) over the {kept} of {ran} "
              "queries the gate kept)\n")
        print("| overhead | µs | share of the SLM-answered query |")
        print("|---|---|---|")
        for label, extra in (("accounting", med["accounting"] - base),
                             ("accounting + tracing (SDK provider set)", med["accounting+tracing"] - base),
                             ("tracing off (tracer_for check)", med["accounting"] - med["tracing-off-check"])):
            print(f"| {label} | {extra:+.1f} | {extra / (slm_ms * 1000):.4%} |")
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
