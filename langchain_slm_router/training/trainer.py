"""NanoQA fine-tuning: LoRA (or full) training of the local SLM for short-answer QA.

:func:`train` reads :class:`TrainConfig`, builds examples from the harness's calibration split
(:mod:`~langchain_slm_router.training.data`), and trains with focal loss on the answer tokens only
(:mod:`~langchain_slm_router.training.losses`), optionally distilling a teacher:

* ``distill="token"``: a teacher model that shares the student's tokenizer (any model :class:`LocalSLM` loads);
  the loss is ``(1 - distill_weight) * focal + distill_weight * KL(teacher || student)`` per answer token;
* ``distill="sequence"``: a teacher with another tokenizer; its cached answers
  (:mod:`~langchain_slm_router.training.teacher`, JSONL ``teacher_answers``) are added as extra targets with weight
  ``distill_weight``, beside the gold answers (SQuAD: only teacher answers that are ``unanswerable`` or a phrase of
  the context, the format the harness scores).

It stops after ``epochs`` or ``max_minutes``, whichever comes first, saves a resumable checkpoint every
``checkpoint_every`` steps (adapter and AdamW state as safetensors, counters as JSON: no pickle) and an
adapter snapshot per checkpoint for the learning curve, and writes the result to ``out``: the peft adapter
(``adapter_config.json``, ``adapter_model.safetensors`` in float16) and ``nanoqa_card.json`` (base model and its
SHA-256, data, loss, hyper-parameters, steps, wall time, metrics). It uses a GPU when one is present.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from langchain_slm_router.weights import default_model_path, sha256_of  # sha256_of: re-exported
from langchain_slm_router.training.data import ABSTAIN, DEFAULT_MIX, QAExample, build_examples, check_disjoint

CARD_FILE = "nanoqa_card.json"
ADAPTER_FILE = "adapter_model.safetensors"
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class TrainConfig(BaseModel):
    """Everything one NanoQA training run depends on (written into the model card)."""

    base_model: str | None = None
    """The student: anything :class:`~langchain_slm_router.slm.LocalSLM` loads; ``None`` = SmolLM2-135M-Instruct."""
    out: Path = Path("nanoqa_out")
    """Output folder: the adapter, its card, ``checkpoint/`` and ``curve/step-N`` snapshots."""
    data_dir: Path | None = None
    """Folder of the JSONL data sets (default: the harness's :func:`default_data_dir`)."""
    examples: int = Field(default=1600, ge=1)
    """Training examples drawn from the calibration split (before teacher answers are added)."""
    mix: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_MIX))
    """Share of each data set (``squad_v2``, ``nq_open``, ``gsm8k``)."""
    max_context_words: int = Field(default=150, ge=20)
    """SQuAD context window, in words (150: about 200 tokens)."""
    unanswerable_share: float | None = Field(default=None, ge=0.0, le=1.0)
    """Fraction of SQuAD examples whose target is ``unanswerable`` (``None``: SQuAD's own, about a half)."""
    seed: int = 0
    """Split and sampling seed (the harness's split seed too)."""
    gamma: float = Field(default=2.0, ge=0.0)
    """Focal-loss gamma; 0 is plain cross-entropy."""
    distill: Literal["none", "token", "sequence"] = "none"
    """Distillation: ``token`` (teacher shares the tokenizer), ``sequence`` (cached teacher answers), or none."""
    teacher: str | None = None
    """``distill="token"``: the teacher model (LocalSLM ``model``)."""
    teacher_answers: Path | None = None
    """``distill="sequence"``: JSONL of teacher answers (id, answer) from :func:`teacher_answers`."""
    distill_weight: float = Field(default=0.5, ge=0.0, le=1.0)
    """KL share of the loss (token) or weight of a teacher answer relative to a gold one (sequence)."""
    temperature: float = Field(default=1.0, gt=0.0)
    """Distillation temperature (token-level KL)."""
    full_finetune: bool = False
    """Train every weight instead of a LoRA adapter (the result is a full model folder, ~540 MB)."""
    lora_r: int = Field(default=8, ge=1)
    """LoRA rank."""
    lora_alpha: int = Field(default=16, ge=1)
    """LoRA scaling numerator."""
    lora_dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    """LoRA dropout."""
    lora_targets: list[str] = Field(default_factory=lambda: list(LORA_TARGETS))
    """Module names that get LoRA adapters."""
    lora_top_layers: int | None = Field(default=8, ge=1)
    """Adapt only the top N transformer layers (``None``: all). The backward pass then stops at the lowest
    adapted layer: on a CPU this is most of the saving (top 8 of 30: about half the step time)."""
    lr: float = Field(default=3e-4, gt=0.0)
    """AdamW peak learning rate (linear warm-up, cosine decay)."""
    weight_decay: float = Field(default=0.0, ge=0.0)
    """AdamW weight decay."""
    warmup_steps: int = Field(default=10, ge=0)
    """Linear warm-up steps."""
    batch_size: int = Field(default=4, ge=1)
    """Examples per step."""
    epochs: float = Field(default=1.0, gt=0.0)
    """Passes over the examples (fractions allowed)."""
    max_minutes: float | None = Field(default=None, gt=0.0)
    """Wall-time budget; the run stops (and saves) when it is spent."""
    checkpoint_every: int = Field(default=50, ge=1)
    """Steps between resumable checkpoints and learning-curve snapshots."""
    resume: bool = True
    """Continue from ``out/checkpoint`` when it exists and was made with the same configuration."""
    device: str | None = None
    """torch device; ``None``: ``cuda`` when available, else ``cpu``."""
    threads: int | None = None
    """torch intra-op threads (CPU)."""
    max_grad_norm: float = Field(default=1.0, gt=0.0)
    """Gradient clipping."""

    def fingerprint(self) -> str:
        """What a checkpoint must match to be resumed (everything but the budget, device and output)."""
        fields = self.model_dump(mode="json", exclude={"max_minutes", "device", "threads", "resume", "out",
                                                       "checkpoint_every"})
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def base_model_file(base_model: str | None) -> Path | None:
    """The weights file or folder of ``base_model`` (None for a hub id)."""
    if base_model is None:
        return default_model_path()
    p = Path(base_model).expanduser()
    return p if p.exists() else None


