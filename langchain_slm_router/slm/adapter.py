"""Fine-tuned adapters for the local SLM: the shipped NanoQA adapter, or a user's own (peft, safetensors only).

``LocalSLM(adapter=...)`` takes ``"auto"`` (the default: :data:`DEFAULT_MODEL_ADAPTER` on the default model,
nothing on any other), ``"nanoqa"`` (the adapter shipped in this package, trained by
``slm-router train``; see ``docs/nanoqa.md``), a folder holding ``adapter_config.json`` and
``adapter_model.safetensors``, or ``None`` for the stock model. The adapter is merged into the weights when the
model loads, so generation costs the same as without it. A missing, corrupt or mismatched adapter is a
:class:`~langchain_slm_router.errors.ModelLoadError` that says what to do.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from langchain_slm_router.errors import ModelLoadError
from langchain_slm_router.weights import sha256_of

#: The name of the adapter shipped in the package.
SHIPPED_ADAPTER = "nanoqa"
#: ``LocalSLM``'s default ``adapter``: the shipped adapter on the default model, nothing on any other model.
AUTO = "auto"
#: What ``adapter="auto"`` gives the default model (the shipped adapter only where it measured better than the
#: stock model on held-out data: see docs/nanoqa.md).
DEFAULT_MODEL_ADAPTER: str | None = None
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


__all__ = ["ADAPTERS_DIR", "AUTO", "DEFAULT_MODEL_ADAPTER", "SHIPPED_ADAPTER", "adapter_path", "apply_adapter",
           "check_base", "read_card", "resolve_adapter"]
