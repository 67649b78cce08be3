"""Savings accounting: the router's running totals equal its traces added up (also under 50 concurrent tasks and
threads), the savings estimate follows its documented formula, prices are validated. Real sympy; a scripted SLM
and a scripted fallback (routing logic only; no model loads)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableLambda

from langchain_slm_router import InvalidPriceError, SLMRouterError
from langchain_slm_router.errors import EmptyQueryError, FallbackUnavailableError
from langchain_slm_router.fallback import fallback_name
from langchain_slm_router.gates import GatePolicy
from langchain_slm_router.math_engine import MathEngine
from langchain_slm_router.router import SLMRouter
from langchain_slm_router.savings import ModelPrice, PriceTable, RouterStats, SavingsLedger, escalation_reason
from langchain_slm_router.trace import RouteResult

from tests.unit.test_router_scripted import SCRIPT, ScriptedSLM

def scripted_llm(messages: list[Any]) -> AIMessage:
    """Answers with usage that depends on the question; ``fail?`` is a connection failure."""
    text = messages[-1].content
    if text == "fail?":
        raise ConnectionError("connection refused")
    return AIMessage(content="from the LLM", usage_metadata={
        "input_tokens": 7 * len(text), "output_tokens": 3 + len(text) % 5, "total_tokens": 7 * len(text) + 3})


FALLBACK = RunnableLambda(scripted_llm)
LLM_NAME = fallback_name(FALLBACK)
PRICES = {LLM_NAME: {"input_per_1k": 2.5, "output_per_1k": 10.0}}


def make_router(**kwargs: Any) -> SLMRouter:
    kwargs.setdefault("answer_cache", None)  # the mix repeats questions: each must reach its own stage
    slm = ScriptedSLM(script={**SCRIPT, "fail?": SCRIPT["unsure?"]}, max_input_tokens=30, calls=[])
    return SLMRouter(slm=slm, gate=GatePolicy(min_mean_prob=0.6), fallback=FALLBACK, math_engine=MathEngine(),
                     fallback_retries=0, prices=PRICES, **kwargs)


#: math, SLM-kept, escalated by the gate, SLM error (escalated), fallback failure, invalid query
MIX = ["What is 2+3?", "sure?", "unsure?", "engine down?", "fail?", "   ", "Compute 12*7", "sure?", "unsure?"]


def expected(results: list[Any], prices: PriceTable) -> dict[str, Any]:
    """The totals computed independently from the traces (and the failures) the router returned."""
    answered = [r for r in results if isinstance(r, RouteResult)]
    failed = [r for r in results if isinstance(r, BaseException)]
    tokens: dict[str, list[int]] = {}
    time_ms: Counter[str] = Counter()
    for r in answered:
        if r.slm_model:
            t = tokens.setdefault(r.slm_model, [0, 0, 0])
            t[0] += r.usage["slm_input_tokens"]
            t[1] += r.usage["slm_output_tokens"]
            t[2] += 1
        if r.stage == "llm":
            t = tokens.setdefault(r.fallback_model, [0, 0, 0])
            t[0] += r.usage["llm_input_tokens"]
            t[1] += r.usage["llm_output_tokens"]
            t[2] += 1
        time_ms.update(r.latency_ms)
    llm = [r for r in answered if r.stage == "llm"]
    price = prices.price(LLM_NAME)
    mean_in = sum(r.usage["llm_input_tokens"] for r in llm) / len(llm)
    mean_out = sum(r.usage["llm_output_tokens"] for r in llm) / len(llm)
    ms_per_token = sum(r.latency_ms["llm"] for r in llm) / sum(r.usage["llm_output_tokens"] for r in llm)
    actual = sum(price.cost(r.usage["llm_input_tokens"], r.usage["llm_output_tokens"]) for r in llm)
    avoided = sum(not r.fallback_tried for r in answered)
    return {
        "queries": len(results), "answered": len(answered),
        "failed": dict(Counter(type(e).__name__ for e in failed)),
        "by_stage": dict(Counter(r.stage for r in answered)),
        "llm_calls": sum(r.fallback_tried for r in answered) + sum(isinstance(e, FallbackUnavailableError)
                                                                   for e in failed),
        "llm_calls_avoided": avoided,
        "escalations": dict(Counter(x for x in map(escalation_reason, answered) if x is not None)),
        "tokens": tokens, "time_ms": dict(time_ms),
        "cost_actual": actual, "cost_always_llm": actual + avoided * price.cost(mean_in, mean_out),
        "time_always_llm_ms": sum(r.latency_ms["llm"] for r in llm) + avoided * mean_out * ms_per_token,
        "time_actual_ms": time_ms["total"],
    }


def assert_totals(stats: RouterStats, want: dict[str, Any]) -> None:
    for key in ("queries", "answered", "failed", "by_stage", "llm_calls", "llm_calls_avoided", "escalations"):
        assert getattr(stats, key) == want[key], key
    assert {m: [t.input_tokens, t.output_tokens, t.calls] for m, t in stats.tokens.items()} == want["tokens"]
    assert stats.time_ms.keys() == want["time_ms"].keys()
    for stage, ms in want["time_ms"].items():
        assert stats.time_ms[stage] == pytest.approx(ms, abs=1e-2)
    s = stats.savings
    assert s.baseline_model == LLM_NAME
    assert s.cost_actual == pytest.approx(want["cost_actual"])
    assert s.cost_always_llm == pytest.approx(want["cost_always_llm"])
    assert s.cost_saved == pytest.approx(want["cost_always_llm"] - want["cost_actual"])
    assert s.time_always_llm_ms == pytest.approx(want["time_always_llm_ms"], abs=1e-2)
    assert s.time_saved_ms == pytest.approx(want["time_always_llm_ms"] - want["time_actual_ms"], abs=2e-2)


def test_totals_equal_the_traces_added_up() -> None:
    router = make_router()
    results = [router.route_batch([q], return_exceptions=True)[0] for q in MIX]
    results += router.route_batch(MIX, return_exceptions=True)  # the batched path counts the same way
    stats = router.stats()
    want = expected(results, router.prices)
    assert_totals(stats, want)
    # the mix exercised every kind of outcome
    assert stats.by_stage == {"math": 4, "slm": 4, "llm": 6}
    assert stats.failed == {"FallbackUnavailableError": 2, "EmptyQueryError": 2}
    assert stats.escalations == {"gate": 4, "slm_skipped": 2}
    assert stats.llm_calls_avoided == 8 and stats.llm_calls == 8
    assert stats.savings.cost_saved > 0 and "measured" in stats.savings.estimate_basis
    json.loads(stats.model_dump_json())  # JSON-ready


async def test_totals_under_50_concurrent_tasks_and_threads() -> None:
    router = make_router()
    queries = [MIX[i % len(MIX)] for i in range(50)]

    async def one(q: str) -> Any:
        try:
            return await router.aroute(q)
        except SLMRouterError as exc:
            return exc

    results = await asyncio.gather(*(one(q) for q in queries))
    assert_totals(router.stats(), expected(list(results), router.prices))

    def sync_one(q: str) -> Any:
        try:
            return router.route(q)
        except SLMRouterError as exc:
            return exc

    with ThreadPoolExecutor(8) as pool:
        results += list(pool.map(sync_one, queries))
    assert router.stats().queries == 100
    assert_totals(router.stats(), expected(list(results), router.prices))


def test_streams_count_once_with_their_spans() -> None:
    router = make_router()
    results = []
    for q in ("sure?", "unsure?", "What is 2+3?"):
        parts = list(router.stream(q))
        results.append(parts[-1].result)
    with pytest.raises(EmptyQueryError):
        list(router.stream("  "))
    results.append(EmptyQueryError(""))
    assert_totals(router.stats(), expected(results, router.prices))


def test_configured_copies_share_the_totals_and_a_new_ledger_separates_them() -> None:
    router = make_router()
    strict = router.with_options(threshold=0.99)
    router.route("sure?")
    strict.route("sure?")
    assert router.stats().by_stage == {"slm": 1, "llm": 1} == strict.stats().by_stage
    apart = router.with_options(savings=SavingsLedger())
    apart.route("sure?")
    assert apart.stats().queries == 1 and router.stats().queries == 2
    router.savings.reset()
    assert router.stats().queries == 0


def test_no_estimate_before_the_fallback_answered_and_local_models_cost_zero() -> None:
    router = make_router()
    router.route("sure?")
    router.route("What is 2+3?")
    s = router.stats().savings
    assert s.cost_saved is None and s.time_saved_ms is None and "no estimate yet" in s.estimate_basis
    assert s.cost_actual == 0.0  # the scripted SLM is unpriced: 0
    assert "estimate" in s.method.lower()


@pytest.mark.parametrize("bad", [
    {"m": {"input_per_1k": -1}},
    {"m": {"output_per_1k": "cheap"}},
    {"m": {"input_per_1k": float("nan")}},
    {"m": {"input_per_1k": float("inf")}},
    {"m": {"input_per_1k": True}},
    {"m": {"per_token": 1.0}},
    {"m": 3},
    ["not", "a", "mapping"],
])
def test_bad_prices_are_a_typed_error(bad: Any) -> None:
    with pytest.raises(InvalidPriceError) as info:
        make_router().with_options(prices=bad)
    assert isinstance(info.value, ValueError) and "price" in str(info.value)
    with pytest.raises(InvalidPriceError):
        PriceTable.of(bad)


def test_good_prices_parse_and_reprice_the_history() -> None:
    table = PriceTable.of({"a": {"input_per_1k": 1, "output_per_1k": 0.5}, "b": {}})
    assert table.price("a") == ModelPrice(input_per_1k=1.0, output_per_1k=0.5)
    assert table.price("unlisted").cost(1000, 1000) == 0.0
    router = make_router()
    router.route("unsure?")
    cheap = router.with_options(prices={LLM_NAME: {"input_per_1k": 0.0, "output_per_1k": 1.0}})
    assert cheap.stats().savings.cost_actual == pytest.approx(router.stats().tokens[LLM_NAME].output_tokens / 1000)
    assert SLMRouter.model_validate(router.model_dump(exclude={"slm", "gate", "fallback", "math_engine"})).prices \
        == router.prices


async def test_both_integrations_expose_the_wrapped_routers_totals() -> None:
    from langchain_slm_router import ChatSLMRouter
    from llama_index_integration import SLMRouterLLM

    router = make_router()
    chat, llm = ChatSLMRouter(router=router), SLMRouterLLM(router=router)
    assert chat.invoke("sure?").content == "Paris"
    await chat.ainvoke("unsure?")
    assert "5" in llm.complete("What is 2+3?").text
    for stats in (chat.stats(), llm.stats(), router.stats()):
        assert stats.by_stage == {"slm": 1, "llm": 1, "math": 1} and stats.llm_calls_avoided == 2


def test_a_cache_hit_is_an_avoided_call_without_tokens_even_if_its_cached_trace_called_the_llm() -> None:
    ledger = SavingsLedger()
    cached = RouteResult.model_construct(  # the cache stage's name; its trace is the original LLM answer's
        **{**RouteResult(answer="a", stage="llm", reason="r", fallback_tried=True, fallback_model="big",
                         usage={"llm_input_tokens": 5, "llm_output_tokens": 2},
                         latency_ms={"cache": 0.2, "total": 0.3}).__dict__, "stage": "cache"})
    ledger.record(cached)
    stats = ledger.snapshot()
    assert stats.by_stage == {"cache": 1} and stats.llm_calls_avoided == 1 and stats.llm_calls == 0
    assert stats.tokens == {} and stats.escalations == {} and stats.time_ms == {"cache": 0.2, "total": 0.3}
    assert escalation_reason(cached) is None
