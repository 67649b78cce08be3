"""Stage 2 on engines: the same protocol from the in-process SLM, Ollama, the OpenAI protocol and llama.cpp's server.

Every engine here is real and started by the tests on 127.0.0.1: the project's engine server (Ollama and OpenAI
protocols, backed by the real SmolLM2) and, when llama-cpp-python is installed, llama.cpp's own OpenAI-protocol server
on the same GGUF weights. The clients are the real ``ChatOllama`` and ``ChatOpenAI``.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from langchain_slm_router import ChatSLMRouter, SLMRouter
from langchain_slm_router.errors import (
    LogprobsUnavailableError,
    QueryTooLongError,
    SLMUnavailableError,
)
from langchain_slm_router.gates import GatePolicy
from langchain_slm_router.signals import ConfidenceSignals
from langchain_slm_router.slm import ChatModelSLM, LlamaCppSLM, LocalSLM, SLMBackend, SLMGeneration
from langchain_slm_router.slm.local import default_model_path
from langchain_slm_router.testing import OllamaProtocolServer
from langchain_slm_router.testing.ollama_server import score_local
from langchain_slm_router.testing.processes import free_port, start_server_process

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

PARIS = [{"role": "user", "content": "What is the capital of France?"}]
COLOUR = [{"role": "user", "content": "Name a primary colour."}]
BOILING = [{"role": "user", "content": "What is the boiling point of water in Celsius?"}]
LONG = [{"role": "user", "content": "Please read this. " + "The quick brown fox jumps over the lazy dog. " * 60
         + "What animal jumps?"}]
MAX_NEW = 32

TOLERANCE = {"ollama": 1e-3, "openai": 1e-3, "llamacpp": 0.05}
"""Largest difference in mean token probability from the in-process SLM on the same weights. The project's server
runs the same transformers model (differences are float noise between cached generation and one scoring pass);
llama.cpp computes with quantised activations, so its probabilities differ by a few hundredths (measured: up to
0.04 per token on these questions)."""
NEAR_TIE = 0.3
"""Nats between the two best next tokens under which llama.cpp's quantised arithmetic may pick the other one."""



@pytest.fixture(scope="module")
def engine(slm: LocalSLM) -> Iterator[OllamaProtocolServer]:
    """The project's engine server (Ollama + OpenAI protocols) on the real SmolLM2; faults are set per test."""
    with OllamaProtocolServer({"smollm2": slm.model_copy(update={"max_new_tokens": MAX_NEW})}) as server:
        yield server


@pytest.fixture(scope="module")
def llamacpp_url() -> Iterator[str]:
    """llama.cpp's own OpenAI-protocol server (llama-cpp-python) on the same GGUF file and adapter (the default
    SLM's NanoQA adapter as a GGUF LoRA), started on a free port.

    Only the ``llamacpp`` parameters use it; they carry ``requires("llama_cpp")`` (a skip without it, a failure under
    ``CI=true``). Installed but not starting is a failure everywhere."""
    port = free_port()
    lora = LlamaCppSLM().lora_path()  # the default SLM's adapter, as LlamaCppSLM converts it for llama.cpp
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(default_model_path()), "--model_alias",
           "smollm2", "--logits_all", "true", "--host", "127.0.0.1", "--port", str(port), "--n_threads", "1",
           "--n_ctx", "2048", "--verbose", "false", *(["--lora_path", lora] if lora else [])]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama.cpp's server did not start: {proc.stderr.read().decode()[-500:]}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama.cpp's server did not answer within 60 s")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def chat_ollama(base_url: str, **kwargs):
    from langchain_ollama import ChatOllama

    kwargs.setdefault("logprobs", True)
    kwargs.setdefault("top_logprobs", 5)
    return ChatOllama(model="smollm2", base_url=base_url, **kwargs)


def chat_openai(base_url: str, **kwargs):
    from langchain_openai import ChatOpenAI

    kwargs.setdefault("logprobs", True)
    kwargs.setdefault("top_logprobs", 5)
    return ChatOpenAI(model="smollm2", base_url=base_url, api_key="not-needed", max_retries=0, timeout=60, **kwargs)


