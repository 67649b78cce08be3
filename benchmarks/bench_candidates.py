"""Stage-2 candidates compared at the router level: each SLM with a gate fitted to it, the 1.5B LLM as fallback.

For every candidate SLM (``--candidates``, keys of :data:`CANDIDATES`) and data set (SQuAD 2.0, NQ-open, the mixed
workload; evaluation splits for the numbers, calibration splits for fitting):

1. the harness answers the calibration and evaluation questions with the SLM (cached on disk), and the evaluation
   questions with the LLM (the in-process Ollama-protocol server on llama.cpp, the real ``ChatOllama`` client;
   cached too, so the LLM answers are shared by all candidates and with ``slm-router eval``);
2. a :class:`~langchain_slm_router.gates.LearnedGate` (logistic + isotonic, gold labels) is fitted to this SLM on
   the pooled calibration answers of all the data sets (math-engine answers left out, as the gate never sees them);
   when the SLM is right on too few calibration answers to fit one, the gate is "never keep" (every question the
   math engine does not answer goes to the LLM);
3. for each LLM-call budget (30%, 50%) the gate's threshold is calibrated on that data set's calibration split
   only (the lowest P(correct) threshold that escalates at most the budget), then applied to the evaluation split.

Columns (evaluation split): ``oracle local`` = share kept local by an oracle that escalates exactly the SLM's
wrong answers; ``q@30%`` / ``q@50%`` = router quality and its % of always-LLM quality at the calibrated threshold,
with the LLM share it actually gave; ``avoided@90%`` = the most LLM calls avoided at >= 90% of always-LLM quality
along the evaluation split's threshold curve (read off the curve, not calibrated: the best any threshold of this
gate could do); p50/p95 per query and total time of the router at the 30% threshold vs always-LLM (measured
latencies of each component, summed per question as the router runs them); ``RSS`` = resident memory added by
loading the SLM.

Usage (CPU-bound; state the sample size, below 400 per data set is a hint)::

    nice -n 10 python benchmarks/bench_candidates.py --candidates smollm2,smollm2+nanoqa --limit 40 \\
        --calib-limit 60 --threads 1 --cache-dir /work/labels/llm/cache --out bench_out/candidates
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from langchain_slm_router.cli import _LLMSetup  # noqa: E402
from langchain_slm_router.evaluation import systems  # noqa: E402
from langchain_slm_router.evaluation.cache import GenerationCache  # noqa: E402
from langchain_slm_router.evaluation.datasets import default_data_dir, load_dataset  # noqa: E402
from langchain_slm_router.evaluation.harness import DEFAULT_MAX_NEW_TOKENS, Harness, HarnessConfig  # noqa: E402
from langchain_slm_router.evaluation.metrics import auroc, percentile  # noqa: E402
from langchain_slm_router.gates import GatePolicy, LearnedGate  # noqa: E402
from langchain_slm_router.gates.defaults import shipped_gate_for  # noqa: E402
from langchain_slm_router.gates.pregen import PreGenerationGate  # noqa: E402
from langchain_slm_router.gates.training import record_examples  # noqa: E402
from langchain_slm_router.llm_weights import weights_path  # noqa: E402
from langchain_slm_router.slm import make_backend  # noqa: E402

CANDIDATES: dict[str, Callable[[int], Any]] = {
    "smollm2": lambda t: make_backend("local", adapter=None),
    "smollm2+nanoqa": lambda t: make_backend("local", adapter="nanoqa"),
    "smollm2+nanoqa+extractive": lambda t: make_backend("local", adapter="nanoqa", extractive=True),
    "smollm2+extractive": lambda t: make_backend("local", adapter=None, extractive=True),
    "smollm2-llamacpp": lambda t: make_backend("llamacpp", n_threads=t),
    "qwen2.5-coder-0.5b": lambda t: make_backend("llamacpp", model_path=str(weights_path("qwen2.5-coder-0.5b")),
                                                 n_threads=t),
}
"""Candidate name -> backend factory (argument: CPU threads)."""
DATASETS = ("squad_v2", "nq_open", "mixed")
BUDGETS = (0.3, 0.5)


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


class _NeverKeep:
    """The gate when the SLM is (almost) never right on the calibration split: escalate everything."""

    threshold = 1.0

    def with_threshold(self, threshold: float) -> _NeverKeep:
        return self

    def decide(self, generation: Any, messages: Sequence[Any] = ()) -> Any:
        from langchain_slm_router.gates.base import GateDecision

        return GateDecision(keep=False, reasons=["fail: the SLM was not right on the calibration split"],
                            p_correct=0.0)


PROBE_VECTOR = "answer_mean@L15"
"""The hidden vector the candidates' probes read (the middle layer's answer mean: issue 18's measured choice)."""


