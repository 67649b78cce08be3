"""Label the default SLM's answers with gold correctness, token-probability features and hidden-state vectors.

For each question of the chosen data sets and splits the script runs the SLM the router uses by default
(``LocalSLM()``: float32, the shipped adapter; the harness's answer length per data set), scores the answer with
the project's scoring (:func:`~langchain_slm_router.evaluation.scoring.score_answer`) and stores:

* ``<out>/<dataset>.<split>.jsonl``: one JSON line per question (id, prompt, answer, correct / score / F1, the
  token probabilities and entropies, the gate features, the SLM's seconds, and where its vectors are);
* ``<out>/<dataset>.<split>.<shard>.safetensors``: the hidden-state vectors of a shard of questions, one
  ``(rows, hidden)`` float32 tensor per name (``answer_mean@L15`` ...), in the order of the shard's JSON lines.

No pickle: JSON and safetensors only. The run is resumable (questions already in the JSONL file are skipped) and
a plan is a list of ``dataset:split:limit`` jobs run in order, so the evaluation splits can go first::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/label_signals.py --out /work/labels/signals \\
        --plan squad_v2:eval:400 nq_open:eval:400 squad_v2:calib:800 nq_open:calib:800

``limit`` takes the first questions of the seeded split (the evaluation harness's order), so a longer run extends
a shorter one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_LAYERS = "3,6,9,12,15,18,21,24,27,30"
DEFAULT_PLAN = ("squad_v2:eval:400", "nq_open:eval:400", "gsm8k:eval:100", "squad_v2:calib:700",
                "nq_open:calib:700", "gsm8k:calib:150", "squad_v2:eval:700", "nq_open:eval:700",
                "squad_v2:calib:1300", "nq_open:calib:1300")


def parse_job(text: str) -> tuple[str, str, int | None]:
    parts = text.split(":")
    if len(parts) not in (2, 3) or parts[1] not in ("eval", "calib"):
        raise argparse.ArgumentTypeError(f"a job is dataset:split[:limit] with split eval or calib, not {text!r}")
    return parts[0], parts[1], int(parts[2]) if len(parts) == 3 and parts[2] else None


def done_ids(path: Path) -> tuple[set[str], int]:
    """Ids already labelled in a JSONL file, and the next shard number."""
    ids: set[str] = set()
    shard = -1
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                ids.add(row["id"])
                shard = max(shard, int(row["shard"]))
    return ids, shard + 1


def label_batch(slm: Any, items: list[Any], max_new_tokens: int) -> list[dict[str, Any]]:
    """Generate, score and featurise a batch of items with one padded generate call."""
    from langchain_slm_router.evaluation.scoring import score_answer
    from langchain_slm_router.gates.features import generation_features

    convs = [[{"role": "user", "content": it.prompt}] for it in items]
    started = time.perf_counter()
    gens = slm.model_copy(update={"max_new_tokens": max_new_tokens}).generate_batch(convs)
    seconds = (time.perf_counter() - started) / len(items)
    rows = []
    for it, conv, gen in zip(items, convs, gens):
        row: dict[str, Any] = {"id": it.id, "dataset": it.dataset, "kind": it.kind, "question": it.question,
                               "prompt": it.prompt, "answers": it.answers, "unanswerable": it.unanswerable,
                               "slm_seconds": round(seconds, 4)}
        if isinstance(gen, Exception):
            row.update(error=f"{type(gen).__name__}: {gen}", text="", correct=False, score=0.0, hidden=None)
        else:
            score = score_answer(it.dataset, gen.text, it.answers, it.unanswerable)
            row.update(text=gen.text, correct=score.correct, score=score.score, f1=score.f1, em=score.em,
                       abstained=score.abstained, finished=gen.finished, input_tokens=gen.input_tokens,
                       output_tokens=gen.output_tokens, token_ids=gen.token_ids,
                       token_probs=[round(p, 6) for p in gen.token_probs],
                       token_entropies=[round(h, 5) for h in gen.token_entropies],
                       features=generation_features(gen, conv), hidden=gen.hidden)
        rows.append(row)
    return rows


def write_shard(out: Path, stem: str, shard: int, rows: list[dict[str, Any]]) -> None:
    """Write the shard's vectors (safetensors), then append its JSON lines (so a crash never leaves ids
    without vectors)."""
    import numpy as np
    from safetensors.numpy import save_file

    names = sorted({k for r in rows if r.get("hidden") for k in r["hidden"]})
    tensors = {}
    for name in names:
        width = len(next(r["hidden"][name] for r in rows if r.get("hidden")))
        tensors[name] = np.asarray([r["hidden"][name] if r.get("hidden") else [0.0] * width for r in rows],
                                   dtype=np.float32)
    path = out / f"{stem}.{shard:04d}.safetensors"
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"ids": json.dumps([r["id"] for r in rows])})
    tmp.replace(path)
    with (out / f"{stem}.jsonl").open("a", encoding="utf-8") as fh:
        for i, r in enumerate(rows):
            r = {k: v for k, v in r.items() if k != "hidden"}
            r.update(shard=shard, row=i, has_hidden=bool(names))
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="folder of the JSONL data sets (default: ../shared/data)")
    parser.add_argument("--out", default="/work/labels/signals", help="where labels and vectors go")
    parser.add_argument("--plan", nargs="+", type=parse_job, default=[parse_job(j) for j in DEFAULT_PLAN],
                        help="dataset:split[:limit] jobs, run in order")
    parser.add_argument("--limit", type=int, default=None, help="cap every job at this many questions")
    parser.add_argument("--split", choices=["eval", "calib"], default=None, help="only the jobs of this split")
    parser.add_argument("--layers", default=DEFAULT_LAYERS, help="decoder layers to keep (1-based; 0 = last)")
    parser.add_argument("--batch-size", type=int, default=4, help="questions per padded generate call")
    parser.add_argument("--shard-size", type=int, default=32, help="questions per safetensors file")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch
    from tqdm import tqdm

    from langchain_slm_router.evaluation.datasets import default_data_dir, load_dataset
    from langchain_slm_router.evaluation.harness import DEFAULT_MAX_NEW_TOKENS
    from langchain_slm_router.slm import LocalSLM

    torch.set_num_threads(args.threads)
    data_dir = args.data_dir or default_data_dir()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    layers = [int(x) for x in args.layers.split(",") if x.strip()]
    slm = LocalSLM(hidden_layers=layers, max_batch_size=args.batch_size)
    slm.load()
    (out / "slm.json").write_text(json.dumps({"model": slm.model_name, "settings": slm.model_dump(mode="json")},
                                             indent=1), encoding="utf-8")
    for dataset, split, limit in args.plan:
        if args.split and split != args.split:
            continue
        if args.limit is not None:
            limit = min(limit or args.limit, args.limit)
        items = load_dataset(dataset, data_dir, limit=limit, seed=args.seed, split=split)  # type: ignore[arg-type]
        stem = f"{dataset}.{split}"
        seen, shard = done_ids(out / f"{stem}.jsonl")
        todo = [it for it in items if it.id not in seen]
        if not todo:
            print(f"{stem}: {len(items)} questions already labelled", flush=True)
            continue
        tokens = DEFAULT_MAX_NEW_TOKENS.get(dataset, 64)
        bar = tqdm(total=len(items), initial=len(items) - len(todo), desc=stem, unit="q", file=sys.stdout,
                   mininterval=10, dynamic_ncols=False, ncols=100)
        right = 0
        for start in range(0, len(todo), args.shard_size):
            chunk = todo[start : start + args.shard_size]
            # similar lengths per padded batch: less padding, and the batch answers match one-at-a-time ones
            ordered = sorted(chunk, key=lambda it: len(it.prompt))
            rows: list[dict[str, Any]] = []
            for b in range(0, len(ordered), args.batch_size):
                rows += label_batch(slm, ordered[b : b + args.batch_size], tokens)
                bar.update(len(ordered[b : b + args.batch_size]))
            write_shard(out, stem, shard, rows)
            shard += 1
            right += sum(bool(r["correct"]) for r in rows)
            bar.set_postfix_str(f"right {right}/{start + len(chunk)}")
        bar.close()
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
