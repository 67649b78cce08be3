"""Where LocalSLM's decoding time goes: ``generate()`` against a bare greedy loop, and a profile of one step.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/profile_slm_decode.py [--threads 1] [--max-new-tokens 32] [--steps 5]

Answers four short questions with ``LocalSLM.generate`` (transformers' ``generate()`` with the logits processors
that record probabilities) and with a bare greedy loop of model forwards on the KV cache (no ``generate()``),
prints both tokens/s, then the torch profiler's top operators over ``--steps`` decode steps. docs/speed.md
reports the run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QUESTIONS = ["Who wrote Hamlet?", "What is the capital of Peru?", "When did World War II end?",
             "Who painted the Mona Lisa?"]


def bare_greedy(slm: Any, conv: list[dict[str, str]], max_new_tokens: int) -> tuple[int, Any, Any]:
    """Greedy decoding with plain forwards on the KV cache; (tokens generated, cache, last token)."""
    import torch

    model, tok = slm.loaded.model, slm.loaded.tokenizer
    ids = torch.tensor([slm.encode(conv)[0]])  # the prompt ids LocalSLM.generate feeds the model
    out = model(input_ids=ids, use_cache=True)
    cache, nxt, n = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True), 0
    while n < max_new_tokens and nxt.item() != tok.eos_token_id:
        out = model(input_ids=nxt, past_key_values=cache, use_cache=True)
        cache, nxt, n = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True), n + 1
    return n, cache, nxt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="decode steps under the profiler")
    args = parser.parse_args(argv)

    import torch
    from torch.profiler import ProfilerActivity, profile

    from langchain_slm_router.slm import LocalSLM

    torch.set_num_threads(args.threads)
    slm = LocalSLM(max_new_tokens=args.max_new_tokens)
    convs = [[{"role": "user", "content": q}] for q in QUESTIONS]
    slm.generate(convs[0])  # load and warm up

    start = time.perf_counter()
    generated = sum(slm.generate(c).output_tokens for c in convs)
    gen_s = time.perf_counter() - start

    with torch.inference_mode():
        start = time.perf_counter()
        bare = 0
        for conv in convs:
            n, cache, last = bare_greedy(slm, conv, args.max_new_tokens)
            bare += n
        bare_s = time.perf_counter() - start
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                slm.loaded.model(input_ids=last, past_key_values=cache, use_cache=True)

    print(f"generate(): {generated} tokens in {gen_s:.2f} s = {generated / gen_s:.1f} tok/s; "
          f"bare loop: {bare} tokens in {bare_s:.2f} s = {bare / bare_s:.1f} tok/s")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
