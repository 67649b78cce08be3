"""Fine-tuned adapters for the local SLM: the shipped NanoQA adapter, or a user's own (peft, safetensors only).

``LocalSLM(adapter=...)`` takes ``"auto"`` (the default: :data:`DEFAULT_MODEL_ADAPTER` on the default model,
nothing on any other), ``"nanoqa"`` (the adapter shipped in this package, trained by
``slm-router train``; see ``docs/nanoqa.md``), a folder holding ``adapter_config.json`` and
``adapter_model.safetensors``, or ``None`` for the stock model. The adapter is merged into the weights when the
model loads, so generation costs the same as without it. A missing, corrupt or mismatched adapter is a
:class:`~langchain_slm_router.errors.ModelLoadError` that says what to do.

The llama.cpp engine (:class:`~langchain_slm_router.slm.LlamaCppSLM`) takes the same ``adapter`` argument:
:func:`gguf_lora` converts the peft adapter once into llama.cpp's GGUF LoRA format (the layout of llama.cpp's own
``convert_lora_to_gguf.py``: ``blk.N.<tensor>.weight.lora_a``/``lora_b``, the query and key rows permuted as the
base GGUF's are) and caches it under :func:`~langchain_slm_router.weights.models_dir`, named by the SHA-256 of the
adapter and of the base file, so both engines answer with the same model.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from langchain_slm_router.errors import ModelLoadError
from langchain_slm_router.weights import models_dir, sha256_of

#: The name of the adapter shipped in the package.
SHIPPED_ADAPTER = "nanoqa"
#: ``LocalSLM``'s default ``adapter``: the shipped adapter on the default model, nothing on any other model.
AUTO = "auto"
#: What ``adapter="auto"`` gives the default model (the shipped adapter only where it measured better than the
#: stock model on held-out data: see docs/nanoqa.md).
DEFAULT_MODEL_ADAPTER: str | None = SHIPPED_ADAPTER
#: Where shipped adapters live.
ADAPTERS_DIR = Path(__file__).resolve().parent / "adapters"
CARD_FILE = "nanoqa_card.json"
_FIX = ("Pass adapter=None for the stock model, adapter='nanoqa' for the shipped one, or retrain it with "
        "`slm-router train --out <folder>` (docs/nanoqa.md) and pass that folder.")


def resolve_adapter(adapter: str | os.PathLike[str] | None, model: str | os.PathLike[str] | None) -> str | None:
    """``adapter`` with ``"auto"`` replaced: :data:`DEFAULT_MODEL_ADAPTER` for the default model, else None."""
    if adapter is not None and os.fspath(adapter) == AUTO:
        return DEFAULT_MODEL_ADAPTER if model is None else None
    return None if adapter is None else os.fspath(adapter)


def adapter_path(adapter: str | os.PathLike[str] | None) -> Path | None:
    """The folder of ``adapter`` (``"nanoqa"``: the shipped one), or None for the stock model.

    Raises:
        ModelLoadError: the folder does not exist or lacks the peft files.
    """
    if adapter is None:
        return None
    text = os.fspath(adapter)
    path = ADAPTERS_DIR / text if text == SHIPPED_ADAPTER else Path(text).expanduser()
    if not path.is_dir():
        raise ModelLoadError(f"SLM adapter not found: {path} is not a folder. {_FIX}")
    missing = [f for f in ("adapter_config.json", "adapter_model.safetensors") if not (path / f).is_file()]
    if missing:
        raise ModelLoadError(f"SLM adapter {path} lacks {', '.join(missing)} (only peft adapters saved as "
                             f"safetensors are loaded). {_FIX}")
    weights = path / "adapter_model.safetensors"
    try:  # the header only: a corrupt or cut file fails here, before the base model loads
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as fh:
            fh.keys()
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types for a bad header
        raise ModelLoadError(f"SLM adapter weights {weights} are corrupt (not a readable safetensors file: "
                             f"{type(exc).__name__}: {str(exc)[:200]}). {_FIX}") from exc
    return path


def read_card(path: Path) -> dict[str, Any] | None:
    """The adapter's training card (``nanoqa_card.json``), or None when it has none."""
    card = path / CARD_FILE
    if not card.is_file():
        return None
    try:
        return json.loads(card.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"SLM adapter card {card} is not valid JSON: {exc}. {_FIX}") from exc


def check_base(path: Path, base_file: Path | None) -> None:
    """Fail before any weights load when the adapter's card names other base weights than ``base_file``.

    Raises:
        ModelLoadError: the SHA-256 in the card is not that of ``base_file``.
    """
    card = read_card(path) or {}
    want = card.get("base_model_sha256")
    if not want or base_file is None or not base_file.is_file():
        return
    got = sha256_of(base_file)
    if got != want:
        raise ModelLoadError(
            f"SLM adapter {path} was trained on base weights with SHA-256 {want[:12]}..., but the model "
            f"loaded is {base_file.name} ({(got or '?')[:12]}...). Load the base it was trained on "
            f"({card.get('base_model')}). {_FIX}")


