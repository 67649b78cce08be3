"""The confidence gate: one protocol (:class:`Gate`) and its implementations.

* :class:`GatePolicy` — thresholds on the SLM's confidence signals (default: mean token probability >= 0.6),
  with an exact early-exit rule.
* :class:`LearnedGate` — a calibrated P(correct) from the answer's features (:mod:`.features`), stored as JSON.
"""

from langchain_slm_router.gates.base import GATES, Gate, GateDecision, make_gate, register_gate
from langchain_slm_router.gates.threshold import DEFAULT_THRESHOLD, GatePolicy
from langchain_slm_router.gates.features import FEATURE_NAMES, gate_features, generation_features
from langchain_slm_router.gates.learned import LearnedGate

__all__ = [
    "DEFAULT_THRESHOLD",
    "FEATURE_NAMES",
    "GATES",
    "Gate",
    "GateDecision",
    "GatePolicy",
    "LearnedGate",
    "gate_features",
    "generation_features",
    "make_gate",
    "register_gate",
]
