"""The confidence gate: one protocol (:class:`Gate`) and its implementations.

* :class:`GatePolicy` — thresholds on the SLM's confidence signals (default: mean token probability >= 0.6).
"""

from langchain_slm_router.gates.base import GATES, Gate, GateDecision, make_gate, register_gate
from langchain_slm_router.gates.threshold import DEFAULT_THRESHOLD, GatePolicy

__all__ = ["DEFAULT_THRESHOLD", "GATES", "Gate", "GateDecision", "GatePolicy", "make_gate", "register_gate"]
