"""The async router never blocks its event loop: the math engine and the traffic log run off the loop.

Real sympy on a query that runs into the engine's time bound; a ticker on the same loop measures how long the
loop was unable to run anything while the router worked.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from langchain_slm_router import MathEngine, SLMRouter
from langchain_slm_router.errors import FallbackUnavailableError

HARD_MATH = "integrate x^30*sin(x)^9"
"""Runs past any small time bound of sympy's (seconds of integration by parts)."""


async def _max_loop_lag(work: asyncio.Future) -> float:
    """The longest time the loop could not run a 10 ms ticker while ``work`` ran."""
    worst = 0.0
    while not work.done():
        before = time.perf_counter()
        await asyncio.sleep(0.01)
        worst = max(worst, time.perf_counter() - before - 0.01)
    return worst


async def test_hard_math_does_not_block_the_loop() -> None:
    router = SLMRouter(math_engine=MathEngine(timeout_s=2.0), slm=None, fallback=None)
    started = time.perf_counter()
    work = asyncio.ensure_future(router.aroute_batch([HARD_MATH, "What is 6 * 7?"], return_exceptions=True))
    lag = await _max_loop_lag(work)
    hard, easy = work.result()
    assert time.perf_counter() - started >= 1.9  # the hard query really ran into the bound
    assert isinstance(hard, FallbackUnavailableError)  # declined by the math engine; no other stage
    assert easy.stage == "math" and easy.answer == "42"
    assert lag < 1.5, f"the event loop was blocked for {lag:.2f} s"


async def test_hard_math_does_not_block_the_loop_when_streaming() -> None:
    router = SLMRouter(math_engine=MathEngine(timeout_s=2.0), slm=None, fallback=None)

    async def consume() -> list:
        return [part async for part in router.astream("What is 2^10?")]

    hard = asyncio.ensure_future(router.aroute(HARD_MATH))
    lag = await _max_loop_lag(hard)
    with pytest.raises(FallbackUnavailableError):
        hard.result()
    parts = await consume()
    assert "".join(p.text for p in parts) == "1024"
    assert lag < 1.5, f"the event loop was blocked for {lag:.2f} s"


async def test_math_stage_is_a_child_run_in_async_callbacks() -> None:
    from langchain_core.tracers.context import collect_runs

    router = SLMRouter(slm=None, fallback=None)
    with collect_runs() as cb:
        result = await router.aroute("What is 17 * 3?", {"callbacks": [cb]})
    assert result.answer == "51"
    assert [run.name for run in cb.traced_runs] == ["math_engine"]
