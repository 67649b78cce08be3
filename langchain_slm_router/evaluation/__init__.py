"""Evaluation harness, calibration and benchmark reports for langchain-slm-router.

* :mod:`~langchain_slm_router.evaluation.datasets`: SQuAD 2.0, NQ-open, GSM8K, math queries and a mixed workload,
  with seeded samples and disjoint calibration / evaluation splits.
* :mod:`~langchain_slm_router.evaluation.scoring`: the data sets' own scoring (SQuAD EM/F1, NQ EM, GSM8K final
  number, symbolic math).
* :mod:`~langchain_slm_router.evaluation.harness`: runs the math engine, the SLM, the LLM (and the live router)
  once per question, with an on-disk cache (:mod:`~langchain_slm_router.evaluation.cache`).
* :mod:`~langchain_slm_router.evaluation.systems`: always-SLM, always-LLM, router@threshold and oracle, derived
  from the records; :mod:`~langchain_slm_router.evaluation.metrics`: quality, cost, routing and latency metrics.
* :mod:`~langchain_slm_router.evaluation.calibration`: choose a threshold for a target, check it held out.
* :mod:`~langchain_slm_router.evaluation.report`: Markdown, JSON and PNG outputs.

The command line is ``slm-router eval`` / ``slm-router calibrate`` (:mod:`langchain_slm_router.cli`).
Importing this package loads no model.
"""

from langchain_slm_router.evaluation.calibration import CalibrationTarget, calibrate, choose_threshold
from langchain_slm_router.evaluation.datasets import EvalItem, load_dataset
from langchain_slm_router.evaluation.metrics import SystemMetrics, auroc, signal_aurocs, summarize
from langchain_slm_router.evaluation.scoring import Score, score_answer

__all__ = [
    "CalibrationTarget",
    "EvalItem",
    "Score",
    "SystemMetrics",
    "auroc",
    "calibrate",
    "choose_threshold",
    "load_dataset",
    "score_answer",
    "signal_aurocs",
    "summarize",
]
