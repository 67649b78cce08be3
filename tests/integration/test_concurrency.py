"""One router, one loaded model, many concurrent callers: every request gets exactly its own answer."""

from __future__ import annotations

import asyncio
import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from langchain_slm_router import SLMRouter
from langchain_slm_router.errors import EmptyQueryError, InvalidQueryError

pytestmark = pytest.mark.integration

MATH = [f"What is {a} * {b} + {c}?" for a, b, c in [(17, 23, 4), (12, 12, 1), (99, 3, 7), (5, 41, 0), (8, 8, 8)]]
MATH += ["Solve 3x - 7 = 20", "derivative of x^2*cos(x)", "What is 15% of 240?", "factor x^2 - 64",
         "What is the square root of 900?"]
TEXT = ["What is the chemical symbol for gold?", "What is the capital of France?", "Who wrote Hamlet?",
        "What color is the sky on a clear day?", "How many legs does a spider have?"]
# 50 queries: each math query 3 times, each text query 4 times, shuffled with a fixed seed
QUERIES = MATH * 3 + TEXT * 4
random.Random(7).shuffle(QUERIES)
assert len(QUERIES) == 50


@pytest.fixture(scope="module")
def router(slm, fallback_llm) -> SLMRouter:
    return SLMRouter(slm=slm.model_copy(update={"max_new_tokens": 24}), fallback=fallback_llm,
                     answer_cache=None)  # the same questions run many times: each must reach the SLM


@pytest.fixture(scope="module")
def sequential(router) -> dict[str, tuple[str, str]]:
    """The answer and stage of each distinct query, asked one at a time."""
    out = {}
    for q in dict.fromkeys(QUERIES):
        r = router.route(q)
        out[q] = (r.stage, r.answer)
    return out


def test_threads_get_their_own_answers(router, sequential) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(router.route, QUERIES))
    assert len(results) == 50
    for q, r in zip(QUERIES, results):
        assert (r.stage, r.answer) == sequential[q], q


async def test_concurrent_ainvoke_get_their_own_answers(router, sequential) -> None:
    results = await asyncio.gather(*(router.aroute(q) for q in QUERIES))
    for q, r in zip(QUERIES, results):
        assert (r.stage, r.answer) == sequential[q], q


async def test_abatch_with_failures_fails_alone(router, sequential) -> None:
    queries = ["What is 12 * 12 + 1?", "", b"\xff\xfe", "What is the capital of France?", "   "]
    results = await router.aroute_batch(queries, return_exceptions=True)
    assert len(results) == len(queries)
    assert results[0].answer == "145"
    assert isinstance(results[1], EmptyQueryError) and isinstance(results[4], EmptyQueryError)
    assert isinstance(results[2], InvalidQueryError)
    assert (results[3].stage, results[3].answer) == sequential["What is the capital of France?"]
    with pytest.raises(EmptyQueryError):
        router.route_batch(queries)
