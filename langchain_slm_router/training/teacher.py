"""Teacher answers for sequence-level distillation, computed once and cached in a JSONL file.

A teacher that does not share the student's tokenizer (the project's benchmark LLM, Qwen2.5-Coder-0.5B, as a GGUF
file run by llama.cpp) cannot give token-level distributions the student can match; it gives its *answers*, which
the trainer mixes with the gold answers (:mod:`langchain_slm_router.training.trainer`). Generating them is the
slow part on a CPU, so :func:`teacher_answers` appends each answer to a JSONL cache as soon as it has it and, run
again, only answers what the cache lacks (a killed run loses nothing).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_slm_router.errors import ModelLoadError
from langchain_slm_router.training.data import QAExample

DEFAULT_SYSTEM = "You are a helpful assistant. Answer the question briefly and accurately."


def read_cache(path: Path | str) -> dict[str, dict[str, Any]]:
    """The cached teacher answers: example id -> record (``answer``, ``teacher``, ``seconds``)."""
    path = Path(path)
    if not path.is_file():
        return {}
    out = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill: skip it, it is asked again
                    continue
                out[rec["id"]] = rec
    return out


def teacher_answers(examples: Sequence[QAExample], gguf: Path | str, cache: Path | str, *,
                    max_tokens: int = 24, threads: int | None = None, n_ctx: int = 1024,
                    max_minutes: float | None = None, progress: bool = True,
                    system_prompt: str | None = DEFAULT_SYSTEM) -> dict[str, dict[str, Any]]:
    """Answer ``examples`` with the llama.cpp model ``gguf`` (greedy), appending to the JSONL ``cache``.

    Returns every cached record (old and new). Stops early (keeping what it has) after ``max_minutes``.
    """
    from langchain_slm_router.slm import LlamaCppSLM

    if not Path(gguf).is_file():
        raise ModelLoadError(f"Teacher weights not found: {gguf}. Fetch the benchmark LLM with "
                             "`python benchmarks/fetch_llm_weights.py --dest <path>`.")
    done = read_cache(cache)
    todo = [ex for ex in examples if ex.id not in done and ex.dataset != "gsm8k"]
    todo.sort(key=lambda ex: ex.dataset != "squad_v2")  # SQuAD first (stable: the examples' order within each)
    if not todo:
        return done
    # the project's llama.cpp backend: the GGUF's chat template, greedy, typed load errors (missing extra, bad file)
    teacher = LlamaCppSLM(model_path=str(gguf), n_ctx=n_ctx, n_threads=threads or os.cpu_count() or 1,
                          max_new_tokens=max_tokens, max_input_tokens=n_ctx - max_tokens, overflow="truncate",
                          system_prompt=system_prompt)
    teacher.load()
    deadline = None if max_minutes is None else time.monotonic() + 60.0 * max_minutes
    from tqdm.auto import tqdm

    Path(cache).parent.mkdir(parents=True, exist_ok=True)
    with Path(cache).open("a", encoding="utf-8") as fh:
        for ex in tqdm(todo, desc="teacher answers", disable=not progress):
            if deadline is not None and time.monotonic() > deadline:
                break
            t0 = time.perf_counter()
            text = teacher.generate([{"role": "user", "content": ex.prompt}]).text
            rec = {"id": ex.id, "answer": text, "teacher": teacher.model_name,
                   "seconds": round(time.perf_counter() - t0, 3)}
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            done[ex.id] = rec
    return done


__all__ = ["read_cache", "teacher_answers"]
