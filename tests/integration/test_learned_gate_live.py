"""The learned gate and early exit with the real SLM, the real ChatOllama fallback and both integrations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from langchain_slm_router import ChatSLMRouter, GatePolicy, SLMRouter
from langchain_slm_router.gates import LearnedGate, generation_features
from langchain_slm_router.gates.training import read_jsonl, traffic_examples

pytestmark = pytest.mark.integration

QUESTIONS = [
    "What is the capital of France?",
    "Who wrote Romeo and Juliet?",
    "Write a long poem about the sea, the moon and the stars.",
    "Describe the smell of the colour nine in detail.",
]


@pytest.fixture(scope="module")
def generations(slm):
    convs = [[{"role": "user", "content": q}] for q in QUESTIONS]
    return convs, slm.generate_batch(convs)


@pytest.fixture(scope="module")
def learned_gate(generations, tmp_path_factory) -> LearnedGate:
    """A gate fit on the real SLM's features (labels: its own mean-prob rule, so the outcome is known), saved and
    reloaded from JSON as a user would."""
    convs, gens = generations
    rows = [generation_features(g, c) for g, c in zip(gens, convs)]
    # widen the set with perturbed copies so the fit has enough rows of both classes
    widened, labels = [], []
    for i in range(60):
        for row, g in zip(rows, gens):
            shifted = {k: (v * (0.7 + 0.01 * i) if k in ("mean_prob", "q50_prob", "first_prob") else v)
                       for k, v in row.items()}
            widened.append(shifted)
            labels.append(shifted["mean_prob"] >= 0.6)
    path = LearnedGate.fit(widened, labels, seed=0).save(tmp_path_factory.mktemp("gate") / "gate.json")
    return LearnedGate.load(path)


def test_learned_gate_in_chat_model_and_llamaindex_shows_p_correct(slm, fallback_llm, learned_gate) -> None:
    from llama_index_integration import SLMRouterLLM

    chat = ChatSLMRouter(slm=slm, gate=learned_gate, fallback=fallback_llm)
    msg = chat.invoke(QUESTIONS[0])
    route = msg.response_metadata["route"]
    assert 0.0 <= route["p_correct"] <= 1.0 and route["gate_features"]["first_prob"] > 0
    assert route["threshold"] == learned_gate.min_p_correct
    assert route["stage"] == ("slm" if route["p_correct"] >= learned_gate.min_p_correct else "llm")

    li = SLMRouterLLM(slm=slm, gate=learned_gate, fallback=fallback_llm)
    resp = li.complete(QUESTIONS[0])
    assert resp.additional_kwargs["p_correct"] == pytest.approx(route["p_correct"])
    assert resp.text == msg.content
    # threshold is the gate's headline threshold, for the learned gate too
    strict = ChatSLMRouter(slm=slm, gate=learned_gate, threshold=1.0, fallback=fallback_llm)
    strict_route = strict.invoke(QUESTIONS[0]).response_metadata["route"]
    assert strict_route["threshold"] == 1.0 and strict.router.gate.min_p_correct == 1.0
    assert strict_route["stage"] == ("slm" if strict_route["p_correct"] >= 1.0 else "llm")


def test_early_exit_stops_generation_and_never_changes_a_decision(slm, generations) -> None:
    convs, full = generations
    for threshold in (0.6, 0.9):
        gate = GatePolicy(min_mean_prob=threshold)
        early = slm.generate_batch(convs, early_exit=gate.early_exit())
        for f, e in zip(full, early):
            assert gate.decide(e).keep == gate.decide(f).keep
            if e.early_exit:
                assert e.output_tokens < f.output_tokens and not e.finished
                assert e.token_probs == f.token_probs[: e.output_tokens]
            else:
                assert e.text == f.text
        if threshold == 0.9:
            assert sum(e.output_tokens for e in early) < sum(f.output_tokens for f in full)


def test_router_trace_says_it_exited_early(slm) -> None:
    r = SLMRouter(slm=slm, gate=GatePolicy(min_mean_prob=0.99), fallback=None).route(QUESTIONS[2])
    assert r.early_exit and "early exit" in r.reason and r.low_confidence


def test_traffic_log_feeds_train_gate(slm, fallback_llm, tmp_path: Path) -> None:
    from langchain_slm_router.cli import main

    log = tmp_path / "pairs.jsonl"
    router = SLMRouter(slm=slm, gate=GatePolicy(min_mean_prob=0.999, early_exit_enabled=False),
                       fallback=fallback_llm, traffic_log=log)
    results = router.route_batch(QUESTIONS[:2])
    assert all(r.stage == "llm" for r in results)
    rows = read_jsonl(log)
    assert [r["messages"][-1]["content"] for r in rows] == QUESTIONS[:2]
    assert rows[0]["slm"]["text"] == results[0].slm_answer and rows[0]["llm"]["text"] == results[0].answer
    feats, labels = traffic_examples(rows)
    assert len(feats) == 2
    # the test fallback is the same SmolLM2, so its answers agree with the drafts
    assert all(labels)
    # train-gate runs end to end on logged traffic (widened: two rows are too few to fit)
    big = tmp_path / "big.jsonl"
    flipped = [{**r, "llm": {"text": "something else entirely"}} for r in rows]
    big.write_text("".join(json.dumps(r) + "\n" for r in (rows + flipped) * 8))
    out = tmp_path / "gate.json"
    assert main(["train-gate", "--traffic", str(big), "--out", str(out)]) == 0
    gate = LearnedGate.load(out)
    assert gate.info["traffic"] == [str(big)] and gate.info["n_rows"] == 32
