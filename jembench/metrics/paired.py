"""Paired comparisons of two models evaluated on the same samples.

- ``paired_bootstrap``: percentile interval of a difference ``stat_a - stat_b`` over bootstrap resamples of the
  samples, the SAME resamples for both models (Efron & Tibshirani 1993, ch. 13; Koehn 2004 for paired system
  comparison). A resample is a multiplicity vector w per sample group (how often each sample was drawn); groups
  (in-distribution and each OOD set) are resampled separately, sizes kept. The two-sided p-value uses the
  bootstrap standard error of the difference, z = d / sd(d*), p = 2 (1 - Phi(|z|)) (the paired bootstrap test of
  pROC's ``roc.test``; Hanley & McNeil 1983); p = 1 when every resample gives d* = d = 0. Several statistics
  can share one set of resamples (``paired_bootstrap_many``: the AUROC of each OOD set and their mean).
- ``mcnemar_exact``: McNemar's exact test on per-sample correctness: with b = #(a right, b wrong) and
  c = #(a wrong, b right), p = two-sided binomial test of b successes in b + c trials at 1/2
  (``scipy.stats.binomtest``; McNemar 1947, exact form: Edwards 1948).
- ``holm``: Holm (1979) step-down adjustment of a family of p-values (controls the family-wise error rate).

Statistics are written as functions of the weights so one sort (AUROC) or one binning (ECE) serves every resample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .ood import PairCounter, multiplicities

BLOCK_VALUES = 1 << 21  # weights held at once per block of resamples (16 MiB of float64)
BOOTSTRAP = "paired percentile bootstrap (same resamples for both models), p from its standard error"
MCNEMAR = "McNemar exact (two-sided binomial test on discordant pairs, scipy.stats.binomtest)"

Stat = Callable[[Sequence[np.ndarray]], np.ndarray]  # weights per group, each [k, n_group] -> differences [k]


@dataclass(frozen=True)
class Difference:
    """``a - b`` of one metric, its interval and p-value, and the test that gave them."""

    difference: float
    interval: tuple[float, float]
    p_value: float
    test: str
    n: int


def resample_weights(sizes: Sequence[int], resamples: int, seed: int) -> list[list[np.ndarray]]:
    """Blocks of multiplicity vectors: ``blocks[j][g]`` is ``[k_j, sizes[g]]`` (rows sum to ``sizes[g]``), drawn
    from ``numpy.random.default_rng(seed)``: per block, each group's indices ``integers(0, n, (k, n))`` in turn."""
    rng = np.random.default_rng(seed)
    block = max(1, min(resamples, BLOCK_VALUES // max(1, sum(sizes))))
    blocks = []
    for start in range(0, resamples, block):
        k = min(block, resamples - start)
        blocks.append([multiplicities(rng.integers(0, n, (k, n)), n).astype(np.float64) for n in sizes])
    return blocks


def paired_bootstrap_many(stat: Stat, sizes: Sequence[int], *, resamples: int = 1000, seed: int = 0,
                          level: float = 0.95) -> list[Difference]:
    """Like :func:`paired_bootstrap` for a ``stat`` returning ``[k, m]``: m differences from the same resamples."""
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    points = np.asarray(stat([np.ones((1, n)) for n in sizes]), dtype=np.float64).reshape(1, -1)[0]
    d = np.concatenate([np.asarray(stat(w), dtype=np.float64).reshape(len(w[0]), -1)
                        for w in resample_weights(sizes, resamples, seed)])
    alpha = (1.0 - level) / 2.0
    out = []
    for j, point in enumerate(points):
        lo, hi = np.quantile(d[:, j], [alpha, 1.0 - alpha])
        se = float(np.std(d[:, j], ddof=1)) if len(d) > 1 else 0.0
        out.append(Difference(float(point), (float(lo), float(hi)), z_test(float(point), se), BOOTSTRAP,
                              int(sizes[0])))
    return out


def paired_bootstrap(stat: Stat, sizes: Sequence[int], **kw) -> Difference:
    """Difference ``stat(ones)`` with its percentile interval and bootstrap p-value (see the module docstring)."""
    return paired_bootstrap_many(stat, sizes, **kw)[0]


def z_test(difference: float, se: float) -> float:
    """Two-sided p of ``difference`` with standard error ``se`` (normal): erfc(|d| / (se sqrt 2)); 1 for 0 / 0,
    0 for d / 0."""
    if se <= 0:
        return 1.0 if difference == 0 else 0.0
    return math.erfc(abs(difference) / se / math.sqrt(2.0))


def mean_difference(x_a: np.ndarray, x_b: np.ndarray, **kw) -> Difference:
    """mean(x_a) - mean(x_b) of per-sample values (correctness, NLL, Brier terms), paired bootstrap."""
    delta = np.asarray(x_a, dtype=np.float64) - np.asarray(x_b, dtype=np.float64)
    return paired_bootstrap(lambda w: w[0] @ delta / delta.size, [delta.size], **kw)


def ece_difference(conf_a: np.ndarray, hit_a: np.ndarray, conf_b: np.ndarray, hit_b: np.ndarray, bins: int,
                   **kw) -> Difference:
    """ECE(a) - ECE(b), equal-width bins (lo, hi] on the confidence (0 in the first bin), paired bootstrap.

    ECE = sum_b |sum_{i in b} w_i (hit_i - conf_i)| / N for resample weights w (:mod:`jembench.metrics.calibration`).
    """
    def membership(conf: np.ndarray, hit: np.ndarray) -> np.ndarray:
        index = np.searchsorted(np.linspace(0, 1, bins + 1)[1:-1], np.asarray(conf, dtype=np.float64), side="left")
        m = np.zeros((len(conf), bins))
        m[np.arange(len(conf)), index] = np.asarray(hit, dtype=np.float64) - conf
        return m

    ma, mb, n = membership(conf_a, hit_a), membership(conf_b, hit_b), len(conf_a)
    return paired_bootstrap(lambda w: (np.abs(w[0] @ ma).sum(1) - np.abs(w[0] @ mb).sum(1)) / n, [n], **kw)


def auroc_differences(in_a: np.ndarray, outs_a: Sequence[np.ndarray], in_b: np.ndarray,
                      outs_b: Sequence[np.ndarray], **kw) -> list[Difference]:
    """AUROC of each OOD set and their mean, a minus b (in-distribution positive), from one paired stratified
    bootstrap: the in-distribution samples are resampled once per resample and shared by every set, each OOD set
    separately. Returns one :class:`Difference` per set, then the mean's."""
    pairs_a = [PairCounter(np.asarray(in_a, float), np.asarray(o, float)) for o in outs_a]
    pairs_b = [PairCounter(np.asarray(in_b, float), np.asarray(o, float)) for o in outs_b]

    def stat(w: Sequence[np.ndarray]) -> np.ndarray:
        per_set = np.stack([pa.auroc(w[0], wo) - pb.auroc(w[0], wo)
                            for pa, pb, wo in zip(pairs_a, pairs_b, w[1:])], -1)
        return np.concatenate([per_set, per_set.mean(-1, keepdims=True)], -1)

    res = paired_bootstrap_many(stat, [len(in_a), *(len(o) for o in outs_a)], **kw)
    return [Difference(r.difference, r.interval, r.p_value, r.test + ", stratified", len(in_a)) for r in res]


def auroc_difference(in_a: np.ndarray, outs_a: Sequence[np.ndarray], in_b: np.ndarray,
                     outs_b: Sequence[np.ndarray], **kw) -> Difference:
    """Mean AUROC over the OOD sets, a minus b (:func:`auroc_differences`)."""
    return auroc_differences(in_a, outs_a, in_b, outs_b, **kw)[-1]


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[float, int, int]:
    """``(p, b, c)``: b = #(a right, b wrong), c = #(a wrong, b right); p = binomtest(b, b + c, 1/2), 1 if b + c = 0."""
    from scipy.stats import binomtest

    a, b_ = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b_.shape:
        raise ValueError(f"paired arrays differ in shape: {a.shape} vs {b_.shape}")
    b, c = int(np.sum(a & ~b_)), int(np.sum(~a & b_))
    return (1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)), b, c


def accuracy_difference(correct_a: np.ndarray, correct_b: np.ndarray, **kw) -> Difference:
    """acc(a) - acc(b) with its paired-bootstrap interval and McNemar's exact p-value."""
    res = mean_difference(correct_a, correct_b, **kw)
    p, b, c = mcnemar_exact(correct_a, correct_b)
    return Difference(res.difference, res.interval, p, f"{MCNEMAR}; interval: {BOOTSTRAP}", res.n)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values: sorted ascending, p_(i) * (m - i) (i from 0), made monotone, capped at 1."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p)))))
    out = np.empty_like(adjusted)
    out[order] = adjusted
    return out.tolist()