LLAMACPP = pytest.param("llamacpp", marks=pytest.mark.requires("llama_cpp"))
FLOAT32 = ("local", "ollama", "openai")
"""The backends that run the float32 transformers model (deterministic: behaviour checks hold on any CPU); llama.cpp's
quantised kernels differ between CPUs, so its answers are checked by properties and agreement with float32."""


@pytest.fixture(params=[*FLOAT32, LLAMACPP])
def backend(request, slm: LocalSLM, engine: OllamaProtocolServer) -> SLMBackend:
    """Each stage-2 backend on the same SmolLM2 weights."""
    return make(request.param, request, slm, engine)


@pytest.fixture(params=["ollama", "openai", LLAMACPP])
def engine_backend(request, slm: LocalSLM, engine: OllamaProtocolServer) -> SLMBackend:
    """Each engine-served backend on the same SmolLM2 weights as the in-process one."""
    return make(request.param, request, slm, engine)


def make(kind: str, request: Any, slm: LocalSLM, engine: OllamaProtocolServer) -> SLMBackend:
    if kind == "local":
        return slm.model_copy(update={"max_new_tokens": MAX_NEW})
    if kind == "ollama":
        return ChatModelSLM(chat_model=chat_ollama(engine.base_url), max_new_tokens=MAX_NEW)
    if kind == "openai":
        return ChatModelSLM(chat_model=chat_openai(engine.openai_base_url), max_new_tokens=MAX_NEW)
    # llama.cpp's server applies a repeat penalty of 1.1 unless told otherwise; plain greedy decoding is compared
    model = chat_openai(request.getfixturevalue("llamacpp_url"), extra_body={"repeat_penalty": 1.0})
    return ChatModelSLM(chat_model=model, max_new_tokens=MAX_NEW)


def _check(gen: SLMGeneration | Exception) -> SLMGeneration:
    assert isinstance(gen, SLMGeneration), gen
    n = gen.signals.length
    assert n == len(gen.token_probs) == len(gen.token_entropies) >= 1
    assert all(0.0 < p <= 1.0 for p in gen.token_probs) and all(h >= 0.0 for h in gen.token_entropies)
    assert gen.signals == ConfidenceSignals.from_tokens(gen.token_probs, gen.token_entropies)
    assert gen.input_tokens > 5 and gen.output_tokens >= 1 and gen.latency_ms > 0
    assert gen.text.strip()
    return gen


# ------------------------------------------------------------------------------------------ conformance
async def test_protocol_conformance(backend: SLMBackend, request) -> None:
    float32 = request.node.callspec.params["backend"] in FLOAT32
    gens = backend.generate_batch([PARIS, COLOUR])
    paris, colour = (_check(g) for g in gens)
    for gen in (paris, colour):  # the token budget holds: an answer ends on its own or at the budget
        assert gen.output_tokens <= MAX_NEW and (gen.finished or gen.output_tokens == MAX_NEW)
    if float32:
        assert "Paris" in paris.text and paris.finished and colour.finished
    if isinstance(backend, ChatModelSLM):  # engines report their top-k alternatives, chosen token included
        assert paris.top_logprobs is not None and len(paris.top_logprobs) == paris.signals.length
        assert all(1 <= len(top) <= 5 for top in paris.top_logprobs)
        assert max(paris.top_logprobs[0].values()) >= math.log(paris.token_probs[0]) - 1e-6
    again = [_check(g) for g in await backend.agenerate_batch([COLOUR, PARIS])]  # async, reordered
    if float32:  # same greedy answers
        assert [g.text for g in again] == [colour.text, paris.text]
    else:  # llama.cpp's server reuses the previous prompt's KV cache, computed in other shapes: words may part at a
        # near-tie (seen on an AVX2 CPU), the first token's probability (same prompt) agrees within the tolerance
        for first, second in zip((colour, paris), again):
            assert abs(first.token_probs[0] - second.token_probs[0]) <= 2 * TOLERANCE["llamacpp"]
    assert backend.count_tokens(LONG) > backend.count_tokens(PARIS) > 5


def test_overflow_rule(backend: SLMBackend, request) -> None:
    small = backend.model_copy(update={"max_input_tokens": 120, "overflow": "escalate"})
    out = small.generate_batch([LONG, PARIS])
    assert isinstance(out[0], QueryTooLongError) and "max_input_tokens" in str(out[0])
    paris = _check(out[1])  # the other query of the batch is answered
    assert "Paris" in paris.text or request.node.callspec.params["backend"] not in FLOAT32
    cut = backend.model_copy(update={"max_input_tokens": 120, "overflow": "truncate"}).generate(LONG)
    assert _check(cut).truncated_input


