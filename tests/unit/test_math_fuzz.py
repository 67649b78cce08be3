"""Hypothesis fuzzing of the math engine: any text in, a MathAnswer or a typed decline out (never a crash-decline,
``code == "error"``), and never a hang."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from langchain_slm_router.math_engine import MathAnswer, MathDecline, MathEngine

# Small time bound so a pathological integral costs little; the assertion below is a bound that only a hang breaks
# (timeout + slot wait + thread overhead on a loaded machine: 40 times the timeout), not a performance target.
ENGINE = MathEngine(timeout_s=0.25)
PER_CALL_BOUND_S = 10.0

FUNCS = ["sin", "cos", "tan", "exp", "log", "ln", "sqrt", "abs", "factorial", "cbrt", "atan"]
FRAMES = ["{}", "what is {}", "calculate {}", "{} = ?", "simplify {}", "factor {}", "expand {}",
          "d/dx {}", "derivative of {}", "integrate {}", "solve {} = 0", "solve for x: {} = 1",
          "the square root of {}", "{}% of 120", "what is 20 percent of {}"]

numbers = st.one_of(
    st.integers(min_value=0, max_value=10**6).map(str),
    st.decimals(min_value=0, max_value=1000, places=3, allow_nan=False, allow_infinity=False).map(str),
    st.sampled_from(["0", "1", "2", "10", "99999999999999999999", "pi", "e"]),
)
atoms = st.one_of(numbers, st.sampled_from(["x", "y", "t", "x", "x"]))


def _extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.tuples(children, st.sampled_from(["+", "-", "*", "/", "^", "**", " ", ""]), children).map(
        lambda t: f"{t[0]}{t[1]}{t[2]}"
    )
    call = st.tuples(st.sampled_from(FUNCS), children).map(lambda t: f"{t[0]}({t[1]})")
    paren = children.map(lambda c: f"({c})")
    unary = children.map(lambda c: f"-{c}")
    fact = children.map(lambda c: f"{c}!")
    return st.one_of(binary, call, paren, unary, fact)


expressions = st.recursive(atoms, _extend, max_leaves=12)


def _check(query: str) -> None:
    start = time.perf_counter()
    result = ENGINE.solve(query)
    elapsed = time.perf_counter() - start
    assert result is None or isinstance(result, MathAnswer)
    if result is not None:
        assert result.answer and result.kind and len(result.answer) <= ENGINE.max_answer_chars
    assert elapsed < PER_CALL_BOUND_S, (query, elapsed)
    explained = ENGINE.explain(query)
    assert isinstance(explained, (MathAnswer, MathDecline))
    # a decline names its reason (not math, a bound, the clock); "error" is sympy raising where the engine should
    # have declined on its own terms: a crash turned into a decline
    assert not (isinstance(explained, MathDecline) and explained.code == "error"), (query, explained)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=120))
def test_random_text(query: str) -> None:
    _check(query)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet="0123456789+-*/^()!.,=?% xyzeipsnqrtlog", max_size=80))
def test_random_math_alphabet(query: str) -> None:
    _check(query)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions, st.sampled_from(FRAMES))
def test_random_expression_trees(expr: str, frame: str) -> None:
    _check(frame.format(expr))


@pytest.mark.parametrize("query", ["what is 2^2^2^2^2^2", "factorial(10^9)", "what is 9^9^9^9",
                                   "(" * 10_000 + ")" * 10_000, "9" * 1_000_000])
def test_known_bombs_are_fast(query: str) -> None:
    _check(query)
