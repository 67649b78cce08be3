"""The gate protocol: keep the small model's answer, or escalate it to the large model.

A gate sees one :class:`~langchain_slm_router.slm.SLMGeneration` (text, token probabilities, signals, whether the
model finished) and the conversation it answered, and returns a :class:`GateDecision`. One abstract method,
:meth:`Gate.decide`; implementations are registered by name in :data:`GATES` (RouteLLM's pattern).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from langchain_slm_router.slm.base import ChatMessageDict, EarlyExit, SLMGeneration


class GateDecision(BaseModel):
    """What the gate decided and why."""

    model_config = ConfigDict(frozen=True)

    keep: bool
    reasons: list[str] = Field(default_factory=list, description="one line per configured check")
    p_correct: float | None = None
    """The gate's calibrated probability that the SLM's answer is right, when it estimates one."""
    features: dict[str, float] | None = None
    """The numbers the gate decided on, when it computes more than the signals (recorded in the trace)."""


class Gate(BaseModel, ABC):
    """Decides whether the SLM's answer is kept."""

    model_config = ConfigDict(frozen=True)

    gate_name: ClassVar[str] = ""

    @abstractmethod
    def decide(self, generation: SLMGeneration, messages: Sequence[ChatMessageDict] = ()) -> GateDecision:
        """Keep (``keep=True``) or escalate the SLM's answer to ``messages``."""

    @property
    def threshold(self) -> float | None:
        """The headline threshold reported in traces (``None`` when the gate has none)."""
        return None

    def with_threshold(self, threshold: float) -> Gate:
        """A copy whose headline threshold is ``threshold``."""
        raise TypeError(f"{type(self).__name__} has no threshold to set")

    def identity(self) -> dict[str, Any]:
        """A small JSON-ready description that tells this gate's configuration apart from any other: what the chat
        model's identifying parameters, the answer cache's configuration digest and the server's batch keys use.
        Default: the gate's own fields (a threshold gate is a few numbers); a gate with a large model overrides it."""
        return {"gate": self.gate_name, **self.model_dump(mode="json")}

    def check_slm(self, slm: Any) -> None:
        """Raise a typed error when the gate cannot judge this SLM's answers (default: any SLM is fine)."""
        return None

    def pre_decide(self, messages: Sequence[ChatMessageDict]) -> GateDecision | None:
        """Before the SLM runs: ``keep=False`` skips it for this query (sent to the fallback at once); ``None``
        (default) when the gate has no pre-generation step."""
        return None

    def early_exit(self) -> EarlyExit | None:
        """A stop rule the SLM may call while it generates (see :data:`~langchain_slm_router.slm.EarlyExit`).

        It must only return True when the finished answer could not be kept whatever the remaining tokens are,
        so that early exit never changes a decision. Default: none.
        """
        return None


GATES: dict[str, type[Gate]] = {}
"""Registered gates by name (``"threshold"``, ...)."""


def register_gate(cls: type[Gate]) -> type[Gate]:
    """Class decorator: register ``cls`` under its ``gate_name``."""
    if not cls.gate_name:
        raise ValueError(f"{cls.__name__} needs a gate_name to be registered")
    GATES[cls.gate_name] = cls
    return cls


def make_gate(name: str, **kwargs: Any) -> Gate:
    """Build the gate registered as ``name`` with ``kwargs``."""
    try:
        cls = GATES[name]
    except KeyError:
        raise ValueError(f"unknown gate {name!r}; expected one of {sorted(GATES)}") from None
    return cls(**kwargs)


__all__ = ["GATES", "Gate", "GateDecision", "make_gate", "register_gate"]
