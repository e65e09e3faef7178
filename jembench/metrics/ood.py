"""OOD detection metrics from two score arrays. In-distribution is the POSITIVE class; higher score = more in.

- ``auroc``: area under the ROC curve, ``sklearn.metrics.roc_auc_score`` (ties count 1/2).
- ``aupr_in`` / ``aupr_out``: average precision (``sklearn.metrics.average_precision_score``, the step-wise sum
  sum_k (R_k - R_{k-1}) P_k, not the trapezoid) with in-distribution positive (scores as they are) / OOD positive
  (scores negated).
- ``fpr95_in_kept``: fraction of OOD accepted at the highest threshold that keeps >= 95% of in-distribution
  (ODIN / energy-OOD convention; accept when score >= t).
- ``fpr95_ood_caught``: fraction of in-distribution rejected at the lowest threshold that catches >= 95% of OOD
  (OpenOOD v1.5 / pytorch-ood convention; reject when score <= t).
- ``detection_error``: min over thresholds of 0.5 * (1 - TPR) + 0.5 * FPR (equal priors).
- AUROC confidence interval: stratified percentile bootstrap (in and OOD resampled separately, sizes kept).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import JembenchError
from ..runtime import generator

AUPR_METHOD = "average precision (sklearn.metrics.average_precision_score), step-wise, not trapezoid"
FPR_CONVENTIONS = {
    "fpr95_in_kept": "fraction of OOD accepted when 95% of in-distribution is kept (ODIN, energy-OOD)",
    "fpr95_ood_caught": "fraction of in-distribution rejected when 95% of OOD is caught (OpenOOD v1.5, pytorch-ood)",
}
BOOTSTRAP_BLOCK_VALUES = 1 << 21  # resample weights held at once (bounds memory: 16 MiB of float64)
BOOTSTRAP_METHOD = "stratified percentile bootstrap of AUROC (in and OOD resampled separately with replacement)"


def _numpy(x: Any) -> np.ndarray:
    return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64).ravel()


def _as_array(x: Any, side: str) -> np.ndarray:
    a = _numpy(x)
    if a.size == 0:
        raise JembenchError(f"no {side} scores: the {side} set is empty")
    if not np.isfinite(a).all():
        raise JembenchError(f"{side} scores contain NaN or infinity; the model output overflowed")
    return a


def _labelled(score_in: np.ndarray, score_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.concatenate([np.ones(score_in.size, dtype=np.int64), np.zeros(score_out.size, dtype=np.int64)])
    return y, np.concatenate([score_in, score_out])


def fpr_at_tpr(positive: np.ndarray, negative: np.ndarray, level: float = 0.95) -> float:
    """FPR at the first ROC point whose TPR >= ``level`` (positive = higher score)."""
    from sklearn.metrics import roc_curve  # imported when a metric is computed: listing commands stays light

    y, s = _labelled(positive, negative)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return float(fpr[np.searchsorted(tpr, level - 1e-12, side="left")])


def detection_error(score_in: np.ndarray, score_out: np.ndarray) -> float:
    """min_t 0.5 * (1 - TPR(t)) + 0.5 * FPR(t), in-distribution positive (0.5 = chance)."""
    from sklearn.metrics import roc_curve

    y, s = _labelled(score_in, score_out)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return float(np.min(0.5 * (1.0 - tpr) + 0.5 * fpr))


class PairCounter:
    """AUROC as the Mann-Whitney statistic P(s_in > s_out) + 0.5 P(s_in = s_out), with per-sample weights.

    The sorting is done once, so each bootstrap resample (weights = multiplicities) costs O(N).
    """

    def __init__(self, score_in: np.ndarray, score_out: np.ndarray):
        self.order = np.argsort(score_out, kind="stable")
        sorted_out = score_out[self.order]
        self.below = np.searchsorted(sorted_out, score_in, side="left")
        self.upto = np.searchsorted(sorted_out, score_in, side="right")

    def auroc(self, w_in: np.ndarray, w_out: np.ndarray) -> np.ndarray:
        """AUROC for weights ``[..., n_in]`` and ``[..., n_out]`` (leading dimensions: independent resamples)."""
        return self.auroc_sorted(w_in, np.asarray(w_out, dtype=np.float64)[..., self.order])

    def auroc_sorted(self, w_in: np.ndarray, w_out_sorted: np.ndarray) -> np.ndarray:
        """As :meth:`auroc`, with the OOD weights given in ascending-score order. Integer weights (bootstrap
        multiplicities) are summed exactly in int64, which gives the very values of the float64 sums (every partial
        sum is an integer or half-integer below 2^53) at a lower cost."""
        w_in, w_out_sorted = np.asarray(w_in), np.asarray(w_out_sorted)
        dtype = np.int64 if w_in.dtype.kind in "iu" and w_out_sorted.dtype.kind in "iu" else np.float64
        cum = np.zeros(w_out_sorted.shape[:-1] + (w_out_sorted.shape[-1] + 1,), dtype=dtype)
        np.cumsum(w_out_sorted, axis=-1, out=cum[..., 1:])
        pairs = 0.5 * (w_in.astype(dtype, copy=False) * (cum[..., self.below] + cum[..., self.upto])).sum(-1)
        return pairs / (np.sum(w_in, axis=-1) * w_out_sorted.sum(-1))


def multiplicities(idx: np.ndarray, n: int) -> np.ndarray:
    """Multiplicities ``[k, n]`` (int64) of the index rows ``idx`` ``[k, m]`` into ``n`` items: how often each item
    was drawn by each resample (one ``bincount`` over rows offset by ``n``)."""
    k = idx.shape[0]
    return np.bincount((idx + n * np.arange(k)[:, None]).ravel(), minlength=k * n).reshape(k, n)


def _resample_counts(n: int, k: int, gen: torch.Generator) -> np.ndarray:
    """Multiplicities ``[k, n]`` (int64) of ``k`` bootstrap resamples of ``n`` items (each drawn with
    replacement, from ``gen``)."""
    return multiplicities(torch.randint(n, (k, n), generator=gen).numpy(), n)


def bootstrap_auroc(score_in: Any, score_out: Any, *, resamples: int = 1000, seed: int = 0,
                    level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of AUROC over ``resamples`` stratified bootstrap resamples, seeded (torch generator).

    Resamples are drawn in blocks of ``k`` (k fixed by the set sizes, so the result depends only on the inputs,
    ``resamples`` and ``seed``); each block is evaluated at once with :class:`PairCounter`. OOD draws are taken
    directly as positions in the sorted OOD scores (a uniform draw of an item is a uniform draw of its rank)."""
    a, b = _as_array(score_in, "in-distribution"), _as_array(score_out, "OOD")
    counter, gen = PairCounter(a, b), generator(seed)
    block = max(1, min(resamples, BOOTSTRAP_BLOCK_VALUES // max(a.size, b.size)))
    values = np.concatenate([counter.auroc_sorted(_resample_counts(a.size, k, gen), _resample_counts(b.size, k, gen))
                             for k in (min(block, resamples - s) for s in range(0, resamples, block))])
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1.0 - alpha))


