"""The routing benchmark of docs/benchmarks.md: `slm-router eval` with the settings of the documented run.

Usage::

    python benchmarks/fetch_llm_weights.py        # once: the local LLM (Qwen2.5-Coder-1.5B-Instruct GGUF, 1.1 GB)
    python benchmarks/bench_router.py             # the documented local run (about 1 h on 2 cores)
    python benchmarks/bench_router.py --base-url http://localhost:11434 --llm-model mistral   # real Ollama

Without ``--base-url`` the LLM is served in-process by the project's Ollama-protocol server (so the timed path is
the real ``ChatOllama`` HTTP client), backed by the fetched Qwen weights on llama.cpp (the 1.5B model, else the
0.5B one from ``fetch_llm_weights.py --model qwen2.5-coder-0.5b``), or by SmolLM2 itself when neither is there
(then always-LLM and always-SLM are the same model and the quality gap is about zero). Any other
``slm-router eval`` option can be added and overrides the preset (e.g. ``--limit 10 --dataset-limit
math=10,gsm8k=4,mixed=10`` for a quick look: the preset's per-data-set limits stay unless overridden too).
Outputs go to ``bench_out/local`` (``report.md``, ``results.json``, one PNG per data set).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from langchain_slm_router.cli import main  # noqa: E402

from langchain_slm_router.llm_weights import models_dir, weights_path  # noqa: E402

MODELS = models_dir()
LLMS = [(weights_path("qwen2.5-coder-1.5b"), "qwen2.5-coder:1.5b"),
        (weights_path("qwen2.5-coder-0.5b"), "qwen2.5-coder:0.5b")]

PRESET = [
    "eval", "--datasets", "squad_v2,nq_open,math,gsm8k,mixed",
    "--limit", "80", "--calib-limit", "40",
    "--dataset-limit", "math=50,gsm8k=16,mixed=60", "--calib-dataset-limit", "math=30,gsm8k=12,mixed=50",
    "--seed", "0", "--target-llm-share", "0.3", "--live-router", "mixed", "--threads", "1",
    "--out", str(REPO / "bench_out" / "local"),
]


def build_args(extra: list[str]) -> list[str]:
    args = list(PRESET)
    if "--target-quality" in extra:  # the two targets exclude each other
        i = args.index("--target-llm-share")
        del args[i : i + 2]
    if "--base-url" not in extra and "--llm-gguf" not in extra:
        found = [(path, name) for path, name in LLMS if path.is_file()]
        if found:
            args += ["--llm-gguf", str(found[0][0]), "--llm-model", found[0][1]]
        else:
            print(f"note: no benchmark LLM in {MODELS} (run benchmarks/fetch_llm_weights.py); the local LLM is "
                  "SmolLM2 itself, so always-LLM equals always-SLM in quality", file=sys.stderr)
    # later options win in argparse, except for the repeatable ones, which accumulate (later entries win)
    return args + extra


if __name__ == "__main__":
    raise SystemExit(main(build_args(sys.argv[1:])))