# ------------------------------------------------------------------------------------------ same weights
@pytest.mark.parametrize("question", [PARIS, COLOUR, BOILING], ids=["paris", "colour", "boiling"])
def test_engines_match_the_in_process_slm(engine_backend: SLMBackend, slm: LocalSLM, question, request) -> None:
    kind = request.node.callspec.params["engine_backend"]
    backend = engine_backend
    reference = slm.model_copy(update={"max_new_tokens": MAX_NEW})
    local = reference.generate(question)
    served = backend.generate(question)
    tol = TOLERANCE[kind]
    n = len(local.token_probs)
    if kind == "llamacpp" and served.text != local.text:
        # quantised arithmetic may flip a near-tie: the answers agree up to a token where the two best candidates
        # were within NEAR_TIE nats of each other in the in-process model, and diverge there
        exact = score_local(reference, reference.with_system(question), local.token_ids, k=2)
        n = next((i for i, (tok, top) in enumerate(zip(exact, served.top_logprobs or []))
                  if tok.token != max(top, key=top.__getitem__)), None)
        assert n is not None, (served.text, local.text)
        assert exact[n].top[0][1] - exact[n].top[1][1] < NEAR_TIE, (served.text, local.text, exact[n].top)
    else:
        assert served.text == local.text  # greedy decoding, same weights: same answer
        assert abs(served.signals.mean_prob - local.signals.mean_prob) <= tol
    assert max(abs(a - b) for a, b in zip(served.token_probs[:n], local.token_probs[:n])) <= 2 * tol
    if kind != "llamacpp":  # the top-5 entropy is a lower bound of the exact entropy of the same distribution
        assert all(h <= exact + 1e-4 for h, exact in zip(served.token_entropies, local.token_entropies))
        assert served.signals.mean_entropy < local.signals.mean_entropy


def test_the_engine_batches_concurrent_requests_and_answers_as_in_process(slm: LocalSLM) -> None:
    model = slm.model_copy(update={"max_new_tokens": 16})
    questions = [PARIS, COLOUR, BOILING, PARIS]
    with OllamaProtocolServer({"smollm2": model}, max_batch=4) as server:
        engine_slm = ChatModelSLM(chat_model=chat_openai(server.openai_base_url), max_new_tokens=16,
                                  max_concurrency=4)
        served = engine_slm.generate_batch(questions)
        assert server.batcher is not None and max(server.batcher.batch_sizes) > 1
    local = model.generate_batch(questions)
    assert [g.text for g in served] == [g.text for g in local]
    assert all(abs(a.signals.mean_prob - b.signals.mean_prob) < 1e-3 for a, b in zip(served, local))


@pytest.mark.parametrize("protocol", ["ollama", "openai"])
def test_requests_in_flight_are_bounded_sync_and_async(engine: OllamaProtocolServer, protocol: str) -> None:
    import asyncio

    model = chat_ollama(engine.base_url) if protocol == "ollama" else chat_openai(engine.openai_base_url)
    slm = ChatModelSLM(chat_model=model, max_new_tokens=4, max_concurrency=2)
    engine.set_fault("slow", delay_s=0.3)  # every request lasts long enough to overlap the next ones
    try:
        for run in (lambda: slm.generate_batch([PARIS] * 5), lambda: asyncio.run(slm.agenerate_batch([PARIS] * 5))):
            engine.max_in_flight = 0
            assert all(isinstance(g, SLMGeneration) for g in run())
            assert engine.max_in_flight == 2
    finally:
        engine.set_fault(None)


@pytest.mark.parametrize("protocol", ["ollama", "openai"])
def test_async_batches_work_across_event_loops(engine: OllamaProtocolServer, protocol: str) -> None:
    import asyncio

    # LlamaIndex's sync wrappers start an event loop per call; pooled async connections must not leak across them
    model = chat_ollama(engine.base_url) if protocol == "ollama" else chat_openai(engine.openai_base_url)
    slm = ChatModelSLM(chat_model=model, max_new_tokens=8)
    for _ in range(3):
        out = asyncio.run(slm.agenerate_batch([PARIS, COLOUR]))
        assert all(isinstance(g, SLMGeneration) for g in out), out