# ---------------------------------------------------------------------------------------------- batches
class Encoded(BaseModel):
    """One example as token ids: prompt ids + answer ids (answer ends with EOS), and its loss weight."""

    ids: list[int]
    answer_start: int
    weight: float = 1.0
    source: str = "gold"


def encode_examples(slm: Any, examples: Sequence[QAExample], extra: Sequence[tuple[QAExample, str, float]] = ()
                    ) -> list[Encoded]:
    """Token ids of each example as the SLM sees it at generation: its chat template, then the answer and EOS."""
    tok = slm.loaded.tokenizer
    out = []
    pairs = [(ex, ex.target, 1.0, "gold") for ex in examples] + [(ex, t, w, "teacher") for ex, t, w in extra]
    for ex, target, weight, source in pairs:
        prompt = tok(slm.render([{"role": "user", "content": ex.prompt}]), add_special_tokens=False)["input_ids"]
        answer = tok(target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        out.append(Encoded(ids=prompt + answer, answer_start=len(prompt), weight=weight, source=source))
    return out


def collate(batch: Sequence[Encoded], pad_id: int, device: str) -> dict[str, Any]:
    """Right-padded ids and mask, the positions that predict answer tokens, their targets and weights."""
    import torch

    width = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    rows, cols, targets, weights = [], [], [], []
    for r, e in enumerate(batch):
        ids[r, : len(e.ids)] = torch.tensor(e.ids)
        mask[r, : len(e.ids)] = 1
        for c in range(e.answer_start, len(e.ids)):
            rows.append(r)
            cols.append(c - 1)
            targets.append(e.ids[c])
            weights.append(e.weight)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device),
            "positions": (torch.tensor(rows, device=device), torch.tensor(cols, device=device)),
            "targets": torch.tensor(targets, device=device),
            "weights": torch.tensor(weights, dtype=torch.float32, device=device)}