def sanitize(score_in: Any, score_out: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """Non-finite scores made rankable: NaN and -inf rank below every finite score (judged OOD), +inf above.

    Returns the two arrays and how many values were replaced (report it as a warning).
    """
    a, b = _numpy(score_in), _numpy(score_out)
    both = np.concatenate([a, b])
    finite = both[np.isfinite(both)]
    bad = int(both.size - finite.size)
    if bad:
        lo, hi = (finite.min() - 1.0, finite.max() + 1.0) if finite.size else (-1.0, 1.0)
        a, b = (np.nan_to_num(v, nan=lo, posinf=hi, neginf=lo) for v in (a, b))
    return a, b, bad


def ood_metrics(score_in: Any, score_out: Any, *, bootstrap: int = 1000, seed: int = 0,
                level: float = 0.95) -> dict[str, Any]:
    """Every OOD metric of one (score, OOD set) pair; see the module docstring for the definitions.

    Returns ``auroc, auroc_lo, auroc_hi, aupr_in, aupr_out, fpr95_in_kept, fpr95_ood_caught, detection_error,
    n_in, n_out`` (the interval is None when ``bootstrap`` is 0).
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    a, b = _as_array(score_in, "in-distribution"), _as_array(score_out, "OOD")
    y, s = _labelled(a, b)
    lo, hi = bootstrap_auroc(a, b, resamples=bootstrap, seed=seed, level=level) if bootstrap else (None, None)
    return {"auroc": float(roc_auc_score(y, s)), "auroc_lo": lo, "auroc_hi": hi,
            "aupr_in": float(average_precision_score(y, s)),
            "aupr_out": float(average_precision_score(1 - y, -s)),
            "fpr95_in_kept": fpr_at_tpr(a, b),
            "fpr95_ood_caught": fpr_at_tpr(-b, -a),
            "detection_error": detection_error(a, b),
            "n_in": int(a.size), "n_out": int(b.size)}
