"""Detection metrics for binary real (0) / fake (1) scores: AUC, AP, EER, log loss, accuracy.

Plain numpy, exact (ties handled by average ranks), so results do not depend on
a metrics library being installed.

Example:
    >>> m = binary_metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    >>> m["auc"], m["accuracy"]
    (0.75, 0.75)
"""

from __future__ import annotations

import numpy as np


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    ranks = np.empty(len(x), np.float64)
    start = 0
    for end in np.r_[np.flatnonzero(np.diff(xs)) + 1, len(x)]:
        ranks[order[start:end]] = (start + end + 1) / 2.0
        start = end
    return ranks


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve (Mann-Whitney U); NaN when only one class is present."""
    y = np.asarray(labels, bool)
    s = np.asarray(scores, np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = _ranks(s)
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(labels, scores) -> float:
    """Average precision (area under precision-recall, step-wise, as sklearn computes it)."""
    y = np.asarray(labels, bool)
    s = np.asarray(scores, np.float64)
    if not y.any():
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]   # last index of each distinct score
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def equal_error_rate(labels, scores) -> float:
    """The error rate where false-positive and false-negative rates meet (interpolated on the ROC)."""
    y = np.asarray(labels, bool)
    s = np.asarray(scores, np.float64)
    if y.all() or not y.any():
        return float("nan")
    thr = np.r_[np.inf, np.unique(s)[::-1], -np.inf]
    fpr = np.array([(s[~y] >= t).mean() for t in thr])
    fnr = np.array([(s[y] < t).mean() for t in thr])
    d = fpr - fnr
    i = int(np.flatnonzero(d >= 0)[0])
    if d[i] == 0 or i == 0:
        return float(fpr[i])
    w = d[i] / (d[i] - d[i - 1])            # linear interpolation between the two ROC points
    return float(fpr[i] - w * (fpr[i] - fpr[i - 1]))


def log_loss(labels, scores, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of the scores as probabilities."""
    y = np.asarray(labels, np.float64)
    p = np.clip(np.asarray(scores, np.float64), eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def binary_metrics(labels, scores, threshold: float = 0.5) -> dict:
    """AUC, AP, EER, log loss and accuracy at `threshold`, plus the counts."""
    y = np.asarray(labels, np.int64)
    s = np.asarray(scores, np.float64)
    return {"n": int(len(y)), "n_fake": int(y.sum()), "n_real": int(len(y) - y.sum()),
            "auc": roc_auc(y, s), "ap": average_precision(y, s), "eer": equal_error_rate(y, s),
            "log_loss": log_loss(y, s), "accuracy": float(((s >= threshold) == (y == 1)).mean()),
            "threshold": threshold}
