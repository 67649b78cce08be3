"""Label evaluation questions with the benchmark LLM's answers: one scored JSONL record per question.

The LLM is the one ``slm-router eval`` uses without ``--base-url``: a GGUF on llama.cpp behind the project's
Ollama-protocol server, called through the real ``ChatOllama`` client, with the harness's answer lengths and
greedy decoding. Every reply goes through the harness's on-disk cache (same keys as ``slm-router eval
--llm-gguf ... --llm-model qwen2.5-coder:1.5b``), so a later eval or benchmark reuses the answers, and a rerun
only adds the questions not yet labelled.

Questions come from the evaluation splits only (``evaluation/datasets.py``: SQuAD 2.0 split by article, NQ-open's
evaluation half, and the mixed workload's GSM8K and math questions), in rounds of ``--round`` questions per data
set (GSM8K, whose answers are long, after ``--gsm8k-after``), so an interrupted run has a balanced prefix of each.

Output, one file per data set under ``--out`` (``squad_v2.jsonl``, ``nq_open.jsonl``, ``gsm8k.jsonl``,
``math.jsonl``): ``id``, ``dataset``, ``kind``, ``question``, ``answers``, ``unanswerable``, ``llm_id``,
``num_predict``, ``text`` (the LLM's answer), ``latency_ms``, ``input_tokens``, ``output_tokens``, ``score``,
``correct``, ``em``, ``f1``, ``abstained``.

Usage::

    nice -n 10 python benchmarks/label_llm.py --out /work/labels/llm --cache-dir /work/labels/llm/cache \\
        --squad 400 --nq 400 --mixed 100 --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from langchain_slm_router.cli import _LLMSetup
from langchain_slm_router.evaluation.cache import GenerationCache
from langchain_slm_router.evaluation.datasets import default_data_dir, load_dataset, mixed_counts
from langchain_slm_router.evaluation.harness import DEFAULT_MAX_NEW_TOKENS, Harness, HarnessConfig
from langchain_slm_router.evaluation.scoring import score_answer
from langchain_slm_router.llm_weights import DEFAULT_LLM, weights_path


def _done(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    with path.open(encoding="utf-8") as fh:
        return {json.loads(line)["id"] for line in fh if line.strip()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gguf", type=Path, default=None, help="LLM GGUF (default: the fetched 1.5B benchmark LLM)")
    p.add_argument("--llm-model", default="qwen2.5-coder:1.5b", help="model name at the in-process server")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--cache-dir", type=Path, default=Path(".slm_router_cache"))
    p.add_argument("--squad", type=int, default=400, help="SQuAD 2.0 evaluation questions")
    p.add_argument("--nq", type=int, default=400, help="NQ-open evaluation questions")
    p.add_argument("--mixed", type=int, default=100, help="mixed workload size (its GSM8K and math questions)")
    p.add_argument("--round", type=int, default=50, help="questions per data set per round")
    p.add_argument("--gsm8k-after", type=int, default=100,
                   help="label the GSM8K questions once this many SQuAD/NQ/math questions each are done")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    gguf = args.gguf or weights_path(DEFAULT_LLM)
    if not gguf.is_file():
        raise SystemExit(f"error: {gguf} not found; fetch it with `python benchmarks/fetch_llm_weights.py`")
    data_dir = args.data_dir or default_data_dir()
    counts = mixed_counts(args.mixed)
    wanted = {"squad_v2": max(args.squad, counts["squad_v2"]), "nq_open": max(args.nq, counts["nq_open"]),
              "gsm8k": counts["gsm8k"], "math": counts["math"]}
    items = {name: load_dataset(name, data_dir, n, args.seed, "eval") for name, n in wanted.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    setup_args = argparse.Namespace(base_url=None, llm_gguf=str(gguf), slm=None, llm_engine="llamacpp",
                                    torch_threads=args.threads, llm_model=args.llm_model)
    with ExitStack() as stack:
        llm = _LLMSetup(setup_args, stack, max(DEFAULT_MAX_NEW_TOKENS.values()))
        harness = Harness(None, llm.factory, HarnessConfig(llm_id=llm.llm_id, live_router=False),  # type: ignore[arg-type]
                          cache=GenerationCache(args.cache_dir))
        print(f"LLM: {llm.description}; cache {args.cache_dir}", flush=True)
        files = {name: args.out / f"{name}.jsonl" for name in items}
        done = {name: _done(path) for name, path in files.items()}
        # rounds of SQuAD, NQ-open and math; GSM8K (long answers, the slowest) after the first few rounds
        schedule: list[tuple[str, list]] = []
        longest = max(len(v) for v in items.values())
        for start in range(0, longest, args.round):
            for name in ("squad_v2", "nq_open", "math"):
                schedule.append((name, items[name][start : start + args.round]))
            if start + args.round == args.gsm8k_after:
                schedule.append(("gsm8k", items["gsm8k"]))
        if args.gsm8k_after >= longest:
            schedule.append(("gsm8k", items["gsm8k"]))
        t0, n_new = time.perf_counter(), 0
        for name, batch in schedule:
            for item in batch:
                if item.id in done[name]:
                    continue
                rec = harness.run_llm(item)
                s = score_answer(item.dataset, rec["text"], item.answers, item.unanswerable)
                row = {"id": item.id, "dataset": item.dataset, "kind": item.kind, "question": item.question,
                       "answers": item.answers, "unanswerable": item.unanswerable, "llm_id": llm.llm_id,
                       "num_predict": harness._tokens(item), "text": rec["text"],
                       "latency_ms": rec["latency_ms"], "input_tokens": rec.get("input_tokens"),
                       "output_tokens": rec.get("output_tokens"), "cached": rec["cached"], "score": s.score,
                       "correct": s.correct, "em": s.em, "f1": s.f1, "abstained": s.abstained}
                with files[name].open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                done[name].add(item.id)
                n_new += 1
                print(f"{time.strftime('%H:%M:%S')} {name} {len(done[name])}/{len(items[name])} "
                      f"{rec['latency_ms'] / 1000:.1f}s{' (cached)' if rec['cached'] else ''} "
                      f"correct={s.correct}", flush=True)
        print(f"done: {n_new} new answers in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
