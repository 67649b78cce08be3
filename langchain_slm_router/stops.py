"""Stop sequences: an answer ends at the first one, whole or streamed. The one rule for the LangChain chat model,
the LlamaIndex LLM and both HTTP protocols. A leaf module."""

from __future__ import annotations

from collections.abc import Sequence


class StopCutter:
    """Cuts streamed text at the first stop sequence, holding back what could be the start of one."""

    def __init__(self, stops: Sequence[str] | None) -> None:
        self.stops = [s for s in (stops or []) if s]
        self.buffer = ""
        self.hit = False

    def feed(self, text: str) -> str:
        """The text that can be sent now."""
        if self.hit:
            return ""
        if not self.stops:
            return text
        self.buffer += text
        found = [i for i in (self.buffer.find(s) for s in self.stops) if i != -1]
        if found:
            out, self.buffer, self.hit = self.buffer[: min(found)], "", True
            return out
        keep = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(self.buffer)), 0, -1):
                if self.buffer.endswith(stop[:n]):
                    keep = max(keep, n)
                    break
        out = self.buffer[: len(self.buffer) - keep]
        self.buffer = self.buffer[len(self.buffer) - keep:]
        return out

    def flush(self) -> str:
        """What is held back, at the end of the answer."""
        out, self.buffer = ("" if self.hit else self.buffer), ""
        return out


def cut_at_stop(text: str, stops: Sequence[str] | None) -> tuple[str, bool]:
    """``text`` up to its first stop sequence, and whether one was found."""
    cutter = StopCutter(stops)
    out = cutter.feed(text) + cutter.flush()
    return out, cutter.hit


def normalize_stop(stop: str | Sequence[str] | None) -> list[str]:
    """Stop sequences as a list (one string, a list, or none); empty strings and non-strings are dropped."""
    if stop is None:
        return []
    return ([stop] if stop else []) if isinstance(stop, str) else [s for s in stop if isinstance(s, str) and s]


__all__ = ["StopCutter", "cut_at_stop", "normalize_stop"]
