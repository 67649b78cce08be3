"""Scoring: SQuAD's official normalisation and EM/F1, abstentions, NQ EM, GSM8K final number, symbolic math."""

from __future__ import annotations

import pytest

from langchain_slm_router.evaluation.scoring import (
    final_number,
    gsm8k_reference,
    gsm8k_score,
    is_abstention,
    math_score,
    normalize_answer,
    nq_score,
    score_answer,
    squad_score,
    token_f1,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Normans", "normans"),
        ("  A   cat, the dog!  ", "cat dog"),
        ("Rollo's army.", "rollos army"),
        ("an apple an day", "apple day"),
        ("THE END", "end"),
        ("theatre", "theatre"),  # "the" inside a word stays
        ("", ""),
    ],
)
def test_squad_normalisation(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_token_f1_known_values() -> None:
    assert token_f1("the Norman conquest", "Norman conquest") == 1.0
    # pred "france normandy" vs gold "normandy": p=1/2, r=1 -> 2/3
    assert token_f1("France Normandy", "Normandy") == pytest.approx(2 / 3)
    # pred {10th, century} vs gold {in, 10th, and, 11th, centuries}: one shared token, p=1/2, r=1/5
    assert token_f1("10th century", "in the 10th and 11th centuries") == pytest.approx(2 / 7)
    assert token_f1("Paris", "London") == 0.0
    assert token_f1("", "") == 1.0
    assert token_f1("x", "") == 0.0


def test_squad_em_f1_max_over_answers() -> None:
    s = squad_score("Answer: the 10th century.", ["10th and 11th centuries", "10th century"], unanswerable=False)
    assert s.em == 1.0 and s.f1 == 1.0 and s.correct
    partial = squad_score("in France", ["Normandy, France", "France"], unanswerable=False)
    assert partial.em == 0.0 and partial.f1 == pytest.approx(2 / 3) and partial.correct


def test_squad_unanswerable_needs_abstention() -> None:
    assert squad_score("unanswerable", [], unanswerable=True).score == 1.0
    assert squad_score("The context does not mention it.", [], unanswerable=True).correct
    wrong = squad_score("Rollo", [], unanswerable=True)
    assert wrong.score == 0.0 and not wrong.correct and not wrong.abstained
    # abstaining on an answerable question scores 0, even if the answer happened to be 'unanswerable'-like
    missed = squad_score("unanswerable", ["Rollo"], unanswerable=False)
    assert missed.score == 0.0 and missed.abstained


@pytest.mark.parametrize("reply", ["unanswerable", "Unanswerable.", "No answer", "I don't know", "",
                                   "The passage does not contain the answer."])
def test_abstentions(reply: str) -> None:
    assert is_abstention(reply)


@pytest.mark.parametrize("reply", ["Rollo", "The Normans", "in 911", "Norway, Denmark and Iceland"])
def test_non_abstentions(reply: str) -> None:
    assert not is_abstention(reply)


def test_nq_exact_match() -> None:
    assert nq_score("December 1972", ["14 December 1972 UTC", "December 1972"]).correct
    assert nq_score("Answer: George Orwell.", ["George Orwell"]).em == 1.0
    long = nq_score("The last person was on the moon in December 1972.", ["December 1972"])
    assert long.em == 0.0 and not long.correct  # NQ-open EM is strict


def test_gsm8k_final_number() -> None:
    assert gsm8k_reference("so 9 * 2 = <<9*2=18>>18\n#### 18") == "18"
    assert gsm8k_reference("#### 1,200") == "1200"
    assert final_number("9 eggs at $2 each: 9*2 = 18 dollars.\nAnswer: 18") == "18"
    assert final_number("She makes 18 dollars, then 20 more, total 38") == "38"
    assert final_number("#### 1,234") == "1234"
    assert final_number("Answer: 15 - 42,000 = -27,500") == "-27500"  # last number of the answer line
    assert final_number("no digits") is None
    assert gsm8k_score("The total is 72.", "72").correct
    assert gsm8k_score("Answer: $18.00", "18").correct
    assert not gsm8k_score("Answer: 17", "18").correct
    assert not gsm8k_score("I cannot tell", "18").correct


def test_math_symbolic() -> None:
    assert math_score("x = -7", "x = -7").correct
    assert math_score("The solution is x = -7.", "x = -7").correct
    assert math_score("(x - 8)(x + 8)", "(x - 8)*(x + 8)").correct
    assert math_score("22.5", "45/2").correct
    assert math_score("x = 2 or x = -2", "x = -2, 2").correct
    assert math_score("-x*cos(x) + sin(x) + C", "-x*cos(x) + sin(x) + C").correct
    # echoing the question is equal in value but not an answer
    assert not math_score("x^2 - 64", "(x - 8)*(x + 8)").correct
    assert not math_score("x = 7", "x = -7").correct
    # untrusted text never reaches eval
    assert not math_score("__import__('os').system('echo hi')", "0").correct


def test_score_answer_dispatch_and_unknown() -> None:
    assert score_answer("nq_open", "Paris", ["Paris"]).correct
    assert score_answer("gsm8k", "Answer: 3", ["3"]).correct
    with pytest.raises(ValueError, match="unknown dataset"):
        score_answer("imagenet", "x", ["x"])
