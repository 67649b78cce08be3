"""The statistics the library computes itself: one quantile rule, AUROC, calibration error, precision/recall.

A leaf module (it imports nothing of the package): the runtime gate (``gates/``), the gate features and the
evaluation harness all use these, so none of them reaches into another layer for a formula.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def quantile(sorted_values: Sequence[float], q: float, empty: float = math.nan) -> float:
    """Linear-interpolated quantile (``q`` in [0, 1]) of already sorted values (numpy's default method);
    ``empty`` when there are none."""
    if not sorted_values:
        return empty
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in [0, 100]) of ``values``; NaN when empty."""
    return quantile(sorted(values), q / 100.0)


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve of ``scores`` for ``labels`` (True = positive); ``None`` with one class only.

    The rank-sum (Mann-Whitney) formula, ties counted half.
    """
    if len(scores) != len(labels):
        raise ValueError("scores and labels must have the same length")
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    if not pos or not neg:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        avg = (i + j) / 2.0 + 1.0
        for k in range(i, j + 1):
            ranks[order[k]] = avg
        i = j + 1
    rank_pos = sum(r for r, y in zip(ranks, labels) if y)
    return (rank_pos - len(pos) * (len(pos) + 1) / 2.0) / (len(pos) * len(neg))


def expected_calibration_error(probs: Sequence[float], labels: Sequence[Any], bins: int = 10) -> float:
    """ECE: the sample-weighted mean |accuracy - confidence| over ``bins`` equal-width probability bins."""
    n = len(probs)
    if n == 0:
        return 0.0
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, p in enumerate(probs) if (lo <= p < hi) or (b == bins - 1 and p == 1.0)]
        if idx:
            conf = sum(probs[i] for i in idx) / len(idx)
            acc = sum(bool(labels[i]) for i in idx) / len(idx)
            total += len(idx) / n * abs(acc - conf)
    return total


def precision_recall_f1(predicted: Sequence[bool], actual: Sequence[bool]) -> tuple[float | None, float | None,
                                                                                      float | None]:
    """Precision, recall and F1 of ``predicted`` positives against ``actual`` ones (``None`` when undefined)."""
    tp = sum(p and a for p, a in zip(predicted, actual))
    fp = sum(p and not a for p, a in zip(predicted, actual))
    fn = sum(a and not p for p, a in zip(predicted, actual))
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    if precision is None or recall is None:
        f1 = None
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


__all__ = ["auroc", "expected_calibration_error", "percentile", "precision_recall_f1", "quantile"]