def _fit_gate(name: str, records: Sequence[dict], slm: Any = None, out: Path | None = None) -> Any:
    """A learned gate fitted to one candidate on its pooled calibration answers (gold labels): token and context
    features, plus a probe on :data:`PROBE_VECTOR` when every answer carries it (LocalSLM candidates); "never keep"
    when the SLM is right too rarely to fit one."""
    feats, labels = record_examples(records, "gold")
    answered = [(r, g) for r in records if not r.get("math") and (g := systems.record_generation(r)) is not None]
    hidden = [g.hidden for _, g in answered]  # the rows record_examples made, in its order
    with_probe = bool(hidden) and all(h and PROBE_VECTOR in h for h in hidden)
    try:
        gate = LearnedGate.fit(feats, labels, slm=slm, info={"candidate": name, "label": "gold",
                                                             "fitted_on": "bench_candidates calibration splits"},
                               **({"hidden": hidden, "probe_vector": PROBE_VECTOR} if with_probe else {}))
    except ValueError as exc:
        print(f"{name}: {exc}; the gate is 'never keep'", flush=True)
        return _NeverKeep()
    try:  # the pre-generation step, from the query alone (MiniLM + shape), as the shipped gate has
        convs = [systems.record_messages(r) for r, _ in answered]
        gate = gate.model_copy(update={"pre": PreGenerationGate.fit(convs, labels)})
    except (ValueError, ImportError) as exc:
        print(f"{name}: no pre-generation gate ({exc})", flush=True)
    if out is not None:  # tied to the candidate's weights (sha256): a gate file to ship if this row is chosen
        gate.save(out / f"{name}.gate.json")
    return gate


def _p_correct(gate: Any, rec: dict) -> float | None:
    gen = systems.record_generation(rec)
    if gen is None or rec.get("math"):
        return None
    if isinstance(gate, GatePolicy):  # the seed's rule: its threshold is on the mean token probability
        return gen.signals.mean_prob
    return gate.decide(gen, systems.record_messages(rec)).p_correct


_PRE_P: dict[tuple[int, str], float] = {}


def _route(rec: dict, threshold: float, gate: Any) -> Any:
    """The router's outcome on one record at ``threshold``, with the gate's pre-generation step where it has one:
    a query it skips goes to the LLM and costs no SLM time (as in ``SLMRouter``)."""
    pre = getattr(gate, "pre", None)
    if pre is not None and not rec.get("math"):
        key = (id(pre), str(rec.get("id")) + str(rec.get("dataset")))
        if key not in _PRE_P:
            _PRE_P[key] = pre.p_correct(systems.record_messages(rec))
        if _PRE_P[key] < min(pre.min_p_correct, threshold):
            return systems.router({**rec, "slm": {"signals": None, "latency_ms": 0.0}}, threshold, gate)
    return systems.router(rec, threshold, gate)


