"""``slm-router``: the command line of langchain-slm-router.

Subcommands:

* ``slm-router eval``: run always-SLM, always-LLM, the router at the seed and at a calibrated threshold, the
  oracle (and the live router) on the evaluation data; print Markdown tables, write ``results.json`` (every
  per-question record), ``report.md`` and one ``quality_vs_llm_<dataset>.png`` per data set under ``--out``.
* ``slm-router serve``: the router behind the OpenAI and Ollama HTTP protocols (:mod:`langchain_slm_router.server`).
* ``slm-router train``: fine-tune the SLM for short-answer QA (NanoQA, :mod:`langchain_slm_router.training`).
* ``slm-router calibrate``: choose the gate threshold meeting ``--target-llm-share`` or ``--target-quality`` on
  the calibration split and report its result on the held-out evaluation split (``calibration.json``).

The LLM is a real Ollama server (``--base-url http://localhost:11434 --llm-model mistral``) or, without
``--base-url``, the project's :class:`~langchain_slm_router.testing.OllamaProtocolServer` started in-process and
backed by a local model (``--llm-gguf``, default: the SLM's own weights), so the measured path is the real
``ChatOllama`` HTTP client in both cases. Model outputs are cached under ``--cache-dir``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from langchain_slm_router.errors import ConfigError, SLMRouterError

DEFAULT_DATASETS = ("squad_v2", "nq_open", "gsm8k", "math", "mixed")


def _limits(values: Sequence[str] | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in values or []:
        for part in value.split(","):
            name, sep, num = part.partition("=")
            if not sep or not num.strip().isdigit():
                raise ConfigError(f"expected DATASET=N (e.g. gsm8k=12), got {part!r}")
            out[name.strip()] = int(num)
    return out


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=None,
                   help="folder with the JSONL data sets (default: $SLM_ROUTER_DATA_DIR, else ../shared/data when "
                        "it exists, else the public sets from the Hugging Face hub and the generated math set)")
    p.add_argument("--datasets", default=",".join(DEFAULT_DATASETS),
                   help="comma-separated: squad_v2,nq_open,gsm8k,math,mixed (default: all)")
    p.add_argument("--limit", type=int, default=50, help="questions per data set, evaluation split (default 50)")
    p.add_argument("--dataset-limit", action="append", metavar="NAME=N",
                   help="per-data-set override of --limit, e.g. gsm8k=12 (repeatable)")
    p.add_argument("--calib-limit", type=int, default=None,
                   help="questions per data set, calibration split (default: --limit)")
    p.add_argument("--calib-dataset-limit", action="append", metavar="NAME=N",
                   help="per-data-set override of --calib-limit (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--threshold", type=float, default=None,
                   help="seed gate threshold on mean token probability (default: GatePolicy's, 0.6)")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--target-llm-share", type=float, default=None,
                        help="calibrate for at most this fraction of LLM calls (default 0.3 when no target given)")
    target.add_argument("--target-quality", type=float, default=None,
                        help="calibrate for at least this fraction of always-LLM quality, e.g. 0.95")
    p.add_argument("--llm-model", default=None,
                   help="LLM name at the Ollama server (default: mistral with --base-url, else the local model)")
    p.add_argument("--base-url", default=None,
                   help="a running Ollama server, e.g. http://localhost:11434; without it an in-process "
                        "Ollama-protocol server backed by --llm-gguf is started")
    p.add_argument("--llm-gguf", default=None,
                   help="local LLM weights for the in-process server (a .gguf path; default: the SLM's)")
    p.add_argument("--slm", default=None,
                   help="SLM weights: a .gguf path, or a transformers model (default: the shipped "
                        "SmolLM2-135M-Instruct)")
    p.add_argument("--slm-engine", choices=("local", "llamacpp"), default="local",
                   help="engine of the SLM: local (transformers, SLMRouter's default) or llamacpp (llama.cpp; "
                        "--slm must then be a .gguf or empty)")
    p.add_argument("--llm-engine", choices=("auto", "local", "llamacpp"), default="auto",
                   help="engine of the in-process LLM: llamacpp, local (transformers), or auto (llama.cpp when "
                        "installed and --llm-gguf is a GGUF)")
    p.add_argument("--adapter", default="default",
                   help="SLM adapter: 'default' (LocalSLM's), 'none' (stock model), 'nanoqa', or a folder")
    p.add_argument("--max-new-tokens", action="append", metavar="NAME=N",
                   help="answer length per data set for both models (defaults squad_v2=24,nq_open=24,math=32,"
                        "gsm8k=128)")
    p.add_argument("--out", type=Path, default=Path("bench_out"), help="output folder (default bench_out/)")
    p.add_argument("--cache-dir", type=Path, default=None, help="generation cache (default .slm_router_cache/)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the generation cache")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--threads", "--torch-threads", dest="torch_threads", type=int, default=None,
                   help="CPU threads of both in-process models (torch intra-op threads; llama.cpp's n_threads, "
                        "default 1); 1 is much faster on a small machine whose cores are busy with other work")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slm-router", description="langchain-slm-router evaluation tools")
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("eval", help="compare always-SLM, always-LLM, the router and the oracle on real data")
    _add_common(ev)
    ev.add_argument("--calibrated-threshold", type=float, default=None,
                    help="use this threshold as the calibrated one (skips the calibration split)")
    ev.add_argument("--live-router", default="all",
                    help="data sets on which SLMRouter.route() is also run for real and timed: all, none, or a "
                         "comma-separated list (default all)")
    cal = sub.add_parser("calibrate", help="choose the gate threshold for a target and check it on held-out data")
    _add_common(cal)
    from langchain_slm_router.server.cli import add_serve_command, add_stats_command

    add_serve_command(sub)
    add_stats_command(sub)
    from langchain_slm_router.gates import training as gate_training

    tg = sub.add_parser("train-gate", help="fit a learned, calibrated gate from eval records or logged traffic")
    gate_training.build_parser(tg).set_defaults(handler=gate_training.run)
    from langchain_slm_router.training.cli import add_train_command

    add_train_command(sub)
    return parser


def local_backend(engine: str, weights: str | None, threads: int | None, **options: Any) -> Any:
    """An in-process model: ``weights`` is a .gguf path or a transformers model (``None``: the shipped SmolLM2);
    ``engine`` is ``local`` (transformers), ``llamacpp``, or ``auto`` (llama.cpp when installed and the weights
    are a GGUF)."""
    import importlib.util

    from langchain_slm_router.slm import make_backend

    if engine == "auto":
        gguf = weights is None or str(weights).endswith(".gguf")
        engine = "llamacpp" if gguf and importlib.util.find_spec("llama_cpp") is not None else "local"
    if engine == "llamacpp":
        if "max_input_tokens" in options and "max_new_tokens" in options:
            options["n_ctx"] = options["max_input_tokens"] + options["max_new_tokens"]
        return make_backend("llamacpp", model_path=weights, **({"n_threads": threads} if threads else {}),
                            **options)
    return make_backend("local", model=weights, **options)


class _LLMSetup:
    """The LLM client factory, starting the in-process Ollama-protocol server when no --base-url is given."""

    def __init__(self, args: argparse.Namespace, stack: ExitStack, max_tokens: int) -> None:
        from langchain_slm_router.fallback import default_fallback

        self.local = args.base_url is None
        if self.local:
            from langchain_slm_router.engine_server import OllamaProtocolServer

            weights = args.llm_gguf or args.slm
            backing = local_backend(args.llm_engine, weights, args.torch_threads, max_new_tokens=max_tokens,
                                    max_input_tokens=3072)
            self.model = args.llm_model or (Path(weights).stem if weights else "smollm2")
            t0 = time.perf_counter()
            backing.load()
            self.load_s = time.perf_counter() - t0
            server = stack.enter_context(OllamaProtocolServer({self.model: backing}))
            self.base_url = server.base_url
            self.llm_id = f"local:{backing.model_name}"
            self.description = (f"{backing.model_name} served in-process by OllamaProtocolServer at {self.base_url} "
                                f"(real ChatOllama client; load {self.load_s:.1f}s)")
        else:
            self.model = args.llm_model or "mistral"
            self.base_url = args.base_url
            self.llm_id = f"ollama:{self.model}@{args.base_url}"
            self.description = f"Ollama model {self.model} at {args.base_url}"
        self._default_fallback = default_fallback

    def factory(self, num_predict: int) -> Any:
        return self._default_fallback(self.model, self.base_url, timeout=600.0, num_predict=num_predict,
                                      temperature=0)


def _speed(records: Sequence[dict[str, Any]], part: str) -> float | None:
    rows = [r[part] for r in records if (r.get(part) or {}).get("output_tokens") and r[part].get("latency_ms")]
    if not rows:
        return None
    return sum(x["output_tokens"] for x in rows) / (sum(x["latency_ms"] for x in rows) / 1000.0)


def run(args: argparse.Namespace) -> int:
    from langchain_slm_router.evaluation.cache import DEFAULT_CACHE_DIR, GenerationCache
    from langchain_slm_router.evaluation.calibration import CalibrationTarget
    from langchain_slm_router.evaluation.datasets import DATA_DIR_ENV, DATASET_NAMES, default_data_dir, load_dataset
    from langchain_slm_router.evaluation.harness import DEFAULT_MAX_NEW_TOKENS, Harness, HarnessConfig
    from langchain_slm_router.evaluation.report import calibration_text, markdown, plot, write_json
    from langchain_slm_router.evaluation.summary import summarize_dataset
    from langchain_slm_router.gates import DEFAULT_THRESHOLD

    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = [d for d in datasets if d not in DATASET_NAMES]
    if unknown:
        raise ConfigError(f"unknown data set(s) {unknown}; choose from {', '.join(DATASET_NAMES)}")
    data_dir = args.data_dir or default_data_dir()
    if data_dir is not None and not data_dir.is_dir():
        raise ConfigError(f"data folder {data_dir} not found; pass --data-dir (or {DATA_DIR_ENV}) a folder "
                         "holding the JSONL files, or neither to load the public sets from the Hugging Face hub")
    limits, calib_limits = _limits(args.dataset_limit), _limits(args.calib_dataset_limit)
    tokens = {**DEFAULT_MAX_NEW_TOKENS, **_limits(args.max_new_tokens)}
    seed_t = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    target = CalibrationTarget(max_llm_share=args.target_llm_share, min_quality_ratio=args.target_quality) \
        if (args.target_llm_share is not None or args.target_quality is not None) \
        else CalibrationTarget(max_llm_share=0.3)
    given = getattr(args, "calibrated_threshold", None)
    live_opt = getattr(args, "live_router", "none") if args.command == "eval" else "none"
    live_sets = set(datasets) if live_opt == "all" else set() if live_opt == "none" else \
        {d.strip() for d in live_opt.split(",")}
    cache = GenerationCache(args.cache_dir or Path(DEFAULT_CACHE_DIR), enabled=not args.no_cache)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    # All data first: a missing data set is a clear message before any model loads.
    items: dict[str, tuple[list[Any], list[Any]]] = {}
    for name in datasets:
        eval_items = load_dataset(name, data_dir, limits.get(name, args.limit), args.seed, "eval")
        calib_n = calib_limits.get(name, args.calib_limit if args.calib_limit is not None else
                                   limits.get(name, args.limit))
        items[name] = (eval_items, load_dataset(name, data_dir, calib_n, args.seed, "calib") if given is None
                       else [])
    with ExitStack() as stack:
        adapter = {} if args.adapter == "default" else {"adapter": None if args.adapter == "none" else args.adapter}
        slm = local_backend(args.slm_engine, args.slm, args.torch_threads, **adapter)
        t0 = time.perf_counter()
        slm.load()
        slm_load_s = time.perf_counter() - t0
        llm = _LLMSetup(args, stack, max(tokens.values()))
        harness = Harness(slm, llm.factory, HarnessConfig(llm_id=llm.llm_id, max_new_tokens=tokens,
                                                          seed_threshold=seed_t), cache=cache)
        meta: dict[str, Any] = {
            "command": "slm-router " + " ".join(getattr(args, "argv", [])),
            "slm": slm.model_name, "llm": llm.description, "llm_id": llm.llm_id, "seed": args.seed,
            "seed_threshold": seed_t, "target": target.model_dump(), "max_new_tokens": tokens,
            "data_dir": str(data_dir) if data_dir is not None else "Hugging Face hub (datasets) + generated math set", "slm_load_s": round(slm_load_s, 2), "torch_threads": args.torch_threads,
        }
        print(f"SLM: {slm.model_name} (load {slm_load_s:.1f}s); LLM: {llm.description}", file=sys.stderr)
        summaries = []
        all_records: dict[str, dict[str, list[dict]]] = {}
        for name in datasets:
            eval_items, calib_items = items[name]
            progress = not args.no_progress
            eval_recs = harness.run(eval_items, live=name in live_sets, desc=f"{name} eval", progress=progress)
            calib_recs = harness.run(calib_items, live=False, desc=f"{name} calib", progress=progress)
            all_records[name] = {"eval": eval_recs, "calib": calib_recs}
            summary = summarize_dataset(name, eval_recs, seed_t, calib_recs or None, target, threshold=given)
            summaries.append(summary)
            every = [r for recs in all_records.values() for split in recs.values() for r in split]
            meta.update(slm_tokens_per_s=_speed(every, "slm"), llm_tokens_per_s=_speed(every, "llm"),
                        cache_hits=cache.hits, cache_misses=cache.misses)
            if args.command == "eval":
                print(markdown([summary]), flush=True)
                plot(summary, out / f"quality_vs_llm_{name}.png")
            else:
                print(calibration_text(summary), flush=True)
            write_json(out / ("results.json" if args.command == "eval" else "calibration.json"), summaries,
                       all_records, meta)
        header = (f"SLM {slm.model_name} ({_fmt_speed(meta['slm_tokens_per_s'])}); LLM {llm.description} "
                  f"({_fmt_speed(meta['llm_tokens_per_s'])}); seed {args.seed}; seed threshold {seed_t:g}; "
                  f"calibration target: {target.describe()}.\n")
        (out / ("report.md" if args.command == "eval" else "calibration.md")).write_text(
            header + "\n" + (markdown(summaries) if args.command == "eval" else
                             "\n\n".join(calibration_text(s) for s in summaries)) + "\n", encoding="utf-8")
        print(header, file=sys.stderr)
    return 0


def _fmt_speed(tps: float | None) -> str:
    return "speed n/a" if tps is None else f"{tps:.1f} tokens/s measured"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``slm-router`` script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return getattr(args, "handler", run)(args)
    except KeyboardInterrupt:
        print("interrupted; cached generations are kept", file=sys.stderr)
        return 130
    except (SLMRouterError, OSError, ValueError) as exc:
        print(error_line(exc), file=sys.stderr)
        return 2


HINTS: dict[type[BaseException], str] = {
    FileNotFoundError: "check the path",
    PermissionError: "check the file's permissions",
    IsADirectoryError: "pass a file, not a folder",
}
"""What to do, for errors whose own message cannot say it (the library's typed errors say it themselves)."""


def error_line(exc: BaseException) -> str:
    """The one line the command line prints for an error: its kind, its message, and what to do."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    hint = next((h for cls, h in HINTS.items() if isinstance(exc, cls)), None)
    kind = type(exc).__name__
    return f"error: {kind}: {message}" + (f" ({hint})" if hint else "")


if __name__ == "__main__":
    raise SystemExit(main())
