"""Everything reported for one data set, computed from its records: the systems side by side, the threshold
sweep, the signal AUROCs and the calibration."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from langchain_slm_router.evaluation import systems
from langchain_slm_router.evaluation.calibration import CalibrationResult, CalibrationTarget, calibrate
from langchain_slm_router.evaluation.metrics import (
    SystemMetrics,
    default_thresholds,
    signal_aurocs,
    summarize,
    sweep,
)
from langchain_slm_router.evaluation.systems import Record


class DatasetSummary(BaseModel):
    """The results of one data set."""

    dataset: str
    n: int
    seed_threshold: float
    calibrated_threshold: float | None = None
    calibration: CalibrationResult | None = None
    systems: list[SystemMetrics]
    aurocs: dict[str, float | None]
    slm_accuracy: float
    curve: list[dict[str, Any]]


def summarize_dataset(dataset: str, records: Sequence[Record], seed_threshold: float,
                      calib_records: Sequence[Record] | None = None, target: CalibrationTarget | None = None,
                      threshold: float | None = None) -> DatasetSummary:
    """Compare always-SLM, always-LLM, the router at the seed threshold, the router at the calibrated threshold
    (chosen on ``calib_records`` for ``target``, or the given ``threshold``), the oracle and the live router."""
    llm = [systems.always_llm(r) for r in records]
    rows = [
        summarize("always-SLM", [systems.always_slm(r) for r in records], records, llm),
        summarize("always-LLM", llm, records, llm),
        summarize(f"router@seed ({seed_threshold:g})", [systems.router(r, seed_threshold) for r in records],
                  records, llm, threshold=seed_threshold),
    ]
    calibration = None
    calibrated = threshold
    if calib_records and target is not None and threshold is None:
        calibration = calibrate(calib_records, records, target)
        calibrated = calibration.choice.threshold
    if calibrated is not None:
        label = "router@calibrated" if calibration is not None else "router@given"
        rows.append(summarize(f"{label} ({calibrated:.3f})", [systems.router(r, calibrated) for r in records],
                              records, llm, threshold=calibrated))
    rows.append(summarize("oracle", [systems.oracle(r) for r in records], records, llm))
    live = [systems.live_router(r) for r in records]
    if records and all(o is not None for o in live):
        rows.append(summarize(f"router@seed live ({seed_threshold:g})", live, records, llm,  # type: ignore[arg-type]
                              threshold=seed_threshold))
    with_slm = [r for r in records if (r.get("slm") or {}).get("signals")]
    return DatasetSummary(
        dataset=dataset, n=len(records), seed_threshold=seed_threshold, calibrated_threshold=calibrated,
        calibration=calibration, systems=rows, aurocs=signal_aurocs(records),
        slm_accuracy=sum(bool(r["slm"].get("correct")) for r in with_slm) / max(1, len(with_slm)),
        curve=sweep(records, default_thresholds(records)),
    )


__all__ = ["DatasetSummary", "summarize_dataset"]
