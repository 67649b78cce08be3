"""The ``slm-router train`` subcommand (registered by :mod:`langchain_slm_router.cli`).

``slm-router train --out nanoqa_out [--examples 600] [--gamma 2] [--distill sequence --teacher-answers F.jsonl]
[--max-minutes 30] ...``: fine-tune the SLM for short-answer QA (:func:`~langchain_slm_router.training.train`);
``--teacher-gguf G.gguf`` first (or only, with ``--teacher-only``) caches the teacher's answers to
``--teacher-answers``. See ``docs/nanoqa.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _mix(text: str) -> dict[str, float]:
    out = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        out[name.strip()] = float(weight)
    return out


def add_train_command(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """Add ``train`` to the ``slm-router`` subcommands."""
    from langchain_slm_router.training.trainer import TrainConfig

    d = TrainConfig()
    p = sub.add_parser("train", help="fine-tune the SLM for short-answer QA (NanoQA: focal loss + distillation)")
    p.add_argument("--out", type=Path, default=d.out, help=f"output folder (default {d.out})")
    p.add_argument("--base-model", default=None, help="student model (default: the offline SmolLM2-135M-Instruct)")
    p.add_argument("--data-dir", type=Path, default=None, help="JSONL data folder (default: as slm-router eval)")
    p.add_argument("--examples", type=int, default=d.examples, help=f"training examples (default {d.examples})")
    p.add_argument("--mix", type=_mix, default=d.mix, help="data-set shares, e.g. squad_v2=0.8,nq_open=0.1,gsm8k=0.1")
    p.add_argument("--max-context-words", type=int, default=d.max_context_words, help="SQuAD context window")
    p.add_argument("--unanswerable-share", type=float, default=d.unanswerable_share,
                   help="fraction of SQuAD examples that are unanswerable (default: SQuAD's own, about a half)")
    p.add_argument("--seed", type=int, default=d.seed, help="split and sampling seed (default 0)")
    p.add_argument("--gamma", type=float, default=d.gamma, help="focal-loss gamma (0 = cross-entropy; default 2)")
    p.add_argument("--distill", choices=["none", "token", "sequence"], default=d.distill, help="distillation")
    p.add_argument("--teacher", default=None, help="token-level teacher (same tokenizer as the student)")
    p.add_argument("--teacher-answers", type=Path, default=None, help="JSONL of teacher answers (sequence level)")
    p.add_argument("--teacher-gguf", type=Path, default=None,
                   help="GGUF teacher (llama.cpp) whose answers are cached to --teacher-answers first")
    p.add_argument("--teacher-minutes", type=float, default=None, help="time budget for teacher answers")
    p.add_argument("--teacher-only", action="store_true", help="only cache the teacher's answers")
    p.add_argument("--distill-weight", type=float, default=d.distill_weight, help="KL share / teacher-answer weight")
    p.add_argument("--full-finetune", action="store_true", help="train every weight instead of LoRA")
    p.add_argument("--lora-r", type=int, default=d.lora_r, help=f"LoRA rank (default {d.lora_r})")
    p.add_argument("--lora-top-layers", type=int, default=d.lora_top_layers, help="adapt only the top N layers")
    p.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate (default {d.lr:g})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"examples per step (default {d.batch_size})")
    p.add_argument("--epochs", type=float, default=d.epochs, help="passes over the examples (default 1)")
    p.add_argument("--max-minutes", type=float, default=None, help="wall-time budget (stops and saves)")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps between checkpoints")
    p.add_argument("--no-resume", action="store_true", help="start over even if out/checkpoint exists")
    p.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_train)
    return p


def run_train(args: argparse.Namespace) -> int:
    """Run ``slm-router train``."""
    from langchain_slm_router.errors import ConfigError, SLMRouterError
    from langchain_slm_router.training.trainer import TrainConfig, train

    try:
        if args.teacher_gguf is not None:
            from langchain_slm_router.training.data import build_examples
            from langchain_slm_router.training.teacher import teacher_answers

            if args.teacher_answers is None:
                raise ConfigError("--teacher-gguf needs --teacher-answers (the JSONL cache to write)")
            examples = build_examples(args.data_dir, args.examples, args.mix, args.seed, args.max_context_words,
                                      args.unanswerable_share)
            teacher_answers(examples, args.teacher_gguf, args.teacher_answers, threads=args.threads,
                            max_minutes=args.teacher_minutes, progress=not args.no_progress)
            if args.teacher_only:
                return 0
        config = TrainConfig(
            base_model=args.base_model, out=args.out, data_dir=args.data_dir, examples=args.examples, mix=args.mix,
            max_context_words=args.max_context_words, unanswerable_share=args.unanswerable_share, seed=args.seed,
            gamma=args.gamma, distill=args.distill,
            teacher=args.teacher, teacher_answers=args.teacher_answers, distill_weight=args.distill_weight,
            full_finetune=args.full_finetune, lora_r=args.lora_r, lora_top_layers=args.lora_top_layers, lr=args.lr,
            batch_size=args.batch_size, epochs=args.epochs, max_minutes=args.max_minutes,
            checkpoint_every=args.checkpoint_every, resume=not args.no_resume, device=args.device,
            threads=args.threads)
        result = train(config, progress=not args.no_progress)
    except SLMRouterError:
        raise  # typed: the command line's handler prints it
    except ValueError as exc:  # options the training configuration refuses
        raise ConfigError(f"the training options are invalid: {exc}".replace("\n", " ")) from exc
    card = result.card
    print(json.dumps({k: card[k] for k in ("steps", "examples_seen", "stopped_by", "wall_seconds", "metrics")}))
    print(f"adapter written to {result.out}; use it with LocalSLM(adapter={str(result.out)!r})", file=sys.stderr)
    return 0


__all__ = ["add_train_command", "run_train"]
