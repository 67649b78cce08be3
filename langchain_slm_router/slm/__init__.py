"""Stage 2, the small model: one protocol (:class:`SLMBackend`) and its implementations.

* :class:`LocalSLM` — transformers + torch in this process (the default: SmolLM2-135M-Instruct, offline).
* :class:`LlamaCppSLM` — llama.cpp kernels in this process, reading the GGUF as it is (``llamacpp`` extra).
* :class:`ChatModelSLM` — any LangChain chat model that returns token logprobs (Ollama, vLLM, llama.cpp server).

Importing this package does not import torch or transformers.
"""

from langchain_slm_router.slm.base import (
    SLM_BACKENDS,
    ChatMessageDict,
    EarlyExit,
    Overflow,
    SLMBackend,
    SLMGeneration,
    make_backend,
    register_backend,
)
from langchain_slm_router.slm.chat_model_slm import ChatModelSLM
from langchain_slm_router.slm.llamacpp import LlamaCppSLM
from langchain_slm_router.slm.local import (
    DEFAULT_MODEL_NAME,
    LoadedModel,
    LocalSLM,
    default_model_path,
    load_model,
)

__all__ = [
    "DEFAULT_MODEL_NAME",
    "ChatModelSLM",
    "SLM_BACKENDS",
    "ChatMessageDict",
    "EarlyExit",
    "LlamaCppSLM",
    "LoadedModel",
    "LocalSLM",
    "Overflow",
    "SLMBackend",
    "SLMGeneration",
    "default_model_path",
    "load_model",
    "make_backend",
    "register_backend",
]
