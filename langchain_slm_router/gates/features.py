"""The numbers a learned gate decides on, computed once per SLM answer.

:func:`gate_features` turns an answer (its per-token probabilities and entropies, its text, whether the model
ended it) and the conversation it answered into a flat ``{name: float}`` dict with the names of
:data:`FEATURE_NAMES`:

* the five summary signals (``mean_prob``, ``min_prob``, ``mean_entropy``, ``mean_logprob``, ``log_length``);
* quantiles of the token probabilities (``q10_prob``, ``q25_prob``, ``q50_prob``) and the first token's
  probability (``first_prob``) — Gupta et al. (ICLR 2024) found the quantiles beat the mean for deferral;
* ``finished`` (the model ended the answer itself) and ``abstained`` (it declined: ``unanswerable`` ...);
* grounding, for prompts that carry a context: ``grounding`` is the share of the answer's words found in the
  prompt, ``has_context`` whether the prompt is long enough to hold one;
* context checks for RAG prompts (0 without a context): ``answer_in_context`` (the normalised answer is a
  verbatim span of the prompt's context), ``question_in_context`` (the share of the question's words, its last
  paragraph, found in the rest of the prompt: low means the context may not hold the answer) and
  ``abstain_vs_context`` (+1 an abstention where the context covers little of the question, -1 one where it
  covers most: ``abstained * (1 - 2 * question_in_context)``);
* the query's shape, with no data-set-specific cue: ``log_query_words``, ``query_has_digits``,
  ``answer_has_digits``, ``n_turns``.

Opt-in, when the SLM sampled K more answers to the same prompt (``LocalSLM(samples=K)``): the sampled-agreement
features of :data:`SAMPLE_FEATURE_NAMES` (:func:`agreement_features`), the cheap form of semantic entropy
(Farquhar et al., Nature 2024): how many samples say what the greedy answer says, and how many different answers
there are, compared after SQuAD's answer normalisation.

The same function serves the router (from an :class:`~langchain_slm_router.slm.SLMGeneration`), the evaluation
harness's records and logged traffic, so a gate is fit and used on identical numbers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from langchain_slm_router.slm.base import SLMGeneration
from langchain_slm_router.statistics import quantile

FEATURE_NAMES: tuple[str, ...] = (
    "mean_prob",
    "min_prob",
    "mean_entropy",
    "mean_logprob",
    "log_length",
    "q10_prob",
    "q25_prob",
    "q50_prob",
    "first_prob",
    "finished",
    "abstained",
    "grounding",
    "has_context",
    "answer_in_context",
    "question_in_context",
    "abstain_vs_context",
    "log_query_words",
    "query_has_digits",
    "answer_has_digits",
    "n_turns",
)
"""Every feature :func:`gate_features` returns, in a fixed order."""

SAMPLE_FEATURE_NAMES: tuple[str, ...] = ("sample_agreement", "sample_distinct")
"""The sampled-agreement features, present only for an answer with samples (:func:`agreement_features`)."""

CONTEXT_MIN_WORDS = 60
"""A user message of at least this many words is taken to carry a context (RAG, reading comprehension)."""

_WORD = re.compile(r"\w+")
_DIGIT = re.compile(r"\d")


def _words(text: str) -> list[str]:
    from langchain_slm_router.text import normalize_answer

    return _WORD.findall(normalize_answer(text))


def gate_features(
    token_probs: Sequence[float],
    token_entropies: Sequence[float],
    text: str,
    finished: bool,
    messages: Sequence[Mapping[str, str]] = (),
) -> dict[str, float]:
    """The features of one SLM answer to ``messages`` (see the module docstring)."""
    from langchain_slm_router.text import is_abstention

    probs = [min(1.0, max(0.0, float(p))) for p in token_probs]
    n = len(probs)
    ordered = sorted(probs)
    user = [str(m.get("content", "")) for m in messages if m.get("role") == "user"]
    prompt = user[-1] if user else ""
    prompt_words = _words(prompt)
    answer_words = _words(text)
    prompt_set = set(prompt_words)
    grounding = (sum(w in prompt_set for w in answer_words) / len(answer_words)) if answer_words else 0.0
    has_context = len(prompt_words) >= CONTEXT_MIN_WORDS
    abstained = float(n > 0 and is_abstention(text))
    in_context = question_cover = 0.0
    if has_context:
        context, _, question = prompt.strip().rpartition("\n\n")
        context_words = _words(context)
        question_words = [w for w in _words(question) if len(w) > 2]
        context_set = set(context_words)
        question_cover = (sum(w in context_set for w in question_words) / len(question_words)
                          if question_words else 0.0)
        in_context = float(not abstained and bool(answer_words) and f" {' '.join(answer_words)} " in f" {' '.join(context_words)} ")
    return {
        "mean_prob": sum(probs) / n if n else 0.0,
        "min_prob": ordered[0] if n else 0.0,
        "mean_entropy": max(0.0, sum(float(h) for h in token_entropies) / n) if n else 0.0,
        "mean_logprob": max(-30.0, sum(math.log(max(p, 1e-13)) for p in probs) / n) if n else -30.0,
        "log_length": math.log1p(n),
        "q10_prob": quantile(ordered, 0.10, empty=0.0),
        "q25_prob": quantile(ordered, 0.25, empty=0.0),
        "q50_prob": quantile(ordered, 0.50, empty=0.0),
        "first_prob": probs[0] if n else 0.0,
        "finished": float(bool(finished)),
        "abstained": abstained,
        "grounding": grounding,
        "has_context": float(has_context),
        "answer_in_context": in_context,
        "question_in_context": question_cover,
        "abstain_vs_context": abstained * (1.0 - 2.0 * question_cover) if has_context else 0.0,
        "log_query_words": math.log1p(len(prompt_words)),
        "query_has_digits": float(bool(_DIGIT.search(prompt))),
        "answer_has_digits": float(bool(_DIGIT.search(text))),
        "n_turns": float(len(user)),
    }


def agreement_features(text: str, samples: Sequence[str]) -> dict[str, float]:
    """``sample_agreement``: the share of ``samples`` whose normalised answer equals ``text``'s;
    ``sample_distinct``: the number of different normalised answers among ``samples``, over their count (1/K when
    all agree, 1 when all differ). Both 0 without samples."""
    from langchain_slm_router.text import normalize_answer

    if not samples:
        return {"sample_agreement": 0.0, "sample_distinct": 0.0}
    greedy = normalize_answer(text)
    normalised = [normalize_answer(s) for s in samples]
    return {"sample_agreement": sum(n == greedy for n in normalised) / len(normalised),
            "sample_distinct": len(set(normalised)) / len(normalised)}


def generation_features(generation: SLMGeneration, messages: Sequence[Mapping[str, str]] = ()) -> dict[str, float]:
    """:func:`gate_features` of an :class:`~langchain_slm_router.slm.SLMGeneration`, with the sampled-agreement
    features when it carries samples."""
    features = gate_features(generation.token_probs, generation.token_entropies, generation.text,
                             generation.finished, messages)
    if generation.samples is not None:
        features.update(agreement_features(generation.text, generation.samples))
    return features


__all__ = ["CONTEXT_MIN_WORDS", "FEATURE_NAMES", "SAMPLE_FEATURE_NAMES", "agreement_features", "gate_features",
           "generation_features"]