def teacher_targets(examples: Sequence[QAExample], answers_file: Path | str, weight: float
                    ) -> list[tuple[QAExample, str, float]]:
    """Teacher answers usable as extra targets: SQuAD ones that abstain or are a phrase of the context."""
    from langchain_slm_router.evaluation.scoring import clean_reply, is_abstention
    from langchain_slm_router.training.teacher import read_cache

    cache = read_cache(answers_file)
    out = []
    for ex in examples:
        rec = cache.get(ex.id)
        if rec is None:
            continue
        text = clean_reply(rec["answer"])
        if ex.dataset == "squad_v2":
            if is_abstention(text):
                text = ABSTAIN
            elif not text or text not in ex.prompt.split("Context: ", 1)[-1] or len(text.split()) > 12:
                continue
        elif not text or len(text.split()) > 12:
            continue
        out.append((ex, text, weight))
    return out


# ---------------------------------------------------------------------------------------------- checkpoints
def _trainable(model: Any) -> list[tuple[str, Any]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def save_checkpoint(folder: Path, model: Any, optimizer: Any, state: dict[str, Any]) -> None:
    """Trainable weights and AdamW moments (safetensors) and counters (JSON), written then renamed into place."""
    from safetensors.torch import save_file

    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    params = _trainable(model)
    save_file({n: p.detach().cpu().contiguous() for n, p in params}, str(tmp / "weights.safetensors"))
    moments = {}
    for i, (_, p) in enumerate(params):
        st = optimizer.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in st:
                moments[f"{i}.{key}"] = st[key].detach().cpu().contiguous()
        if "step" in st:
            state.setdefault("adam_steps", {})[str(i)] = float(st["step"])
    save_file(moments, str(tmp / "optimizer.safetensors"))
    (tmp / "state.json").write_text(json.dumps(state), encoding="utf-8")
    if folder.exists():
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()
    tmp.rename(folder)


def load_checkpoint(folder: Path, model: Any, optimizer: Any, device: str) -> dict[str, Any]:
    """Restore what :func:`save_checkpoint` wrote; returns the counters."""
    import torch
    from safetensors.torch import load_file

    params = _trainable(model)
    weights = load_file(str(folder / "weights.safetensors"), device=device)
    with torch.no_grad():
        for n, p in params:
            p.copy_(weights[n])
    moments = load_file(str(folder / "optimizer.safetensors"), device=device)
    state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    for i, (_, p) in enumerate(params):
        if f"{i}.exp_avg" in moments:
            optimizer.state[p] = {"exp_avg": moments[f"{i}.exp_avg"], "exp_avg_sq": moments[f"{i}.exp_avg_sq"],
                                  "step": torch.tensor(state.get("adam_steps", {}).get(str(i), 0.0))}
    return state


def save_adapter(model: Any, folder: Path, full: bool, tokenizer: Any) -> None:
    """The trained result: a peft adapter in float16 safetensors, or (full fine-tuning) a model folder."""
    import torch
    from safetensors.torch import load_file, save_file

    folder.mkdir(parents=True, exist_ok=True)
    if full:
        model.save_pretrained(str(folder), safe_serialization=True)
        tokenizer.save_pretrained(str(folder))
        return
    model.save_pretrained(str(folder), safe_serialization=True)
    path = folder / ADAPTER_FILE
    tensors = load_file(str(path))
    save_file({k: v.to(torch.float16) for k, v in tensors.items()}, str(path), metadata={"format": "pt"})


# ---------------------------------------------------------------------------------------------- training
class TrainResult(BaseModel):
    """What :func:`train` produced."""

    out: Path
    """The folder holding the adapter and its card."""
    card: dict[str, Any]
    """The model card (also in ``out/nanoqa_card.json``)."""
    model: Any = Field(default=None, exclude=True, repr=False)
    """The trained model in memory (peft-wrapped unless full fine-tuning), in eval mode."""


def _lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


def train(config: TrainConfig, progress: bool = True) -> TrainResult:
    """Fine-tune the SLM for short-answer QA as ``config`` says; see the module docstring."""
    import torch
    from tqdm.auto import tqdm

    from langchain_slm_router.evaluation.datasets import default_data_dir
    from langchain_slm_router.slm.local import LocalSLM
    from langchain_slm_router.training.losses import answer_logits, focal_loss, kl_distill_loss

    started = time.monotonic()
    if config.threads:
        torch.set_num_threads(config.threads)
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(config.seed)
    data_dir = config.data_dir or default_data_dir()
    examples = build_examples(data_dir, config.examples, config.mix, config.seed, config.max_context_words,
                              config.unanswerable_share)
    if config.distill == "sequence" and config.teacher_answers is not None:
        # the teacher answered a bounded subset: train on those questions first, then the usual sample
        from langchain_slm_router.training.teacher import read_cache

        answered = read_cache(config.teacher_answers)
        pool = build_examples(data_dir, 10**9, config.mix, config.seed, config.max_context_words,
                              config.unanswerable_share)
        first = [e for e in pool if e.id in answered][: config.examples]
        taken = {e.id for e in first}
        examples = first + [e for e in examples if e.id not in taken][: config.examples - len(first)]
        random.Random(f"{config.seed}:teacher").shuffle(examples)
    check_disjoint(examples, data_dir, config.seed)

    slm = LocalSLM(model=config.base_model, adapter=None)
    loaded = slm.load()
    tok = loaded.tokenizer
    model = copy.deepcopy(loaded.model).to(device)  # the shared, cached copy stays untouched
    model.train()
    teacher_model = None
    extra: list[tuple[QAExample, str, float]] = []
    if config.distill == "sequence":
        if config.teacher_answers is None:
            raise ValueError("distill='sequence' needs teacher_answers (a JSONL from training.teacher)")
        extra = teacher_targets(examples, config.teacher_answers, config.distill_weight)
    elif config.distill == "token":
        if config.teacher is None:
            raise ValueError("distill='token' needs a teacher model that shares the student's tokenizer")
        teacher_loaded = LocalSLM(model=config.teacher, adapter=None).load()
        if teacher_loaded.tokenizer.get_vocab() != tok.get_vocab():
            raise ValueError(f"the teacher {config.teacher} does not share the student's tokenizer; use "
                             "distill='sequence' with its cached answers instead")
        teacher_model = teacher_loaded.model.to(device)
    encoded = encode_examples(slm, examples, extra)

    if not config.full_finetune:
        from peft import LoraConfig, get_peft_model

        n_layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
        layers = (list(range(max(0, n_layers - config.lora_top_layers), n_layers))
                  if config.lora_top_layers and n_layers else None)
        model = get_peft_model(model, LoraConfig(
            r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
            target_modules=list(config.lora_targets), layers_to_transform=layers, task_type="CAUSAL_LM"))
    params = [p for _, p in _trainable(model)]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(encoded) / config.batch_size)
    total_steps = max(1, math.ceil(config.epochs * steps_per_epoch))

    out = Path(config.out)
    ckpt = out / "checkpoint"
    state: dict[str, Any] = {"step": 0, "seen": 0, "train_seconds": 0.0, "losses": [], "curve": []}
    if config.resume and (ckpt / "state.json").is_file():
        previous = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
        if previous.get("fingerprint") == config.fingerprint():
            state = load_checkpoint(ckpt, model, optimizer, device)
    state["fingerprint"] = config.fingerprint()

    def snapshot(final: bool = False) -> None:
        state["train_seconds"] = round(state["train_seconds"] + time.monotonic() - clock[0], 2)
        clock[0] = time.monotonic()
        if not final:
            snap = out / "curve" / f"step-{state['step']:05d}"
            save_adapter(model, snap, config.full_finetune, tok) if not config.full_finetune else None
            state["curve"].append({"step": state["step"], "seen": state["seen"],
                                   "minutes": round(state["train_seconds"] / 60, 2), "path": str(snap)})
        save_checkpoint(ckpt, model, optimizer, state)

    clock = [time.monotonic()]
    deadline = None if config.max_minutes is None else started + 60.0 * config.max_minutes
    bar = tqdm(total=total_steps, initial=state["step"], desc="nanoqa train", disable=not progress)
    stopped = "epochs"
    while state["step"] < total_steps:
        epoch, index = divmod(state["step"], steps_per_epoch)
        order = list(range(len(encoded)))
        random.Random(f"{config.seed}:{epoch}").shuffle(order)
        batch = [encoded[i] for i in order[index * config.batch_size : (index + 1) * config.batch_size]]
        for group in optimizer.param_groups:
            group["lr"] = config.lr * _lr_factor(state["step"], config.warmup_steps, total_steps)
        b = collate(batch, tok.pad_token_id, device)
        logits = answer_logits(model, b["input_ids"], b["attention_mask"], b["positions"])
        loss = focal_loss(logits, b["targets"], config.gamma, b["weights"])
        if teacher_model is not None:
            with torch.no_grad():
                t_logits = answer_logits(teacher_model, b["input_ids"], b["attention_mask"], b["positions"])
            loss = (1 - config.distill_weight) * loss + config.distill_weight * kl_distill_loss(
                logits, t_logits, config.temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        state["step"] += 1
        state["seen"] += len(batch)
        state["losses"].append(round(float(loss.detach()), 5))
        bar.update(1)
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        if state["step"] % config.checkpoint_every == 0:
            snapshot()
        if deadline is not None and time.monotonic() > deadline:
            stopped = "max_minutes"
            break
    bar.close()
    snapshot(final=True)
    model.eval()
    save_adapter(model, out, config.full_finetune, tok)
    base_file = base_model_file(config.base_model)
    losses = state["losses"]
    head = losses[: max(1, min(20, len(losses) // 5))]
    tail = losses[-max(1, min(20, len(losses) // 5)):]
    card = {
        "name": "nanoqa",
        "base_model": config.base_model or slm.model_name,
        "base_model_file": base_file.name if base_file else None,
        "base_model_sha256": sha256_of(base_file) if base_file else None,
        "kind": "full" if config.full_finetune else "lora",
        "loss": f"focal(gamma={config.gamma:g})" + ("" if config.distill == "none" else
                                                     f" + {config.distill} distillation"),
        "data": {"data_dir": str(data_dir), "split": "calibration side of the harness splits (seed "
                 f"{config.seed}); evaluation questions excluded (checked)",
                 "examples": {k: sum(e.dataset == k for e in examples) for k in config.mix},
                 "unanswerable": sum(e.unanswerable for e in examples),
                 "teacher_targets": len(extra)},
        "config": config.model_dump(mode="json"),
        "steps": state["step"], "examples_seen": state["seen"], "stopped_by": stopped,
        "wall_seconds": round(state["train_seconds"], 1), "device": device,
        "threads": torch.get_num_threads(),
        "metrics": {"train_loss_first": round(sum(head) / len(head), 4) if head else None,
                    "train_loss_last": round(sum(tail) / len(tail), 4) if tail else None},
        "curve": state["curve"],
    }
    (out / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return TrainResult(out=out, card=card, model=model)


__all__ = ["CARD_FILE", "Encoded", "TrainConfig", "TrainResult", "base_model_file", "collate",
           "encode_examples", "load_checkpoint", "save_adapter", "save_checkpoint", "sha256_of",
           "teacher_targets", "train"]
