"""NanoQA training pieces that need no SLM weights: losses, answer-only logits, data windows and splits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from langchain_slm_router.training.data import (
    build_examples,
    check_disjoint,
    context_window,
    gsm8k_solution,
    squad_examples,
)
from langchain_slm_router.training.losses import focal_loss, kl_distill_loss


def test_focal_gamma_zero_is_cross_entropy() -> None:
    torch.manual_seed(1)
    logits, targets = torch.randn(13, 50), torch.randint(0, 50, (13,))
    assert torch.allclose(focal_loss(logits, targets, gamma=0.0), F.cross_entropy(logits, targets), atol=1e-6)


def test_focal_gamma_two_matches_formula_and_downweights_easy_tokens() -> None:
    torch.manual_seed(2)
    logits, targets = torch.randn(9, 20), torch.randint(0, 20, (9,))
    p = F.softmax(logits, -1).gather(-1, targets[:, None]).squeeze(-1)
    expected = (-(1 - p) ** 2 * p.log()).mean()
    assert torch.allclose(focal_loss(logits, targets, gamma=2.0), expected, atol=1e-6)
    assert focal_loss(logits, targets, gamma=2.0) < F.cross_entropy(logits, targets)


def test_focal_weights_are_a_weighted_mean() -> None:
    logits, targets = torch.randn(4, 10), torch.tensor([1, 2, 3, 4])
    w = torch.tensor([1.0, 0.0, 0.0, 0.0])
    assert torch.allclose(focal_loss(logits, targets, 0.0, w), F.cross_entropy(logits[:1], targets[:1]), atol=1e-6)


def test_distillation_is_zero_when_student_is_teacher_and_positive_otherwise() -> None:
    torch.manual_seed(3)
    a, b = torch.randn(6, 30), torch.randn(6, 30)
    assert kl_distill_loss(a, a).abs().item() < 1e-6
    assert kl_distill_loss(a, a, temperature=2.0).abs().item() < 1e-6
    assert kl_distill_loss(a, b).item() > 0.01


def test_context_window_is_bounded_and_keeps_the_answer() -> None:
    sents = [f"Sentence number {i} says filler words here and there." for i in range(40)]
    sents[25] = "The tower was finished in 1889 by Gustave Eiffel."
    text = " ".join(sents)
    window = context_window(text, "When was the tower finished?", "1889", max_words=40)
    assert "1889" in window and len(window.split()) <= 40
    unanswerable = context_window(text, "Who finished the tower?", None, max_words=40)
    assert "tower" in unanswerable and len(unanswerable.split()) <= 40
    assert context_window("Short one. Two.", "q", None, 40) == "Short one. Two."


def test_gsm8k_solution_format() -> None:
    out = gsm8k_solution("She sold 48/2 = <<48/2=24>>24 clips.\nTotal 48+24 = <<48+24=72>>72.\n#### 1,072")
    assert out.endswith("Answer: 1072") and "<<" not in out


def test_training_examples_never_come_from_the_evaluation_split(each_data_dir: Path) -> None:
    examples = build_examples(each_data_dir, 60, {"squad_v2": 0.6, "nq_open": 0.2, "gsm8k": 0.2})
    assert {e.dataset for e in examples} == {"squad_v2", "nq_open", "gsm8k"}
    check_disjoint(examples, each_data_dir)
    squad = squad_examples(each_data_dir)
    assert all(e.target == "unanswerable" for e in squad if e.unanswerable)
    answerable = [e for e in squad if not e.unanswerable]
    assert all(e.target in e.prompt and e.target == min(e.answers, key=len) for e in answerable[:200])
    with pytest.raises(ValueError, match="evaluation questions"):
        from langchain_slm_router.evaluation.datasets import load_squad_v2
        from langchain_slm_router.training.data import QAExample

        leak = load_squad_v2(each_data_dir, 1, split="eval")[0]
        check_disjoint([QAExample(id=leak.id, dataset="squad_v2", prompt=leak.prompt, target="x")], each_data_dir)


def test_unanswerable_share_fixes_the_abstention_fraction(each_data_dir: Path) -> None:
    # the fixture's calibration articles hold 16 answerable and 16 unanswerable questions
    natural = build_examples(each_data_dir, 20, {"squad_v2": 1.0})
    fixed = build_examples(each_data_dir, 20, {"squad_v2": 1.0}, unanswerable_share=0.25)
    assert len(fixed) == 20 and sum(ex.unanswerable for ex in fixed) == 5
    assert sum(ex.unanswerable for ex in natural) > 6  # SQuAD 2.0's own share is about a half
    assert sum(ex.target == "unanswerable" for ex in fixed) == 5
    check_disjoint(fixed, each_data_dir)
    with pytest.raises(ValueError, match="unanswerable_share"):
        build_examples(each_data_dir, 10, {"squad_v2": 1.0}, unanswerable_share=1.5)