def _threshold_for_budget(gate: Any, calib: Sequence[dict], budget: float) -> float:
    """The highest threshold whose LLM-call share on the calibration questions is at most ``budget`` (the one that
    uses the budget: every answer it escalates is one the gate trusts least)."""
    grid = sorted({0.0, 1.0 + 1e-9, *(p for p in (_p_correct(gate, r) for r in calib) if p is not None)},
                  reverse=True)
    n = max(1, len(calib))
    for t in grid:
        if sum(_route(r, t, gate).llm_called for r in calib) / n <= budget + 1e-9:
            return t
    return 0.0


def _row(outs: Sequence[Any], llm_outs: Sequence[Any]) -> dict[str, float]:
    n = len(outs)
    q = sum(o.score for o in outs) / n
    lq = sum(o.score for o in llm_outs) / n
    lat = [o.latency_ms / 1000.0 for o in outs]
    return {"quality": q, "em": sum(o.em for o in outs) / n, "pct_llm": 100.0 * q / lq if lq else float("nan"),
            "llm_share": sum(o.llm_called for o in outs) / n, "p50_s": percentile(lat, 50),
            "p95_s": percentile(lat, 95), "total_s": sum(lat)}


def evaluate(name: str, gate: Any, calib: dict[str, list[dict]], evals: dict[str, list[dict]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for ds, recs in evals.items():
        llm_outs = [systems.always_llm(r) for r in recs]
        res: dict[str, Any] = {"n": len(recs), "n_calib": len(calib[ds]),
                               "always_llm": _row(llm_outs, llm_outs),
                               "always_slm": _row([systems.always_slm(r) for r in recs], llm_outs),
                               "oracle": _row([systems.oracle(r) for r in recs], llm_outs)}
        for b in BUDGETS:
            t = _threshold_for_budget(gate, calib[ds], b)
            res[f"router@{int(b * 100)}"] = {**_row([_route(r, t, gate) for r in recs], llm_outs),
                                             "threshold": t}
        own = getattr(gate, "threshold", None)  # out of the box: the gate's own threshold, not calibrated
        if own is not None:
            res["router@default"] = {**_row([_route(r, own, gate) for r in recs], llm_outs), "threshold": own}
        grid = sorted({0.0, 1.0 + 1e-9, *(p for p in (_p_correct(gate, r) for r in recs) if p is not None)})
        llm_q = res["always_llm"]["quality"]
        best = None
        for t in grid:
            row = _row([_route(r, t, gate) for r in recs], llm_outs)
            if row["quality"] >= 0.9 * llm_q - 1e-9 and (best is None or row["llm_share"] < best["llm_share"]):
                best = {**row, "threshold": t}
        res["avoided_at_90"] = best
        gated = [(p, bool(r["slm"].get("correct"))) for r in recs if (p := _p_correct(gate, r)) is not None]
        res["auroc"] = auroc([p for p, _ in gated], [c for _, c in gated]) if gated else None
        out[ds] = res
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--candidates", default="smollm2,smollm2+nanoqa,smollm2-llamacpp")
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--limit", type=int, default=40, help="evaluation questions per data set")
    p.add_argument("--calib-limit", type=int, default=60, help="calibration questions per data set")
    p.add_argument("--mixed-limit", type=int, default=None,
                   help="evaluation and calibration size of the mixed workload (default: --limit / --calib-limit); "
                        "its GSM8K answers are long, so it is often run smaller than the others")
    p.add_argument("--llm-gguf", type=Path, default=None, help="LLM GGUF (default: the fetched 1.5B)")
    p.add_argument("--llm-model", default="qwen2.5-coder:1.5b")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--cache-dir", type=Path, default=Path(".slm_router_cache"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("bench_out/candidates"))
    p.add_argument("--slm-only", action="store_true",
                   help="no LLM: answer with the SLMs (into the cache) and print SLM-alone F1/EM and the fitted "
                        "gate's AUROC on the evaluation split")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    data_dir = args.data_dir or default_data_dir()
    datasets = [d for d in args.datasets.split(",") if d]
    names = [c for c in args.candidates.split(",") if c]
    unknown = [c for c in names if c not in CANDIDATES]
    if unknown:
        raise SystemExit(f"unknown candidates {unknown}; choose from {', '.join(CANDIDATES)}")
    def size(ds: str, n: int) -> int:
        return args.mixed_limit if ds == "mixed" and args.mixed_limit is not None else n

    evals = {ds: load_dataset(ds, data_dir, size(ds, args.limit), args.seed, "eval") for ds in datasets}
    calibs = {ds: load_dataset(ds, data_dir, size(ds, args.calib_limit), args.seed, "calib") for ds in datasets}
    args.out.mkdir(parents=True, exist_ok=True)
    cache = GenerationCache(args.cache_dir)
    results: dict[str, Any] = {}
    setup = argparse.Namespace(base_url=None, llm_gguf=str(args.llm_gguf or weights_path("qwen2.5-coder-1.5b")),
                               slm=None, llm_engine="llamacpp", torch_threads=args.threads, llm_model=args.llm_model)
    if args.slm_only:
        lines = ["| SLM | data set | n eval / calib | SLM alone F1 (EM) | abstains | gate AUROC (eval) |",
                 "|---|---|---:|---:|---:|---:|"]
        for name in names:
            harness = Harness(CANDIDATES[name](args.threads), None, HarnessConfig(llm_id="-"), cache=cache)
            cal = {ds: [_slm_only(harness, it) for it in calibs[ds]] for ds in datasets}
            ev = {ds: [_slm_only(harness, it) for it in evals[ds]] for ds in datasets}
            gate: Any = _fit_gate(name, [r for recs in cal.values() for r in recs], harness.slm, args.out)
            for ds in datasets:
                recs = [r for r in ev[ds] if not r.get("math")]
                gated = [(p, bool(r["slm"].get("correct"))) for r in recs if (p := _p_correct(gate, r)) is not None]
                au = auroc([p for p, _ in gated], [c for _, c in gated]) \
                    if gated and not isinstance(gate, _NeverKeep) else None
                n = max(1, len(recs))
                f1 = sum(r["slm"]["f1"] for r in recs) / n
                em = sum(r["slm"]["em"] for r in recs) / n
                abst = sum(r["slm"].get("abstained", False) for r in recs) / n
                lines.append(f"| {name} | {ds} | {len(recs)} / {len(cal[ds])} | {_pct(f1)} ({_pct(em)}) | "
                             f"{_pct(abst)} | {'n/a' if au is None else f'{au:.3f}'} |")
        print("\n".join(lines))
        return 0
    with ExitStack() as stack:
        llm = _LLMSetup(setup, stack, max(DEFAULT_MAX_NEW_TOKENS.values()))
        for name in names:
            slm = CANDIDATES[name](args.threads)
            before = _rss_mb()
            t0 = time.perf_counter()
            slm.load()
            load_s, rss = time.perf_counter() - t0, _rss_mb() - before
            harness = Harness(slm, llm.factory, HarnessConfig(llm_id=llm.llm_id, live_router=False), cache=cache)
            calib_recs: dict[str, list[dict]] = {}
            eval_recs: dict[str, list[dict]] = {}
            for ds in datasets:
                calib_recs[ds] = [_slm_only(harness, it) for it in calibs[ds]]
                eval_recs[ds] = harness.run(evals[ds], live=False, desc=f"{name} {ds}", progress=False)
                print(f"{time.strftime('%H:%M:%S')} {name} {ds}: {len(calib_recs[ds])} calib, "
                      f"{len(eval_recs[ds])} eval", flush=True)
            pooled = [r for recs in calib_recs.values() for r in recs]
            _, labels = record_examples(pooled, "gold")
            gate = _fit_gate(name, pooled, slm, args.out)
            results[name] = {"slm": slm.model_name, "load_s": load_s, "rss_mb": rss,
                             "calib_right": f"{sum(labels)}/{len(labels)}",
                             "datasets": evaluate(name, gate, calib_recs, eval_recs)}
            results[f"{name} (seed rule)"] = {**results[name],  # mean token probability, thresholds calibrated alike
                                              "datasets": evaluate(name, GatePolicy(), calib_recs, eval_recs)}
            shipped = shipped_gate_for(slm)
            if shipped is not None:  # the packaged default gate for these weights, fitted on other calibration labels
                results[f"{name} (shipped gate)"] = {**results[name],
                                                     "datasets": evaluate(name, shipped, calib_recs, eval_recs)}
            (args.out / "candidates.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(markdown(results))
    (args.out / "candidates.md").write_text(markdown(results) + "\n", encoding="utf-8")
    return 0


def _slm_only(harness: Harness, item: Any) -> dict:
    """A calibration record without the LLM (the gate and its threshold need the SLM's answers only)."""
    from langchain_slm_router.evaluation.scoring import score_answer

    math, math_ms = harness.run_math(item)
    if math is not None:  # the router never reaches the SLM here, and the gate never sees these: no SLM time spent
        return {"id": item.id, "dataset": item.dataset, "prompt": item.prompt, "math": math,
                "math_latency_ms": math_ms, "slm": {"text": "", "signals": None, "score": 0.0, "correct": False},
                "llm": None}
    slm = harness.run_slm(item)
    s = score_answer(item.dataset, slm.get("text", ""), item.answers, item.unanswerable)
    slm.update({"score": s.score, "correct": s.correct, "em": s.em, "f1": s.f1, "abstained": s.abstained}
               if slm.get("signals") else {"score": 0.0, "correct": False, "em": 0.0, "f1": 0.0})
    return {"id": item.id, "dataset": item.dataset, "prompt": item.prompt, "math": math, "math_latency_ms": math_ms,
            "slm": slm, "llm": None}


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def markdown(results: dict[str, Any]) -> str:
    lines = []
    for ds in next(iter(results.values()))["datasets"]:
        first = next(iter(results.values()))["datasets"][ds]
        llm = first["always_llm"]
        lines += [f"#### {ds}: {first['n']} evaluation questions (calibration {first['n_calib']}); always-LLM quality "
                  f"{_pct(llm['quality'])}, p50 {llm['p50_s']:.2f} s, total {llm['total_s']:.0f} s", "",
                  "| SLM | SLM alone (EM) | oracle local | gate AUROC | q @ own threshold (share) | q @ <=30% LLM (share) | "
                  "q @ <=50% LLM (share) | LLM calls avoided @ >=90% LLM q | p50 / p95 @30% (s) | total @30% vs LLM | "
                  "SLM RSS |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, res in results.items():
            r = res["datasets"][ds]
            o = r["oracle"]
            r30, r50, a90 = r["router@30"], r["router@50"], r["avoided_at_90"]
            au = "n/a" if r["auroc"] is None else f"{r['auroc']:.2f}"
            rd = r.get("router@default")
            own = "–" if rd is None else (f"{_pct(rd['quality'])} = {rd['pct_llm']:.0f}% ({_pct(rd['llm_share'])}) "
                                          f"at {rd['threshold']:g}")
            lines.append(
                f"| {name} | {_pct(r['always_slm']['quality'])} ({_pct(r['always_slm']['em'])}) | {_pct(1 - o['llm_share'])} at {o['pct_llm']:.0f}% "
                f"| {au} | {own} | {_pct(r30['quality'])} = {r30['pct_llm']:.0f}% ({_pct(r30['llm_share'])}) | "
                f"{_pct(r50['quality'])} = {r50['pct_llm']:.0f}% ({_pct(r50['llm_share'])}) | "
                f"{'none' if a90 is None else _pct(1 - a90['llm_share'])} | {r30['p50_s']:.2f} / {r30['p95_s']:.2f} | "
                f"{r30['total_s']:.0f} s = {llm['total_s'] / max(r30['total_s'], 1e-9):.2f}x faster | "
                f"{res['rss_mb']:.0f} MB |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