@pytest.mark.parametrize("protocol", ["ollama", "openai"])
def test_the_clients_of_an_ended_event_loop_are_closed(engine: OllamaProtocolServer, protocol: str) -> None:
    import asyncio

    model = chat_ollama(engine.base_url) if protocol == "ollama" else chat_openai(engine.openai_base_url)
    slm = ChatModelSLM(chat_model=model, max_new_tokens=4)
    owned: list[list[Any]] = []
    for _ in range(3):
        assert isinstance(asyncio.run(slm.agenerate_batch([PARIS]))[0], SLMGeneration)
        owned.append(slm._loop_model[3])
    assert all(owned), "the per-loop copies own no HTTP clients"
    for clients in owned[:-1]:  # the copies of the loops that ended
        assert all(client.is_closed for client in clients)
    assert not all(client.is_closed for client in owned[-1])  # the current loop's copy is still usable


def test_a_chat_model_that_cannot_be_rebuilt_is_not_reused_silently(engine: OllamaProtocolServer) -> None:
    import asyncio

    from langchain_ollama import ChatOllama

    class Unrebuildable(ChatOllama):
        def __init__(self, **kwargs: Any) -> None:
            if kwargs.pop("_first", False) is not True:
                raise TypeError("this model is built once")
            super().__init__(**kwargs)

    model = Unrebuildable(_first=True, model="smollm2", base_url=engine.base_url, logprobs=True, top_logprobs=3)
    slm = ChatModelSLM(chat_model=model, max_new_tokens=4)
    with pytest.warns(RuntimeWarning, match="could not rebuild Unrebuildable"):
        out = asyncio.run(slm.agenerate_batch([PARIS]))
    assert isinstance(out[0], SLMGeneration)


# ------------------------------------------------------------------------------------------ errors
def test_a_model_not_asked_for_logprobs_is_refused_at_construction(engine: OllamaProtocolServer) -> None:
    with pytest.raises(LogprobsUnavailableError, match="logprobs=True"):
        ChatModelSLM(chat_model=chat_ollama(engine.base_url, logprobs=None, top_logprobs=None))
    with pytest.raises(LogprobsUnavailableError, match="logprobs=True"):
        ChatModelSLM(chat_model=chat_openai(engine.openai_base_url, logprobs=False, top_logprobs=None))


@pytest.mark.parametrize("protocol", ["ollama", "openai"])
def test_a_server_that_drops_logprobs_is_a_typed_error_not_a_zero_gate(engine: OllamaProtocolServer,
                                                                       protocol: str) -> None:
    model = chat_ollama(engine.base_url) if protocol == "ollama" else chat_openai(engine.openai_base_url)
    slm = ChatModelSLM(chat_model=model, max_new_tokens=8)
    engine.set_fault("no_logprobs")
    try:
        with pytest.raises(LogprobsUnavailableError, match="without token log-probabilities"):
            slm.generate_batch([PARIS, COLOUR])
    finally:
        engine.set_fault(None)


@pytest.mark.parametrize("protocol", ["ollama", "openai"])
def test_a_disconnect_mid_stream_is_a_typed_error_in_its_slot(engine: OllamaProtocolServer, protocol: str) -> None:
    model = (chat_ollama(engine.base_url) if protocol == "ollama"
             else chat_openai(engine.openai_base_url, streaming=True))
    slm = ChatModelSLM(chat_model=model, max_new_tokens=16)
    engine.set_fault("disconnect", times=1)
    try:
        out = slm.generate_batch([PARIS])
    finally:
        engine.set_fault(None)
    assert isinstance(out[0], SLMUnavailableError) and "dropped the connection" in str(out[0])
    with pytest.raises(SLMUnavailableError):
        engine.set_fault("disconnect", times=1)
        slm.generate(PARIS)
    engine.set_fault(None)
    assert "Paris" in slm.generate(PARIS).text  # the next request is fine


