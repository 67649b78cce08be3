"""SLM speed per weight format and engine, and agreement with float32, side by side in one run.

Usage::

    nice -n 5 python benchmarks/bench_slm_speed.py [--data-dir DIR] [--n 12] [--batch-n 16]
        [--max-new-tokens 32] [--dtypes float32,bfloat16,int8] [--threads 1,2] [--batch-sizes 1,4,8,16]
        [--multi-n 4] [--batch-threads 1] [--batch-dtypes float32,bfloat16,int8] [--no-llamacpp]

Loads the default SLM (SmolLM2-135M-Instruct, the shipped GGUF) as every ``LocalSLM`` weight format in
``--dtypes`` and, when llama-cpp-python is installed, as ``LlamaCppSLM`` (the GGUF's 4-bit weights on llama.cpp's
kernels), then prints Markdown tables:

1. single stream, per option and thread count: generated tokens/s over ``--n`` NQ-open questions answered one by
   one (greedy, ``--max-new-tokens``), median time to first token (a 1-token generation: prompt + first step),
   and the speed-up over float32 at the same thread count and questions (thread counts after the first use only
   the first ``--multi-n`` questions: on a loaded 2-core machine two threads can be ten times slower);
2. batched, per torch option in ``--batch-dtypes``: queries/s on the first ``--batch-n`` questions at each batch size, speed-up over
   batch 1 of the same option and over float32 at the same batch size;
3. agreement with float32 (1 thread) on the ``--n`` questions: identical answers, identical gate decisions under
   the seed rule (keep when the mean token probability >= 0.6), largest |mean prob| and |mean entropy| gaps, and
   the questions where the decision differs.

``uptime`` is printed before and after: on a shared machine the absolute numbers move with the load, the ratios
(measured in the same run) much less.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from langchain_slm_router.errors import DataUnavailableError  # noqa: E402
from langchain_slm_router.evaluation.datasets import default_data_dir, read_rows  # noqa: E402

GATE_RULE = 0.6  # the seed threshold rule: keep when mean token probability >= 0.6


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:  # pragma: no cover - no uptime binary
        return "uptime unavailable"


def make_slm(option: str, threads: int, max_new_tokens: int, adapter: str | None = "auto") -> Any:
    """The SLM for an option name: a LocalSLM weight format, or 'llamacpp' (``adapter`` as both take it)."""
    from langchain_slm_router.slm import LlamaCppSLM, LocalSLM

    if option == "llamacpp":
        return LlamaCppSLM(max_new_tokens=max_new_tokens, n_threads=threads, adapter=adapter)
    return LocalSLM(max_new_tokens=max_new_tokens, dtype=option, adapter=adapter)


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder holding nq_open_dev.jsonl (default: $SLM_ROUTER_DATA_DIR, else ../shared/data "
                             "when it exists, else NQ-open from the Hugging Face hub)")
    parser.add_argument("--n", type=int, default=12, help="questions for single stream and agreement")
    parser.add_argument("--batch-n", type=int, default=16, help="questions for the batched table")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--dtypes", default="float32,bfloat16,int8", help="LocalSLM weight formats (float32 first)")
    parser.add_argument("--threads", default="1,2", help="thread counts for the single-stream table")
    parser.add_argument("--batch-sizes", default="1,4,8,16")
    parser.add_argument("--multi-n", type=int, default=4,
                        help="questions for the thread counts after the first (they can be slow on a busy machine)")
    parser.add_argument("--batch-threads", type=int, default=1, help="threads for the batched table")
    parser.add_argument("--batch-dtypes", default=None, help="weight formats for the batched table (default: --dtypes)")
    parser.add_argument("--no-llamacpp", action="store_true", help="skip LlamaCppSLM even when installed")
    parser.add_argument("--adapter", default="auto",
                        help="the SLM's adapter for every option: auto (the default SLM's, NanoQA), none (the stock "
                             "model), nanoqa, or a folder")
    args = parser.parse_args(argv)
    args.adapter = None if args.adapter == "none" else args.adapter

    try:
        rows = read_rows("nq_open", args.data_dir or default_data_dir())[: max(args.n, args.batch_n)]
    except DataUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from tqdm.auto import tqdm

    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if dtypes[0] != "float32":
        dtypes.insert(0, "float32")
    options = list(dtypes)
    if not args.no_llamacpp and importlib.util.find_spec("llama_cpp") is not None:
        options.append("llamacpp")
    threads = [int(t) for t in args.threads.split(",")]
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    convs = [[{"role": "user", "content": r["question"].rstrip("?") + "?"}] for r in rows]
    single, batch_convs = convs[: args.n], convs[: args.batch_n]

    name = make_slm("float32", 1, 1, args.adapter).model_name
    print(f"# SLM speed: {name}, {len(single)} NQ-open questions one by one, "
          f"max_new_tokens={args.max_new_tokens}, greedy")
    print(f"load before: {uptime()}\n")

    # ---------------------------------------------------------------- single stream
    results: dict[tuple[str, int], dict[str, Any]] = {}
    load_s: dict[str, float] = {}
    for option in options:
        for n_threads in threads:
            set_threads(n_threads)
            slm = make_slm(option, n_threads, args.max_new_tokens, args.adapter)
            t0 = time.perf_counter()
            slm.load()
            load_s.setdefault(option, time.perf_counter() - t0)
            slm.generate(single[0])  # warm-up
            first = slm.model_copy(update={"max_new_tokens": 1})
            questions = single if n_threads == threads[0] else single[: args.multi_n]
            ttft = []
            for conv in questions[: min(6, len(questions))]:
                t = time.perf_counter()
                first.generate(conv)
                ttft.append(time.perf_counter() - t)
            gens, start = [], time.perf_counter()
            for conv in tqdm(questions, desc=f"{option} x{n_threads}", leave=False, file=sys.stderr):
                gens.append(slm.generate(conv))
            wall = time.perf_counter() - start
            tokens = sum(g.output_tokens for g in gens)
            results[(option, n_threads)] = {"tok_s": tokens / wall, "ttft_ms": statistics.median(ttft) * 1000,
                                            "q_s": len(questions) / wall, "gens": gens, "tokens": tokens,
                                            "n": len(questions)}

    print("## Single stream (one query at a time)\n")
    print("| option | threads | questions | load s | generated tokens | tok/s | vs float32 | "
          "time to first token ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for option in options:
        for n_threads in threads:
            r, ref = results[(option, n_threads)], results[("float32", n_threads)]
            print(f"| {option} | {n_threads} | {r['n']} | {load_s[option]:.1f} | {r['tokens']} | {r['tok_s']:.1f} | "
                  f"{r['tok_s'] / ref['tok_s']:.2f}x | {r['ttft_ms']:.0f} |")

    # ---------------------------------------------------------------- batched
    set_threads(args.batch_threads)
    batch_dtypes = [d.strip() for d in (args.batch_dtypes or args.dtypes).split(",") if d.strip()]
    if batch_dtypes[0] != "float32":
        batch_dtypes.insert(0, "float32")
    batched: dict[tuple[str, int], float] = {}
    for option in batch_dtypes:
        base = make_slm(option, args.batch_threads, args.max_new_tokens, args.adapter)
        for size in tqdm(sizes, desc=f"{option} batched", leave=False, file=sys.stderr):
            slm = base.model_copy(update={"max_batch_size": size})
            start = time.perf_counter()
            if size == 1:
                for conv in batch_convs:
                    slm.generate(conv)
            else:
                slm.generate_batch(batch_convs)
            batched[(option, size)] = len(batch_convs) / (time.perf_counter() - start)
    print(f"\n## Batched ({len(batch_convs)} questions, {args.batch_threads} thread(s), torch options)\n")
    print("| option | batch size | queries/s | vs batch 1 | vs float32 at this batch size |")
    print("|---|---:|---:|---:|---:|")
    for option in batch_dtypes:
        for size in sizes:
            q = batched[(option, size)]
            print(f"| {option} | {size} | {q:.2f} | {q / batched[(option, sizes[0])]:.2f}x | "
                  f"{q / batched[('float32', size)]:.2f}x |")

    # ---------------------------------------------------------------- agreement
    t_ref = threads[0]
    ref_gens = results[("float32", t_ref)]["gens"]
    print(f"\n## Agreement with float32 ({len(single)} questions, {t_ref} thread(s); gate: mean prob >= "
          f"{GATE_RULE})\n")
    print("| option | identical answers | identical gate decisions | max abs mean-prob gap | "
          "max abs mean-entropy gap | decisions that differ |")
    print("|---|---:|---:|---:|---:|---|")
    for option in options:
        gens = results[(option, t_ref)]["gens"]
        same_text = sum(g.text == r.text for g, r in zip(gens, ref_gens))
        keep = [(g.signals.mean_prob >= GATE_RULE, r.signals.mean_prob >= GATE_RULE) for g, r in zip(gens, ref_gens)]
        same_gate = sum(a == b for a, b in keep)
        dp = max(abs(g.signals.mean_prob - r.signals.mean_prob) for g, r in zip(gens, ref_gens))
        dh = max(abs(g.signals.mean_entropy - r.signals.mean_entropy) for g, r in zip(gens, ref_gens))
        differ = [f"q{i} ({r.signals.mean_prob:.2f} -> {g.signals.mean_prob:.2f})"
                  for i, (g, r, (a, b)) in enumerate(zip(gens, ref_gens, keep)) if a != b]
        print(f"| {option} | {same_text}/{len(single)} ({100 * same_text / len(single):.0f}%) | "
              f"{same_gate}/{len(single)} ({100 * same_gate / len(single):.0f}%) | {dp:.3f} | {dh:.3f} | "
              f"{', '.join(differ) or '-'} |")
    print(f"\nload after: {uptime()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
