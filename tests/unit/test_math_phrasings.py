"""Everyday phrasings of math: the generated set is reproducible, and the engine never answers one wrongly.

How many are answered (tune half vs report half) is a benchmark figure (``benchmarks/bench_math_phrasings.py``,
docs/benchmarks.md), not asserted here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from langchain_slm_router.evaluation.math_sets import math_dev_queries, math_phrasings
from langchain_slm_router.evaluation.symbolic import answers_match
from langchain_slm_router.math_engine import MathEngine

PHRASINGS = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "math_phrasings.jsonl"
ENGINE = MathEngine()


def test_the_committed_set_is_what_the_generator_writes() -> None:
    rows = [json.loads(line) for line in PHRASINGS.read_text(encoding="utf-8").splitlines()]
    assert rows == math_phrasings()
    math_rows = [r for r in rows if r["answer"] is not None]
    assert len(math_rows) >= 150 and {r["split"] for r in rows} == {"tune", "report"}
    assert not {r["author"] for r in rows if r["split"] == "tune"} & {r["author"] for r in rows if r["split"] == "report"}


def test_no_phrasing_is_answered_wrongly_and_near_misses_are_declined() -> None:
    wrong, taken = [], []
    for row in math_phrasings():
        got = ENGINE.solve(row["query"])
        if row["answer"] is None:
            if got is not None:
                taken.append((row["query"], got.answer))
        elif got is not None:
            right = answers_match(got.answer.rstrip("%"), row["answer"].rstrip("%"), require_form=False)
            if not right or got.answer.endswith("%") != row["answer"].endswith("%"):
                wrong.append((row["query"], got.answer, row["answer"]))
    assert wrong == [] and taken == []


def test_dev_shaped_generator_answers_are_the_engines() -> None:
    rows = math_dev_queries(seed=7, per_kind=3)
    for row in rows:
        got = ENGINE.solve(row["query"])
        if row["answer"] is None:
            assert got is None, row
        else:
            assert got is not None and answers_match(got.answer, row["answer"], require_form=False), row


@pytest.mark.parametrize(("query", "answer"), [
    ("two thirds of 90", "60"), ("What is 3/4 of 120?", "90"), ("If 3x + 5 = 20, what is x?", "x = 5"),
    ("5 factorial", "120"), ("7 choose 3", "35"), ("the average of 3, 5 and 10", "6"),
    ("increase 80 by 15%", "92"), ("30 out of 120 is what percent", "25%"), ("17 mod 5", "2"),
    ("gcd of 12 and 18", "6"), ("the sum of 2.5 and 4", "6.5"), ("2 to the 10th power", "1024"),
])
def test_everyday_phrasings(query: str, answer: str) -> None:
    got = ENGINE.solve(query)
    assert got is not None and got.answer == answer


@pytest.mark.parametrize("query", [
    "what is 1001 choose 2",                       # over max_factorial
    "remainder when 10^5000 is divided by 7",      # power bound
    "what is 9^9^9 mod 7", "increase 9^9^9 by 5%",  # exponent bound
    "average of " + ", ".join(["2"] * 60),         # list length bound
    "17 mod 0", "gcd of 2.5 and 5", "the average of x and 2", "double x", "sum of 2 and y",
    "If it rains tomorrow, what should I wear?", "What is the average lifespan of a house cat?",
    "What is half of a baseball team called?", "Double check the spelling of necessary.",
    "add 2 and __import__('os')", "if x = 2, what is y",
])
def test_new_phrasings_keep_the_bounds_and_decline(query: str) -> None:
    assert ENGINE.solve(query) is None
