"""Build the cache benchmark's paraphrase set: ``benchmarks/data/cache_paraphrases.jsonl``.

For each base question (SQuAD 2.0 dev answerable questions, one per paragraph, and NQ-open dev questions, from
``../shared/data``) the file holds:

* ``paraphrase`` rows of two origins, told apart by their ``by`` field:

  - ``by: "rule"``: rephrasings by fixed templates (the question word swapped for an equivalent one, "which" for
    "what", a polite or a terse wrapper), for every base question: the clearly-labelled fallback the issue allows,
    because the LLM is too slow on the shared 2-core machine to rephrase them all in the time there was;
  - ``by: "qwen2.5-coder-1.5b..."``: rephrasings written by the local LLM (Qwen2.5-Coder-1.5B-Instruct, Q4_K_M
    GGUF from ``benchmarks/fetch_llm_weights.py``, greedy, on llama.cpp through the project's ``LlamaCppSLM``) for
    as many base questions as ``--max-seconds`` allowed (the first ones, SQuAD and NQ alternating);

  both filtered so that they differ from the base question and keep its numbers and polarity;
* hard negatives: ``other_question`` (another answerable question on the same SQuAD paragraph, referenced by its
  id), ``number_changed`` (the first number changed) and ``negation`` ("not" after the first auxiliary verb), the
  last two written by rule.

Only ids and the generated text are stored; base questions and paragraphs are read from ``../shared/data`` when
the benchmark runs (the data's licences ask that it is not copied into the repository). The first run writes the
rule rows of every base question; the LLM rows are appended and resume where the last run stopped
(``--max-seconds`` bounds one run; ``--llm-bases 0`` skips the LLM).

Usage::

    python benchmarks/fetch_llm_weights.py
    OMP_NUM_THREADS=1 python benchmarks/make_cache_paraphrases.py --squad 200 --nq 200 --threads 1 \
        --max-seconds 2400
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

from langchain_slm_router.cache.key import normalize_question, question_guard
from langchain_slm_router.evaluation.datasets import default_data_dir

OUT = Path("benchmarks/data/cache_paraphrases.jsonl")
GGUF = Path(".slm_router_cache/models/qwen2.5-coder-1.5b-instruct.gguf")
GENERATOR = "qwen2.5-coder-1.5b-instruct-q4_k_m (llama.cpp, greedy)"
PROMPT = ("Rewrite the question below in three different ways. Each rewrite must ask for exactly the same "
          "information, keep every name and number, and use different words or word order. Write one rewrite per "
          "line, with no numbering and nothing else.\n\nQuestion: {q}")
_AUX = re.compile(r"\b(is|was|are|were|did|does|do|can|could|has|have|had|will|would|should)\b", re.I)
_NUM = re.compile(r"\d+")
_LIST = re.compile(r"^\s*(?:[-*•]|\d+[.)]|rewrite\s*\d*:?)\s*", re.I)


def squad_bases(data_dir: Path, n: int, seed: int) -> list[dict]:
    """One answerable question per paragraph (with at least three), the paragraph's others as negatives."""
    by_context: dict[str, list[dict]] = {}
    for line in (data_dir / "squad_v2_dev.jsonl").open(encoding="utf-8"):
        row = json.loads(line)
        if not row.get("is_impossible") and row.get("answers"):
            by_context.setdefault(row["context"], []).append(row)
    groups = [rows for rows in by_context.values() if len(rows) >= 3]
    random.Random(seed).shuffle(groups)
    return [{"source": "squad", "id": rows[0]["id"], "question": rows[0]["question"],
             "others": [r["id"] for r in rows[1:3]]} for rows in groups[:n]]


def nq_bases(data_dir: Path, n: int, seed: int) -> list[dict]:
    rows = [json.loads(line) for line in (data_dir / "nq_open_dev.jsonl").open(encoding="utf-8")]
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    return [{"source": "nq", "id": f"nq-dev-{i}", "question": rows[i]["question"], "others": []} for i in order[:n]]


def parse_rewrites(text: str, question: str) -> list[str]:
    """The usable rewrites in the LLM's answer: new wording, same numbers, same polarity, no duplicates."""
    guard = question_guard(question)
    seen = {normalize_question(question)}
    out = []
    for line in text.splitlines():
        line = _LIST.sub("", line).strip().strip('"').strip()
        if len(line.split()) < 3 or len(line) > 300:
            continue
        norm = normalize_question(line)
        if norm in seen or question_guard(line) != guard:
            continue
        seen.add(norm)
        out.append(line)
    return out[:3]


_SWAPS = [
    (re.compile(r"^when (was|were|did|does|do|is|are)\b", re.I), r"In what year \1"),
    (re.compile(r"^who (was|were|is|are)\b", re.I), r"Which person \1"),
    (re.compile(r"^who\b", re.I), "Which person"),
    (re.compile(r"^where (was|were|did|does|do|is|are)\b", re.I), r"In what place \1"),
    (re.compile(r"^how many\b", re.I), "What number of"),
    (re.compile(r"^what\b", re.I), "Which"),
    (re.compile(r"^which\b", re.I), "What"),
]


