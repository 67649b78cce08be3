"""Benchmark the answer cache: hit rate at a bounded false-hit rate, stale hits, lookup latency, time saved.

Usage::

    python benchmarks/bench_cache.py [--parts quality,latency,e2e] [--data-dir ../shared/data]
        [--sizes 1000,10000,100000] [--redis-url redis://127.0.0.1:6379/0] [--seeds 3] [--e2e-queries 60]

Parts (each prints a Markdown table; ratios are measured side by side in one run):

* ``quality``: the paraphrase set ``benchmarks/data/cache_paraphrases.jsonl`` (see make_cache_paraphrases.py)
  joined with the SQuAD/NQ questions and paragraphs of ``--data-dir``. Each base question is asked first (and
  cached, in its SQuAD paragraph's context or none for NQ); then its paraphrases and the hard negatives (other
  questions on the same paragraph, a number changed, a negation) arrive in a shuffled stream. A cached answer is
  right when the query belongs to the entry's group. Every miss is answered afresh and stored, and compared with
  its nearest entry (the cache's verification, which the adaptive threshold learns from), exactly as the router
  does. Static thresholds 0.8 (GPTCache), 0.9 (RedisVL), the best static one at a false-hit rate <= 1% (chosen in
  hindsight on the same stream: an upper bound for any static choice) and the adaptive threshold (vCache method,
  delta = 1%), over ``--seeds`` stream orders. Rates are per query: hit rate = served / queries, false-hit rate =
  wrongly served / queries. Stale hits: every SQuAD base question and its paraphrases asked again under another
  paragraph and under an edited copy of its own paragraph (a document update); also counted for a key on the
  question alone, as caches that ignore the context use.
* ``latency``: lookup time (key, exact probe, nearest-neighbour search, threshold; the query's embedding is
  computed beforehand and its own time reported apart) at each of ``--sizes`` entries in one bucket (the worst
  case: every entry could match), in process and on Redis. Vectors beyond the real questions' embeddings are
  noisy copies of them.
* ``e2e``: the real router (SmolLM2-135M on CPU, no fallback) on a workload where 30% of the queries repeat an
  earlier one (exact repeats, then paraphrases), without the cache, with the default exact cache, and with the
  semantic cache; total time and stages.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from langchain_slm_router.cache import InProcessStore, RedisStore, SemanticCache  # noqa: E402
from langchain_slm_router.cache.base import CacheEntry  # noqa: E402
from langchain_slm_router.cache.key import CacheKey  # noqa: E402
from langchain_slm_router.evaluation.datasets import default_data_dir  # noqa: E402

DATA = REPO / "benchmarks" / "data" / "cache_paraphrases.jsonl"
EMB_CACHE = REPO / ".slm_router_cache" / "bench_cache_embeddings"
CONFIG = "bench"


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


# ---------------------------------------------------------------- data
def load_items(data_dir: Path, by: str | None = None, llm_only: bool = False
               ) -> tuple[list[dict], list[dict], dict[str, str]]:
    """(bases, queries, contexts by group) with texts resolved from the shared data; ``by`` keeps the paraphrases
    of one generator; ``llm_only`` keeps the base questions the LLM rephrased."""
    squad = {}
    for line in (data_dir / "squad_v2_dev.jsonl").open(encoding="utf-8"):
        row = json.loads(line)
        squad[row["id"]] = row
    nq = [json.loads(line)["question"] for line in (data_dir / "nq_open_dev.jsonl").open(encoding="utf-8")]

    def question(source: str, source_id: str) -> str:
        return squad[source_id]["question"] if source == "squad" else nq[int(source_id.rsplit("-", 1)[1])]

    rows = [json.loads(line) for line in DATA.open(encoding="utf-8")]
    only = {r["group"] for r in rows if r["kind"] == "llm_done"} if llm_only else None
    rows = [r for r in rows if only is None or r["kind"] != "base" or r["group"] in only]
    bases, queries = [], []
    context: dict[str, str | None] = {}
    for row in rows:
        if row["kind"] == "base":
            ctx = squad[row["source_id"]]["context"] if row["source"] == "squad" else None
            context[row["group"]] = ctx
            bases.append({"group": row["group"], "text": question(row["source"], row["source_id"]), "context": ctx,
                          "source": row["source"]})
    for row in rows:
        if row["kind"] in ("base", "llm_done") or (by is not None and row["kind"] == "paraphrase" and row["by"] != by):
            continue
        if only is not None and row.get("of", row["group"]) not in only:
            continue
        of = row.get("of", row["group"])
        text = row.get("text") or question(row["source"], row["source_id"])
        queries.append({"group": row["group"], "kind": row["kind"], "text": text, "context": context[of],
                        "source": row["source"]})
    return bases, queries, context


class FixedEmbeddings:
    """Embeddings computed beforehand by MiniLM (so every policy sees the same vectors); any other text (the
    simulated answers) gets a pseudo-random unit vector of its own."""

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table

    def embed_documents(self, texts: list[str]) -> list[np.ndarray]:
        out = []
        for text in texts:
            vec = self.table.get(text)
            if vec is None:
                seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
                vec = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
                vec /= np.linalg.norm(vec)
            out.append(vec)
        return out


def embed_all(texts: list[str]) -> dict[str, np.ndarray]:
    """MiniLM embeddings of ``texts``, kept in an .npz beside the models (recomputed when texts change)."""
    from langchain_slm_router.embeddings import MiniLMEmbeddings

    texts = sorted(set(texts))
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()
    path = EMB_CACHE / f"{digest[:20]}.npz"
    if path.exists():
        return dict(zip(texts, np.load(path, allow_pickle=False)["vectors"]))
    start = time.perf_counter()
    vectors = np.asarray(MiniLMEmbeddings(batch_size=64).embed_documents(texts), dtype=np.float32)
    print(f"embedded {len(texts)} texts in {time.perf_counter() - start:.0f} s", flush=True)
    EMB_CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, vectors=vectors)
    return dict(zip(texts, vectors))


def conv(text: str, context: str | None) -> list[dict[str, str]]:
    return ([{"role": "system", "content": context}] if context else []) + [{"role": "user", "content": text}]


# ---------------------------------------------------------------- quality
def run_stream(bases: list[dict], queries: list[dict], table: dict[str, np.ndarray], seed: int,
               **cache_options: Any) -> dict[str, float]:
    cache = SemanticCache(semantic=True, embeddings=FixedEmbeddings(table), answer_agreement=1.0, seed=seed,
                          **cache_options)
    for base in bases:
        probe = cache.lookup([conv(base["text"], base["context"])], CONFIG)[0]
        if not probe.hit:
            cache.record(probe, base["group"], "llm")
    order = list(queries)
    random.Random(seed).shuffle(order)
    hits = wrong = right_para = 0
    by_kind: Counter[str] = Counter()
    for q in order:
        probe = cache.lookup([conv(q["text"], q["context"])], CONFIG)[0]
        if probe.hit:
            hits += 1
            if probe.entry.answer != q["group"]:
                wrong += 1
                by_kind[q["kind"]] += 1
            elif q["kind"] == "paraphrase":
                right_para += 1
        else:
            cache.record(probe, q["group"], "llm")
    n = len(order)
    return {"hit": hits / n, "false": wrong / n, "para_recall": right_para / max(1, sum(
        q["kind"] == "paraphrase" for q in order)), "wrong_by_kind": dict(by_kind)}


def stale_hits(bases: list[dict], queries: list[dict], table: dict[str, np.ndarray], question_only: bool,
               **cache_options: Any) -> tuple[int, int]:
    """Cache each SQuAD base in its paragraph, then ask it and its paraphrases under another paragraph and under an
    edited paragraph; (stale hits, lookups)."""
    cache = SemanticCache(semantic=True, embeddings=FixedEmbeddings(table), **cache_options)
    squad = [b for b in bases if b["source"] == "squad"]
    for base in squad:
        ctx = None if question_only else base["context"]
        probe = cache.lookup([conv(base["text"], ctx)], CONFIG)[0]
        if not probe.hit:
            cache.record(probe, base["group"], "llm")
    paraphrases: dict[str, list[str]] = {}
    for q in queries:
        if q["kind"] == "paraphrase":
            paraphrases.setdefault(q["group"], []).append(q["text"])
    hits = lookups = 0
    for i, base in enumerate(squad):
        other = squad[(i + 1) % len(squad)]["context"]
        edited = base["context"] + " (Updated: this paragraph was revised.)"
        for new_ctx in (other, edited):
            for text in [base["text"], *paraphrases.get(base["group"], [])]:
                probe = cache.lookup([conv(text, None if question_only else new_ctx)], CONFIG)[0]
                lookups += 1
                hits += int(probe.hit)
    return hits, lookups


def part_quality(args: argparse.Namespace) -> None:
    bases, queries, _ = load_items(args.data_dir)
    table = embed_all([b["text"] for b in bases] + [q["text"] for q in queries])
    kinds = Counter(q["kind"] for q in queries)
    print(f"\n## Hit rate at a bounded false-hit rate\n\n{len(bases)} base questions "
          f"({sum(b['source'] == 'squad' for b in bases)} SQuAD, {sum(b['source'] == 'nq' for b in bases)} NQ-open); "
          f"{len(queries)} queries: {dict(kinds)}; {args.seeds} stream orders. {uptime()}\n", flush=True)

    def mean_over_seeds(**options: Any) -> dict[str, float]:
        runs = [run_stream(bases, queries, table, seed, **options) for seed in range(args.seeds)]
        wrong: Counter[str] = Counter()
        for r in runs:
            wrong.update(r["wrong_by_kind"])
        return {"hit": statistics.mean(r["hit"] for r in runs), "false": statistics.mean(r["false"] for r in runs),
                "false_max": max(r["false"] for r in runs),
                "para_recall": statistics.mean(r["para_recall"] for r in runs), "wrong": dict(wrong)}

    static = {}
    for t in [round(x, 2) for x in np.arange(0.80, 0.985, 0.01)]:
        static[t] = mean_over_seeds(similarity_threshold=t)
        print(f"  static {t:.2f}: hit {static[t]['hit']:.3f} false {static[t]['false']:.4f}", flush=True)
    ok = {t: r for t, r in static.items() if r["false_max"] <= args.max_false}
    best_t = max(ok, key=lambda t: ok[t]["hit"]) if ok else None
    adaptive = mean_over_seeds(max_false_hit_rate=args.max_false)
    rows = [("static 0.80 (GPTCache)", static[0.8]), ("static 0.90 (RedisVL)", static[0.9])]
    if best_t is not None:
        rows.append((f"best static ({best_t:.2f}, hindsight)", static[best_t]))
    rows.append((f"adaptive (vCache method, delta={args.max_false:g})", adaptive))
    print("| threshold | hit rate | false-hit rate (mean / worst order) | paraphrases served right | "
          "wrong hits by kind (all orders) |\n|---|---:|---:|---:|---|")
    for name, r in rows:
        print(f"| {name} | {100 * r['hit']:.1f}% | {100 * r['false']:.2f}% / {100 * r['false_max']:.2f}% | "
              f"{100 * r['para_recall']:.1f}% | {r['wrong']} |")
    if best_t is not None:
        print(f"\nadaptive / best static hit rate: {adaptive['hit'] / max(ok[best_t]['hit'], 1e-9):.2f}x "
              f"(target >= 1.5x at false-hit <= {100 * args.max_false:g}%)")

    print("\n## Stale hits after a context change (another paragraph, or the paragraph edited)\n")
    print("| key | threshold | stale hits | lookups |\n|---|---|---:|---:|")
    for name, options in (("0.80", {"similarity_threshold": 0.8}), ("0.90", {"similarity_threshold": 0.9}),
                          (f"adaptive {args.max_false:g}", {"max_false_hit_rate": args.max_false})):
        hits, n = stale_hits(bases, queries, table, False, **options)
        print(f"| question + context digest (this cache) | {name} | {hits} | {n} |")
    hits, n = stale_hits(bases, queries, table, True, similarity_threshold=0.9)
    print(f"| question alone (context ignored) | 0.90 | {hits} | {n} |")


# ---------------------------------------------------------------- latency
def synthetic_vectors(real: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picks = real[rng.integers(0, len(real), n)]
    noisy = picks + 0.35 * rng.standard_normal(picks.shape).astype(np.float32) / np.sqrt(picks.shape[1])
    return (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)


def measure_lookups(cache: SemanticCache, queries: list[str], table: dict[str, np.ndarray]) -> tuple[float, float]:
    times = []
    for text in queries:
        start = time.perf_counter()
        cache.lookup([conv(text, None)], CONFIG)
        times.append((time.perf_counter() - start) * 1000.0)
    times.sort()
    return statistics.median(times), times[int(0.99 * (len(times) - 1))]


def fill(store: Any, vectors: np.ndarray, bucket_key: CacheKey) -> float:
    start = time.perf_counter()
    store.put_many([CacheEntry(bucket=bucket_key.bucket, exact=f"bench-{i}", context=bucket_key.context,
                               question=f"q{i}", answer=f"a{i}", stage="llm", vector=vec)
                    for i, vec in enumerate(vectors)])
    return time.perf_counter() - start


def first_lookup_s(cache: SemanticCache, text: str) -> float:
    """The first lookup after a fill: it builds the HNSW graph (in process) or reads every vector (a replica)."""
    start = time.perf_counter()
    cache.lookup([conv(text, None)], CONFIG)
    return time.perf_counter() - start


def part_latency(args: argparse.Namespace) -> None:
    from langchain_slm_router.embeddings import MiniLMEmbeddings

    texts = [json.loads(line)["question"] for line in (args.data_dir / "nq_open_dev.jsonl").open(encoding="utf-8")]
    table = embed_all(texts[:2000])
    texts = list(table)
    real = np.stack(list(table.values()))
    probes = [t for t in texts if not any(ch.isdigit() for ch in t)][:300]  # one bucket: no numbers, no negation
    probes = [t for t in probes if CacheKey.build(conv(t, None), CONFIG).bucket ==
              CacheKey.build(conv("who", None), CONFIG).bucket][:200]
    bucket = CacheKey.build(conv("who", None), CONFIG)
    emb = MiniLMEmbeddings()
    emb.embed_query("warm up")
    et = []
    for text in probes[:100]:
        start = time.perf_counter()
        emb.embed_query(text)
        et.append((time.perf_counter() - start) * 1000.0)
    print(f"\n## Lookup latency\n\n{len(probes)} lookups per size, all entries in the probes' bucket; "
          f"MiniLM query embedding (not included below): p50 {statistics.median(et):.1f} ms over {len(et)}. "
          f"{uptime()}\n")
    print("| store | entries | fill s | p50 ms | p99 ms | note |\n|---|---:|---:|---:|---:|---|")
    for size in args.sizes:
        vectors = synthetic_vectors(real, size)
        store = InProcessStore(max_entries=size + 10)
        fill_s = fill(store, vectors, bucket)
        cache = SemanticCache(store=store, semantic=True, embeddings=FixedEmbeddings(table))
        first = first_lookup_s(cache, probes[0])
        p50, p99 = measure_lookups(cache, probes, table)
        ann = "HNSW (usearch)" if store._index._buckets[bucket.bucket].ann is not None else "exact numpy"
        print(f"| in process | {size:,} | {fill_s:.1f} | {p50:.2f} | {p99:.2f} | {ann}; first lookup {first:.1f} s |",
              flush=True)
        del store, cache
        if args.redis_url:
            prefix = f"bench-cache-{os.getpid()}-{size}"
            writer = RedisStore(url=args.redis_url, prefix=prefix, max_entries=size + 10)
            try:
                fill_s = fill(writer, vectors, bucket)
                reader = RedisStore(url=args.redis_url, prefix=prefix, max_entries=size + 10)
                cache = SemanticCache(store=reader, semantic=True, embeddings=FixedEmbeddings(table))
                first = first_lookup_s(cache, probes[0])  # a replica that starts now reads every vector once
                p50, p99 = measure_lookups(cache, probes, table)
                print(f"| Redis | {size:,} | {fill_s:.1f} | {p50:.2f} | {p99:.2f} | a new replica's first lookup "
                      f"{first:.1f} s |", flush=True)
            finally:
                writer.invalidate()
                writer._client.delete(writer._k("gen"))
                writer.close()


# ---------------------------------------------------------------- end to end
def part_e2e(args: argparse.Namespace) -> None:
    from langchain_slm_router import SLMRouter
    from langchain_slm_router.slm import LocalSLM

    bases, queries, _ = load_items(args.data_dir)
    nq = [b for b in bases if b["source"] == "nq"]
    para = {}
    for q in queries:
        if q["kind"] == "paraphrase":
            para.setdefault(q["group"], q["text"])
    rng = random.Random(0)
    n = args.e2e_queries
    unique = [b for b in nq if b["group"] in para][: n - int(0.3 * n)]
    workloads = {}
    for label, repeat_of in (("exact repeats", lambda b: b["text"]), ("paraphrased repeats", lambda b: para[b["group"]])):
        items = [b["text"] for b in unique]
        for _ in range(n - len(unique)):
            pos = rng.randrange(1, len(items) + 1)
            items.insert(pos, repeat_of(rng.choice([b for b in unique if b["text"] in items[:pos]])))
        workloads[label] = items
    slm = LocalSLM(max_new_tokens=args.e2e_tokens)
    slm.load()
    configs = {"no cache": lambda: None, "exact cache (default)": SemanticCache,
               "semantic, static 0.90": lambda: SemanticCache(semantic=True, similarity_threshold=0.9)}
    SemanticCache(semantic=True).embed(["warm up"])
    print(f"\n## End to end: {n} queries, 30% repeats (SmolLM2-135M, {args.e2e_tokens} new tokens at most, CPU, "
          f"no fallback)\n\n{uptime()}\n")
    print("| workload | cache | total s | saved | stages |\n|---|---|---:|---:|---|")
    for label, items in workloads.items():
        base_s = None
        for name, make_cache in configs.items():
            router = SLMRouter(slm=slm, fallback=None, answer_cache=make_cache())
            start = time.perf_counter()
            stages = Counter(router.route(q).stage for q in items)
            total = time.perf_counter() - start
            base_s = total if base_s is None else base_s
            print(f"| {label} | {name} | {total:.1f} | {100 * (1 - total / base_s):.0f}% | {dict(stages)} |",
                  flush=True)
    print(f"\n{uptime()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="quality,latency,e2e")
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(),
                        help="the shared data (default: $SLM_ROUTER_DATA_DIR or ../shared/data)")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="'' skips the Redis rows")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-false", type=float, default=0.01)
    parser.add_argument("--e2e-queries", type=int, default=60)
    parser.add_argument("--e2e-tokens", type=int, default=32, help="the SLM's max_new_tokens in the e2e part")
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    parts = set(args.parts.split(","))
    print(f"# bench_cache.py {' '.join(sys.argv[1:])}\n\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    if "quality" in parts:
        part_quality(args)
    if "latency" in parts:
        part_latency(args)
    if "e2e" in parts:
        part_e2e(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
