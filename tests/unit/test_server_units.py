"""Pure logic of the HTTP server: model names, stop sequences, error statuses, settings, and the SLM batcher.

No model is loaded: the batcher is checked with a scripted backend (routing logic only); the real SLM behind the
server is tested in tests/integration/test_server*.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import pytest

from langchain_slm_router.errors import (
    EmptyQueryError,
    FallbackTimeoutError,
    FallbackUnavailableError,
    ModelLoadError,
    QueryTooLongError,
)
from langchain_slm_router.server.coalesce import CoalescedSLM, SLMBatcher
from langchain_slm_router.server.errors import (
    AuthenticationError,
    ModelNotFoundError,
    RequestTimeoutError,
    ServerBusyError,
    http_status,
    public_message,
)
from langchain_slm_router.server.metrics import escalation_reason
from langchain_slm_router.server.service import RouteOptions, RouterService, StopCutter, cut_at_stop
from langchain_slm_router.server.settings import API_KEY_ENV, ServeConfig, ServerSettings
from langchain_slm_router.signals import ConfidenceSignals
from langchain_slm_router.slm import SLMBackend, SLMGeneration
from langchain_slm_router.trace import RouteResult


CALLS: list[int] = []
"""The batch sizes ScriptedSLM was called with."""


class ScriptedSLM(SLMBackend):
    """Answers each conversation with its last message reversed; records the batch sizes in CALLS."""

    @property
    def model_name(self) -> str:
        return "scripted"

    def count_tokens(self, messages: Sequence[dict[str, str]]) -> int:
        return sum(len(m["content"].split()) for m in messages)

    def generate_batch(self, conversations, *, early_exit=None):
        CALLS.append(len(conversations))
        out = []
        for conv in conversations:
            text = conv[-1]["content"]
            if text == "fail":
                out.append(QueryTooLongError("too long"))
                continue
            out.append(SLMGeneration(text=text[::-1], token_probs=[0.9], token_entropies=[0.1],
                                     signals=ConfidenceSignals.from_tokens([0.9], [0.1]), input_tokens=1,
                                     output_tokens=1, finished=True, latency_ms=1.0))
        return out


def _service(**settings) -> RouterService:
    from langchain_slm_router.router import SLMRouter

    return RouterService(SLMRouter(slm=ScriptedSLM(), fallback=None), ServerSettings(**settings))


def test_model_names_select_configurations() -> None:
    service = _service(models={"strict": {"threshold": 0.9, "max_tokens": 8}})
    assert service.options_for("slm-router") == RouteOptions()
    assert service.options_for("slm-router:latest") == RouteOptions()
    assert service.options_for("slm-router:threshold-0.75") == RouteOptions(threshold=0.75)
    assert service.options_for("strict") == service.options_for("strict:latest") == RouteOptions(0.9, 8)
    assert service.options_for("strict").merged(max_tokens=4, temperature=None) == RouteOptions(0.9, 4)
    for bad in ("mistral", "slm-router:threshold-x", "slm-router:big"):
        with pytest.raises(ModelNotFoundError, match="serves 'slm-router', 'strict'"):
            service.options_for(bad)
    configured = service.router_for(RouteOptions(threshold=0.75, max_tokens=5))
    assert configured.gate.threshold == 0.75 and configured.slm.max_new_tokens == 5
    assert isinstance(configured.slm, CoalescedSLM) and configured.slm.inner.max_new_tokens == 5
    assert service.router_for(RouteOptions(threshold=0.75, max_tokens=5)) is configured  # cached


def test_the_coalescing_server_keeps_the_shipped_gate_of_its_slm() -> None:
    """Wrapping the SLM for the batcher does not change its weights, so it must not change the gate either: the
    shipped learned gate of the default SLM stays (it once fell back to the seed's rule, silently)."""
    from langchain_slm_router.gates import LearnedGate
    from langchain_slm_router.gates.defaults import is_shipped
    from langchain_slm_router.router import SLMRouter
    from langchain_slm_router.slm import LocalSLM

    service = RouterService(SLMRouter(slm=LocalSLM(), fallback=None), ServerSettings())  # no model is loaded
    for options in (RouteOptions(), RouteOptions(threshold=0.3, max_tokens=5)):
        configured = service.router_for(options)
        assert isinstance(configured.slm, CoalescedSLM)
        assert isinstance(configured.gate, LearnedGate) and is_shipped(configured.gate)
        assert configured.gate.threshold == (options.threshold or 0.5)
        assert configured.slm.weights_sha256() == LocalSLM().weights_sha256()


def test_stop_cutter_holds_back_partial_stop_sequences() -> None:
    cutter = StopCutter(["\nUser:", "END"])
    pieces = ["Paris is", " the capital\nUs", "er: more", " text"]
    out = "".join(cutter.feed(p) for p in pieces) + cutter.flush()
    assert out == "Paris is the capital" and cutter.hit
    assert cut_at_stop("no stop here", ["END"]) == ("no stop here", False)
    assert cut_at_stop("abcEN", ["END"]) == ("abcEN", False)  # a partial match at the end is text
    assert cut_at_stop("abc", None) == ("abc", False)


def test_http_statuses_and_messages() -> None:
    assert http_status(EmptyQueryError("empty")) == 400
    assert http_status(QueryTooLongError("long")) == 413
    assert http_status(FallbackTimeoutError("slow")) == 504
    assert http_status(RequestTimeoutError("slow")) == 504
    assert http_status(FallbackUnavailableError("down")) == 502
    assert http_status(ModelLoadError("gone")) == 503
    assert http_status(ServerBusyError("busy")) == 429
    assert http_status(AuthenticationError("no")) == 401
    assert http_status(KeyError("x")) == 500
    assert public_message(QueryTooLongError("The query has 9 characters")) == "The query has 9 characters"
    assert "secret" not in public_message(KeyError("secret"))


def test_api_key_check(monkeypatch) -> None:
    open_service = _service()
    open_service.check_key(None, None)
    service = _service(api_key="k3y")
    service.check_key("Bearer k3y", None)
    service.check_key(None, "k3y")
    for auth, header in ((None, None), ("Bearer wrong", None), ("k3y", None), (None, "wrong")):
        with pytest.raises(AuthenticationError) as err:
            service.check_key(auth, header)
        assert "k3y" not in str(err.value)
    assert "k3y" not in repr(service.settings) and "k3y" not in service.settings.model_dump_json()
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    assert ServeConfig().settings().api_key.get_secret_value() == "from-env"
    assert ServeConfig().settings(api_key="flag").api_key.get_secret_value() == "flag"


def test_config_file(tmp_path) -> None:
    path = tmp_path / "serve.json"
    path.write_text(json.dumps({"router": {"slm": None, "max_query_chars": 500}, "fallback": None,
                                "server": {"port": 9001, "max_queue": 3}, "models": {"strict": {"threshold": 0.9}}}))
    config = ServeConfig.load(path)
    settings = config.settings(port=9002, max_concurrency=None)
    assert (settings.port, settings.max_queue, settings.max_concurrency) == (9002, 3, 32)
    assert settings.models == {"strict": {"threshold": 0.9}}
    router = config.build_router()
    assert router.slm is None and router.fallback is None and router.max_query_chars == 500
    path.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read the server configuration"):
        ServeConfig.load(path)


def test_escalation_reasons() -> None:
    base = {"answer": "a", "reason": "r"}
    assert escalation_reason(RouteResult(stage="math", **base)) is None
    assert escalation_reason(RouteResult(stage="slm", slm_answer="a", **base)) is None
    assert escalation_reason(RouteResult(stage="llm", fallback_tried=True, slm_answer="d", **base)) == "gate"
    assert escalation_reason(RouteResult(stage="llm", fallback_tried=True, slm_answer="d", early_exit=True,
                                         **base)) == "early_exit"
    assert escalation_reason(RouteResult(stage="llm", fallback_tried=True, **base)) == "slm_skipped"


async def test_batcher_coalesces_concurrent_calls_and_keeps_each_answer() -> None:
    CALLS.clear()
    batcher = SLMBatcher(max_batch=4)
    slm = CoalescedSLM.wrap(ScriptedSLM(), batcher)
    questions = [f"q{i}" for i in range(10)] + ["fail"]
    outs = await asyncio.gather(*[slm.agenerate_batch([[{"role": "user", "content": q}]]) for q in questions])
    assert [o[0].text for o in outs[:-1]] == [q[::-1] for q in questions[:-1]]
    assert isinstance(outs[-1][0], QueryTooLongError)  # a query failing alone fails alone
    assert sum(CALLS) == 11 and max(CALLS) <= 4 and len(CALLS) < 11
    assert batcher.conversations == 11


async def test_batcher_separates_configurations_and_skips_cancelled() -> None:
    CALLS.clear()
    batcher = SLMBatcher(max_batch=32, window_s=0.02)
    short, long = (CoalescedSLM.wrap(ScriptedSLM(max_new_tokens=n), batcher) for n in (4, 64))
    assert short.batch_key != long.batch_key
    cancelled = asyncio.ensure_future(short.agenerate_batch([[{"role": "user", "content": "gone"}]]))
    await asyncio.sleep(0)
    cancelled.cancel()
    outs = await asyncio.gather(short.agenerate_batch([[{"role": "user", "content": "ab"}]]),
                                long.agenerate_batch([[{"role": "user", "content": "cd"}]]))
    assert [o[0].text for o in outs] == ["ba", "dc"]
    assert sorted(CALLS) == [1, 1]  # one call per configuration; the cancelled query never ran


def test_serve_flags_select_the_slm_engine_over_the_config(tmp_path) -> None:
    import argparse

    from langchain_slm_router.server.cli import add_serve_command, build_from_args
    from langchain_slm_router.slm import LlamaCppSLM, LocalSLM

    parser = argparse.ArgumentParser()
    add_serve_command(parser.add_subparsers())
    path = tmp_path / "serve.json"
    path.write_text(json.dumps({"router": {"slm": {"max_new_tokens": 12}}}))
    router, _ = build_from_args(parser.parse_args(["serve", "--config", str(path), "--no-fallback",
                                                   "--slm-engine", "llamacpp"]))
    assert isinstance(router.slm, LlamaCppSLM) and router.slm.max_new_tokens == 12 and router.fallback is None
    router, settings = build_from_args(parser.parse_args(["serve", "--config", str(path), "--no-fallback",
                                                          "--port", "0"]))
    assert isinstance(router.slm, LocalSLM) and router.slm.max_new_tokens == 12 and settings.port == 0


def test_serve_gate_flag_picks_the_shipped_gate_the_reference_rule_or_a_clear_error(tmp_path) -> None:
    import argparse

    from langchain_slm_router.errors import ConfigError
    from langchain_slm_router.gates import GatePolicy, LearnedGate
    from langchain_slm_router.server.cli import add_serve_command, build_from_args

    parser = argparse.ArgumentParser()
    add_serve_command(parser.add_subparsers())
    path = tmp_path / "serve.json"
    path.write_text(json.dumps({"router": {"slm": {"max_new_tokens": 12}}}))

    def gate(*flags: str):
        router, _ = build_from_args(parser.parse_args(["serve", "--config", str(path), "--no-fallback", *flags]))
        return router.gate

    assert isinstance(gate(), LearnedGate) and isinstance(gate("--gate", "auto"), LearnedGate)
    assert gate("--gate", "fitted") == gate()
    assert isinstance(gate("--gate", "threshold"), GatePolicy)
    assert isinstance(gate("--slm-engine", "llamacpp"), GatePolicy)  # other weights: the reference rule
    with pytest.raises(ConfigError, match="no fitted gate file matches"):
        gate("--slm-engine", "llamacpp", "--gate", "fitted")