@pytest.mark.parametrize("protocol", ["ollama", "openai"])
async def test_a_server_that_is_down_is_a_typed_error(protocol: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    model = chat_ollama(url) if protocol == "ollama" else chat_openai(url + "/v1")
    slm = ChatModelSLM(chat_model=model)
    sync, asyn = slm.generate_batch([PARIS]), await slm.agenerate_batch([PARIS])
    for out in (sync[0], asyn[0]):
        assert isinstance(out, SLMUnavailableError) and isinstance(out, ConnectionError)
        assert "unreachable" in str(out)


def test_the_router_escalates_when_the_engine_is_down(fallback_llm) -> None:
    down = ChatModelSLM(chat_model=chat_ollama(f"http://127.0.0.1:{free_port()}"))
    result = SLMRouter(slm=down, fallback=fallback_llm).route("What is the capital of France?")
    assert result.stage == "llm" and "unreachable" in result.reason and result.answer.strip()


def test_early_exit_stops_the_engine_answer(engine: OllamaProtocolServer) -> None:
    slm = ChatModelSLM(chat_model=chat_openai(engine.openai_base_url), max_new_tokens=MAX_NEW)
    gen = slm.generate_batch([PARIS], early_exit=lambda probs, left: len(probs) >= 3)[0]
    assert isinstance(gen, SLMGeneration) and gen.early_exit and not gen.finished and gen.signals.length == 3


# ------------------------------------------------------------------------------------------ integrations
def test_langchain_and_llamaindex_work_unchanged_with_an_engine_slm(engine: OllamaProtocolServer,
                                                                    fallback_llm) -> None:
    from llama_index.core.llms import ChatMessage

    from llama_index_integration import SLMRouterLLM

    slm = ChatModelSLM(chat_model=chat_ollama(engine.base_url), max_new_tokens=MAX_NEW)
    keep_all = GatePolicy(min_mean_prob=0.0)
    msg = ChatSLMRouter(slm=slm, gate=keep_all, fallback=fallback_llm).invoke("What is the capital of France?")
    assert "Paris" in msg.content and msg.response_metadata["stage"] == "slm"
    assert msg.response_metadata["route"]["slm_model"] == "ChatOllama(smollm2)"
    chunks = list(ChatSLMRouter(slm=slm, gate=keep_all, fallback=fallback_llm).stream("Name a primary colour."))
    assert "".join(c.content for c in chunks).strip()
    llm = SLMRouterLLM(slm=slm, gate=keep_all, fallback=fallback_llm)
    reply = llm.chat([ChatMessage(role="user", content="What is the capital of France?")])
    assert "Paris" in reply.message.content and reply.raw["stage"] == "slm"


def test_a_given_tokenizer_counts_prompt_tokens_exactly(engine: OllamaProtocolServer, slm: LocalSLM) -> None:
    exact = ChatModelSLM(chat_model=chat_ollama(engine.base_url), tokenizer=slm.load().tokenizer)
    for question in (PARIS, LONG):
        assert exact.count_tokens(question) == slm.count_tokens(question)
    served = exact.generate(PARIS)
    assert served.input_tokens == slm.count_tokens(PARIS)  # the engine's own count agrees


def test_a_router_replica_configured_by_a_file_uses_the_engine(engine: OllamaProtocolServer, tmp_path) -> None:
    """``slm-router serve --config`` with the SLM on an engine: the stateless replica of docs/scaling.md."""
    import json
    import os

    config = {"router": {"slm": {"backend": "chat_model", "max_new_tokens": 16, "chat_model": {
        "provider": "openai", "model": "smollm2", "base_url": engine.openai_base_url, "api_key": "-"}},
        "gate": {"gate": "threshold", "min_mean_prob": 0.0}}}
    path = tmp_path / "replica.json"
    path.write_text(json.dumps(config))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("SLM_ROUTER_API_KEY", None)
    base = f"http://127.0.0.1:{port}"
    proc = start_server_process([sys.executable, "-m", "langchain_slm_router.cli", "serve", "--port", str(port),
                                 "--config", str(path), "--no-fallback"], f"{base}/readyz", env=env, cwd=REPO)
    try:
        before = engine.request_count
        reply = httpx.post(f"{base}/v1/chat/completions", timeout=120, json={
            "model": "slm-router", "messages": PARIS}).json()
        assert "Paris" in reply["choices"][0]["message"]["content"]
        assert reply["slm_router"]["stage"] == "slm" and reply["slm_router"]["slm_model"] == "ChatOpenAI(smollm2)"
        assert engine.request_count > before  # the SLM answered on the engine, not in the replica
    finally:
        proc.terminate()
        proc.wait(timeout=30)