def rule_paraphrases(question: str) -> list[str]:
    """Template rephrasings: the question word swapped for an equivalent, a polite and a terse wrapper."""
    q = question.strip()
    body = q[0].lower() + q[1:] if q[:2] != q[:2].upper() else q
    out = []
    for pattern, repl in _SWAPS:
        if pattern.search(q):
            out.append(pattern.sub(repl, q, count=1))
            break
    out.append(f"Could you tell me {body.rstrip('?')}?")
    out.append(f"Quick question: {body.rstrip('?')}")
    return parse_rewrites("\n".join(out), question)


def number_changed(question: str) -> str | None:
    match = _NUM.search(question)
    if match is None:
        return None
    return question[:match.start()] + str(int(match.group()) + 1) + question[match.end():]


def negation(question: str) -> str | None:
    if question_guard(question)[1]:
        return None
    match = _AUX.search(question)
    if match is None:
        return None
    return question[:match.end()] + " not" + question[match.end():]


def rule_rows(base: dict) -> list[dict]:
    """The base row, its rule paraphrases and its hard negatives."""
    group = f"{base['source']}:{base['id']}"
    rows = [{"kind": "base", "source": base["source"], "source_id": base["id"], "group": group}]
    rows += [{"kind": "paraphrase", "source": base["source"], "source_id": base["id"], "group": group, "text": t,
              "by": "rule"} for t in rule_paraphrases(base["question"])]
    rows += [{"kind": "other_question", "source": "squad", "source_id": other, "group": f"squad:{other}",
              "of": group} for other in base["others"]]
    for kind, text in (("number_changed", number_changed(base["question"])), ("negation", negation(base["question"]))):
        if text is not None:
            rows.append({"kind": kind, "source": base["source"], "source_id": base["id"], "group": f"{group}:{kind}",
                         "of": group, "text": text, "by": "rule"})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(),
                        help="the shared data (default: $SLM_ROUTER_DATA_DIR or ../shared/data)")
    parser.add_argument("--squad", type=int, default=200, help="SQuAD base questions")
    parser.add_argument("--nq", type=int, default=200, help="NQ-open base questions")
    parser.add_argument("--gguf", type=Path, default=GGUF)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=22)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--max-seconds", type=float, default=None, help="stop (resumable) after this long")
    parser.add_argument("--llm-bases", type=int, default=400, help="base questions the LLM rephrases (first ones)")
    args = parser.parse_args(argv)

    squad, nq = squad_bases(args.data_dir, args.squad, args.seed), nq_bases(args.data_dir, args.nq, args.seed)
    bases = [b for pair in zip(squad, nq) for b in pair] + squad[len(nq):] + nq[len(squad):]  # interleaved
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.out.exists():  # the rule rows of every base question
        with args.out.open("w", encoding="utf-8") as out:
            for base in bases:
                for row in rule_rows(base):
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"wrote the rule rows of {len(bases)} base questions to {args.out}", flush=True)
    rows = [json.loads(line) for line in args.out.open(encoding="utf-8")]
    done = {r["source_id"] for r in rows if r.get("by") == GENERATOR or r["kind"] == "llm_done"}
    todo = [b for b in bases[:args.llm_bases] if b["id"] not in done]
    if not todo:
        return 0
    from langchain_slm_router.slm import LlamaCppSLM

    llm = LlamaCppSLM(model_path=str(args.gguf), max_new_tokens=96, n_ctx=1024, n_threads=args.threads)
    start = time.perf_counter()
    made = 0
    with args.out.open("a", encoding="utf-8") as out:
        for base in todo:
            if args.max_seconds is not None and time.perf_counter() - start > args.max_seconds:
                print(f"stopped after {args.max_seconds:g} s; rerun to continue", flush=True)
                break
            gen = llm.generate_batch([[{"role": "user", "content": PROMPT.format(q=base["question"])}]])[0]
            if isinstance(gen, BaseException):
                print(f"{base['id']}: {gen}", file=sys.stderr)
                continue
            group = f"{base['source']}:{base['id']}"
            rewrites = parse_rewrites(gen.text, base["question"])
            new = [{"kind": "paraphrase", "source": base["source"], "source_id": base["id"], "group": group,
                    "text": t, "by": GENERATOR} for t in rewrites]
            new.append({"kind": "llm_done", "source": base["source"], "source_id": base["id"], "group": group,
                        "by": GENERATOR})
            for row in new:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
            out.flush()
            made += 1
            print(f"[{made}/{len(todo)}] {time.perf_counter() - start:.0f}s {base['question']!r} -> "
                  f"{len(rewrites)} paraphrases", flush=True)
    print(f"the LLM rephrased {made} more base questions in {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
