"""Classification metrics on tensors: accuracy with a Wilson interval, NLL, Brier score, confusion matrix.

Pure functions of ``(probs | logits, labels)``; no models, no I/O.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import torch


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927; Brown, Cai & DasGupta 2001).

    ``(p + z^2/2n -+ z * sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)`` with ``p = k/n`` and ``z`` the
    ``(1 + level)/2`` normal quantile. ``(nan, nan)`` for ``n = 0``.
    """
    if n <= 0:
        return (math.nan, math.nan)
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)  # exact bounds where rounding leaves ~1e-17
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return (lo, hi)


def accuracy_wilson(probs: torch.Tensor, labels: torch.Tensor, level: float = 0.95) -> tuple[float, float, float]:
    """Top-1 accuracy of ``probs`` (or logits) ``[N, C]`` against ``labels`` ``[N]`` and its Wilson interval:
    ``(accuracy, lo, hi)``."""
    correct = int((probs.argmax(-1) == labels).sum())
    n = int(labels.numel())
    lo, hi = wilson_interval(correct, n, level)
    return (correct / n if n else math.nan, lo, hi)


def nll(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean negative log-likelihood ``-1/N sum_i log softmax(z_i)[y_i]`` (natural log).

    ``logits`` may be any unnormalised log scores, log-probabilities included (log_softmax is idempotent);
    equals scikit-learn's ``log_loss(labels, softmax(logits))`` without its probability clipping.
    """
    return float(torch.nn.functional.cross_entropy(logits.double(), labels, reduction="mean"))


def brier(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Multiclass Brier score ``1/N sum_i sum_k (p_ik - 1[y_i = k])^2`` (Brier 1950), in [0, 2].

    The sum over classes, not the mean (scikit-learn >= 1.7: ``brier_score_loss(..., scale_by_half=False)``).
    """
    onehot = torch.nn.functional.one_hot(labels, probs.shape[-1]).to(torch.float64)
    return float(((probs.double() - onehot) ** 2).sum(-1).mean())


def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Counts ``[n_classes, n_classes]`` int64: row = true class, column = predicted class."""
    idx = labels.long() * n_classes + preds.long()
    return torch.bincount(idx, minlength=n_classes * n_classes).view(n_classes, n_classes)


def per_class_accuracy(cm: torch.Tensor) -> torch.Tensor:
    """Recall of every class from a confusion matrix (NaN for classes absent from the labels)."""
    support = cm.sum(1).double()
    return cm.diag().double() / support.where(support > 0, torch.tensor(math.nan, dtype=torch.float64))
