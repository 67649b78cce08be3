"""Does llama.cpp answer with the same model as transformers? Teacher-forced agreement of the two engines.

Usage::

    python benchmarks/check_lora_agreement.py [--adapter auto|none|FOLDER] [--no-permute] [--max-new-tokens 16]

transformers (float32, the adapter merged) answers six short questions greedily; llama.cpp (``LlamaCppSLM``, the
adapter converted to a GGUF LoRA by ``slm/adapter.py: gguf_lora``) then scores *the same tokens* one by one, and
the script prints the mean and largest |p_llama.cpp - p_transformers| over them. With ``--adapter none`` it
measures the kernels' own difference on the stock model (the floor); ``--no-permute`` converts the adapter
without the query/key row permutation (an ablation: a conversion error shows as a larger difference). Each
conversion is cached in its own folder (``SLM_ROUTER_MODELS_DIR`` is set per run).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QUESTIONS = ["What is the capital of France?", "Name three primary colours.", "Describe the water cycle.",
             "Context: The Normans gave their name to Normandy, a region in France.\nQuestion: Where is Normandy?",
             "Who wrote Romeo and Juliet?", "What is the boiling point of water in Celsius?"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", default="auto", help="auto (the default SLM's), none, nanoqa, or a folder")
    parser.add_argument("--no-permute", action="store_true", help="ablation: convert without the row permutation")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    args = parser.parse_args(argv)
    adapter = None if args.adapter == "none" else args.adapter
    os.environ["SLM_ROUTER_MODELS_DIR"] = tempfile.mkdtemp(prefix="lora-agreement-")
    import llama_cpp
    import numpy as np

    import langchain_slm_router.slm.adapter as adapter_module
    from langchain_slm_router.slm import LlamaCppSLM, LocalSLM

    if args.no_permute:
        adapter_module._permute_rows = lambda rows, n_head: rows
    convs = [[{"role": "user", "content": q}] for q in QUESTIONS]
    reference = LocalSLM(max_new_tokens=args.max_new_tokens, adapter=adapter).generate_batch(convs)
    cpp = LlamaCppSLM(max_new_tokens=args.max_new_tokens, adapter=adapter)
    llm = cpp.load()
    n_vocab = llm.n_vocab()
    diffs = []
    for conv, gen in zip(convs, reference):
        ids, _ = cpp.encode(conv)
        llm.reset()
        llm.eval(ids)
        for tok, p in zip(gen.token_ids, gen.token_probs):
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
            logits = logits.astype(np.float64)
            logp = logits - (logits.max() + math.log(np.exp(logits - logits.max()).sum()))
            diffs.append(abs(math.exp(logp[tok]) - p))
            llm.eval([tok])
    label = f"{cpp.model_name}{' (no permutation)' if args.no_permute else ''}"
    print(f"| {label} | {len(QUESTIONS)} questions, {len(diffs)} tokens | {np.mean(diffs):.4f} | {np.max(diffs):.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
