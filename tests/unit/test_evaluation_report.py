"""The calibration section of the report keeps its data-set heading with or without a calibrated threshold."""

from __future__ import annotations

from langchain_slm_router import SLMRouter
from langchain_slm_router.evaluation.report import calibration_text
from langchain_slm_router.evaluation.summary import DatasetSummary


def _summary(calibrated: float | None) -> DatasetSummary:
    return DatasetSummary(dataset="squad_v2", n=0, seed_threshold=0.6, calibrated_threshold=calibrated, systems=[],
                          aurocs={}, slm_accuracy=0.0, curve=[])


def test_heading_is_kept_without_a_calibrated_threshold() -> None:
    assert calibration_text(_summary(None)) == "### squad_v2\n\nno calibration (a threshold was given)"


def test_a_calibrated_threshold_says_how_to_use_it() -> None:
    text = calibration_text(_summary(0.4567))
    assert text.startswith("### squad_v2\n\n") and text.endswith("SLMRouter().with_options(threshold=0.457)")
    usage = text.rsplit("Use it: ", 1)[1]
    assert usage == "SLMRouter().with_options(threshold=0.457)"
    assert SLMRouter(fallback=None).with_options(threshold=0.457).gate.threshold == 0.457  # the advice works