def apply_adapter(lm: Any, path: Path) -> Any:
    """``lm`` with the peft adapter at ``path`` merged in (check :func:`check_base` first).

    Raises:
        ModelLoadError: the adapter is corrupt, or was made for another base model.
    """
    try:
        from peft import PeftModel

        merged = PeftModel.from_pretrained(lm, str(path)).merge_and_unload()
    except ImportError as exc:
        raise ModelLoadError(f"Loading an SLM adapter needs peft: {exc}. `pip install peft`.") from exc
    except Exception as exc:  # noqa: BLE001 - safetensors/peft/torch raise many types for a bad file
        raise ModelLoadError(
            f"Could not apply the SLM adapter {path}: {type(exc).__name__}: {str(exc)[:300]}. The file is corrupt "
            f"or the adapter was made for another base model. {_FIX}") from exc
    merged.eval()
    return merged


#: peft module names -> llama.cpp tensor names (llama-family decoders).
_GGUF_NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
               "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
               "mlp.down_proj": "ffn_down"}
_PEFT_NAME = re.compile(
    r"(?:^|\.)layers\.(\d+)\.(self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)\.lora_([AB])\.weight$")
GGUF_LORA_VERSION = 1
"""Bumped when the conversion changes, so a cached file from an older conversion is not reused."""


def _permute_rows(rows: Any, n_head: int) -> Any:
    """The row order llama.cpp's converter gives a llama query/key projection (rotary halves interleaved)."""
    return rows.reshape(n_head, 2, rows.shape[0] // n_head // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def gguf_lora(path: Path, base_gguf: Path) -> Path:
    """The peft adapter at ``path`` as a llama.cpp GGUF LoRA file for ``base_gguf`` (converted once, cached).

    Raises:
        ModelLoadError: the base is not a llama-family GGUF, or the adapter holds tensors llama.cpp's LoRA
            loader would not map (another architecture, embeddings, biases).
    """
    weights = path / "adapter_model.safetensors"
    digest = hashlib.sha256(f"{GGUF_LORA_VERSION}:{sha256_of(weights)}:{sha256_of(base_gguf)}".encode()).hexdigest()
    out = models_dir() / "adapters" / f"{path.name}-{digest[:16]}.gguf"
    if out.is_file():
        return out
    try:
        import gguf
        import numpy as np
        from safetensors.numpy import load_file
    except ImportError as exc:
        raise ModelLoadError(f"Converting an SLM adapter for llama.cpp needs gguf and safetensors: {exc}. "
                             "`pip install gguf safetensors`.") from exc
    config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    variants = [k for k in ("use_dora", "use_rslora", "rank_pattern", "alpha_pattern") if config.get(k)]
    if variants:
        raise ModelLoadError(f"The SLM adapter {path} uses {', '.join(variants)}, which llama.cpp's LoRA format does "
                             f"not express. Use LocalSLM for this adapter. {_FIX}")
    reader = gguf.GGUFReader(str(base_gguf))

    def field(key: str) -> Any:
        f = reader.fields.get(key)
        return None if f is None else f.contents()

    arch = field("general.architecture")
    if arch != "llama":
        raise ModelLoadError(f"The SLM adapter {path} can be converted for llama.cpp only onto a llama-family "
                             f"GGUF; {base_gguf.name} is {arch!r}. Use LocalSLM for this adapter. {_FIX}")
    n_head, n_kv = int(field("llama.attention.head_count")), int(field("llama.attention.head_count_kv"))
    tensors: dict[str, Any] = {}
    for name, value in load_file(str(weights)).items():
        m = _PEFT_NAME.search(name)
        if m is None:
            raise ModelLoadError(f"The SLM adapter {path} has a tensor llama.cpp's LoRA loader does not map: {name}. "
                                 f"Use LocalSLM for this adapter. {_FIX}")
        layer, module, ab = m.groups()
        value = value.astype(np.float32)
        if ab == "B" and module == "self_attn.q_proj":
            value = _permute_rows(value, n_head)
        elif ab == "B" and module == "self_attn.k_proj":
            value = _permute_rows(value, n_kv)
        tensors[f"blk.{layer}.{_GGUF_NAMES[module]}.weight.lora_{ab.lower()}"] = np.ascontiguousarray(value)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    writer = gguf.GGUFWriter(str(tmp), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(config.get("lora_alpha", config.get("r", 8))))
    for name in sorted(tensors):
        writer.add_tensor(name, tensors[name])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, out)  # atomic: a concurrent or interrupted conversion never leaves half a file in place
    return out


__all__ = ["ADAPTERS_DIR", "AUTO", "DEFAULT_MODEL_ADAPTER", "SHIPPED_ADAPTER", "adapter_path", "apply_adapter",
           "check_base", "gguf_lora", "read_card", "resolve_adapter"]
