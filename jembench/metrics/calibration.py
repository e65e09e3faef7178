"""Calibration metrics on tensors: ECE (equal-width and equal-mass bins), MCE, RMS-CE, classwise ECE,
percentile bootstrap intervals and temperature scaling.

Binning convention (recorded in every protocol): ``bins`` equal-width bins on the top-1 confidence
max_k p_k, bin b = (b/B, (b+1)/B]; a confidence of exactly 0 lands in the first bin, exactly 1.0 in the
last. With n_b samples in bin b, acc_b their accuracy and conf_b their mean confidence:

- ECE  = sum_b (n_b / N) |acc_b - conf_b|           (Naeini et al. 2015; Guo et al. 2017)
- MCE  = max_b over non-empty bins |acc_b - conf_b|
- RMS  = sqrt(sum_b (n_b / N) (acc_b - conf_b)^2)   (torchmetrics' ``norm="l2"``, Hendrycks et al. 2019)
- adaptive ECE: the same sum over B equal-mass bins, edges at the confidence quantiles (Nguyen & O'Connor
  2015; Nixon et al. 2019)
- classwise ECE = 1/K sum_k sum_b (n_bk / N) |freq_bk - conf_bk|, binning each class's probability p_k
  against 1[y = k] (Kull et al. 2019)

torchmetrics' ``MulticlassCalibrationError`` bins [lo, hi) and gives confidence 1.0 a bin of its own; the two
agree whenever no confidence sits exactly on a bin edge.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from ..progress import track
from ..runtime import generator


CALIBRATION_ERRORS = ("ece", "adaptive_ece", "mce", "rms_ce", "classwise_ece")


def bin_index(conf: torch.Tensor, bins: int) -> torch.Tensor:
    """Equal-width bin of every confidence in [0, 1]: (lo, hi] bins, 0 in the first, 1.0 in the last."""
    inner = torch.linspace(0, 1, bins + 1, dtype=torch.float64)[1:-1]
    return torch.bucketize(conf.double().contiguous(), inner, right=False)


def _check(probs: torch.Tensor, labels: torch.Tensor, bins: int) -> None:
    if probs.dim() != 2 or labels.shape != probs.shape[:1]:
        raise ValueError(f"probs must be [N, C] and labels [N], got {tuple(probs.shape)} and {tuple(labels.shape)}")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")


def _binned(conf: torch.Tensor, hits: torch.Tensor, index: torch.Tensor, n_groups: int) -> tuple[torch.Tensor, ...]:
    """Per group: count, mean confidence, mean hit rate (0 for empty groups)."""
    count = torch.bincount(index, minlength=n_groups).double()
    conf_sum = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, index, conf.double())
    hit_sum = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, index, hits.double())
    safe = count.clamp(min=1)
    return count, conf_sum / safe, hit_sum / safe


def reliability_bins(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> dict[str, torch.Tensor]:
    """The reliability table: ``lo``, ``hi``, ``count``, ``confidence`` (mean), ``accuracy`` per equal-width bin."""
    _check(probs, labels, bins)
    conf, pred = probs.max(-1)
    count, conf_mean, acc = _binned(conf, pred == labels, bin_index(conf, bins), bins)
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    return {"lo": edges[:-1], "hi": edges[1:], "count": count, "confidence": conf_mean, "accuracy": acc}


def _gaps(probs: torch.Tensor, labels: torch.Tensor, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    t = reliability_bins(probs, labels, bins)
    return t["count"] / t["count"].sum(), (t["accuracy"] - t["confidence"]).abs()


def ece(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """Expected calibration error, equal-width bins: ``sum_b (n_b/N) |acc_b - conf_b|``."""
    weight, gap = _gaps(probs, labels, bins)
    return float((weight * gap).sum())


def mce(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """Maximum calibration error: the largest ``|acc_b - conf_b|`` over non-empty equal-width bins."""
    weight, gap = _gaps(probs, labels, bins)
    return float(gap[weight > 0].max())


def rms_ce(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """Root-mean-square calibration error: ``sqrt(sum_b (n_b/N) (acc_b - conf_b)^2)``."""
    weight, gap = _gaps(probs, labels, bins)
    return math.sqrt(float((weight * gap ** 2).sum()))


def _quantile_edges(sorted_conf: torch.Tensor, bins: int, n: Optional[int] = None,
                    kth: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> torch.Tensor:
    """Edges at the b/B quantiles of ``n`` sorted confidences (linear interpolation, numpy's default);
    ``kth(j)`` gives the j-th smallest (default: ``sorted_conf[..., j]``)."""
    n = sorted_conf.shape[-1] if n is None else n
    kth = kth or (lambda j: sorted_conf[..., j])
    pos = torch.linspace(0, 1, bins + 1, dtype=torch.float64) * (n - 1)
    lo = pos.floor().long()
    a, b = kth(lo), kth((lo + 1).clamp(max=n - 1))
    return a + (pos - lo) * (b - a)


def adaptive_ece(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE over ``bins`` equal-mass bins: edges at the b/B quantiles of the confidences (linear interpolation,
    numpy's default), bins (lo, hi] as above. Tied confidences share a bin, so a constant predictor's adaptive
    ECE is |conf - acc| like its ECE."""
    _check(probs, labels, bins)
    conf, pred = probs.max(-1)
    conf = conf.double()
    edges = _quantile_edges(conf.sort().values, bins)
    index = torch.bucketize(conf, edges[1:-1].contiguous(), right=False)
    count, conf_mean, acc = _binned(conf, pred == labels, index, bins)
    return float((count / conf.numel() * (acc - conf_mean).abs()).sum())


def classwise_ece(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """Classwise ECE: ``1/K sum_k sum_b (n_bk/N) |freq_bk - conf_bk|`` on each class's own probability."""
    _check(probs, labels, bins)
    n, k = probs.shape
    hits = torch.nn.functional.one_hot(labels, k)
    index = (bin_index(probs, bins) + torch.arange(k) * bins).reshape(-1)  # class k's bins at k*B .. k*B+B-1
    count, conf_mean, freq = _binned(probs.reshape(-1), hits.reshape(-1), index, k * bins)
    return float((count / n * (freq - conf_mean).abs()).sum() / k)


def calibration_errors(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> dict[str, float]:
    """All five at once (the reliability table computed once): ``ece``, ``adaptive_ece``, ``mce``, ``rms_ce``,
    ``classwise_ece``."""
    weight, gap = _gaps(probs, labels, bins)
    return {"ece": float((weight * gap).sum()), "adaptive_ece": adaptive_ece(probs, labels, bins),
            "mce": float(gap[weight > 0].max()), "rms_ce": math.sqrt(float((weight * gap ** 2).sum())),
            "classwise_ece": classwise_ece(probs, labels, bins)}


def bootstrap_ci(metric: Callable[..., float | dict[str, float]], *tensors: torch.Tensor, n_boot: int = 1000,
                 level: float = 0.95, seed: int = 0) -> tuple[float, float] | dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of ``metric(*tensors)``: resample the rows (the first dimension, shared
    by all tensors) with replacement ``n_boot`` times from a ``torch.Generator`` seeded ``seed``; return the
    ``(1-level)/2`` and ``(1+level)/2`` quantiles of the replicates (Efron & Tibshirani 1993). A metric that
    returns a dict gets a dict of intervals (all from the same resamples)."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    n = tensors[0].shape[0]
    gen = generator(seed)
    replicates: list[dict[str, float]] = []
    for _ in range(n_boot):
        idx = torch.randint(0, n, (n,), generator=gen)
        value = metric(*(t[idx] for t in tensors))
        replicates.append(value if isinstance(value, dict) else {"": value})
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    out = {k: tuple(torch.quantile(torch.tensor([r[k] for r in replicates], dtype=torch.float64), q).tolist())
           for k in replicates[0]}
    return out[""] if list(out) == [""] else out


def _membership(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, n_cols: int, n: int) -> torch.Tensor:
    """The sparse ``[n_cols, N]`` matrix with ``values`` at ``(cols, rows)``: bin sums of weights w are ``S @ w``."""
    return torch.sparse_coo_tensor(torch.stack([cols, rows]), values, (n_cols, n), check_invariants=True).coalesce()


def bootstrap_calibration_errors(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15, *, n_boot: int = 1000,
                                 level: float = 0.95, seed: int = 0,
                                 chunk: int = 50, progress: bool = False) -> dict[str, tuple[float, float]]:
    """Percentile-bootstrap intervals of all :func:`calibration_errors`, vectorised over resamples.

    A resample is its multiplicity vector w (how often each row was drawn), so per-bin sums are ``w @ S`` with
    fixed sparse bin-membership matrices S (equal-width, classwise), and the equal-mass bins use the resample's
    own quantile edges. Draws exactly the resamples of ``bootstrap_ci(calibration_errors, probs, labels,
    seed=seed)`` and gives the same intervals (to rounding), about two orders of magnitude faster."""
    _check(probs, labels, bins)
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    n, k = probs.shape
    p = probs.double()
    conf, pred = p.max(-1)
    hit = (pred == labels).double()
    rows = torch.arange(n)
    top, ones = bin_index(conf, bins), torch.ones(n, dtype=torch.float64)
    count_s, diff_s = _membership(rows, top, ones, bins, n), _membership(rows, top, hit - conf, bins, n)
    onehot = torch.nn.functional.one_hot(labels, k).double()
    class_s = _membership(rows.repeat_interleave(k), (bin_index(p, bins) + torch.arange(k) * bins).reshape(-1),
                          (onehot - p).reshape(-1), k * bins, n)
    sorted_conf, order = conf.sort(stable=True)
    gen = generator(seed)
    out: dict[str, list[torch.Tensor]] = {name: [] for name in CALIBRATION_ERRORS}
    for start in track(range(0, n_boot, chunk), desc=f"bootstrap, {n_boot} resamples", unit="block",
                       enabled=progress):
        r = min(chunk, n_boot - start)
        w = torch.stack([torch.bincount(torch.randint(0, n, (n,), generator=gen), minlength=n)
                         for _ in range(r)]).double()  # [r, N] multiplicities
        cnt = torch.sparse.mm(count_s, w.T).T  # [r, B]
        diff = torch.sparse.mm(diff_s, w.T).T  # per bin: sum of (hit - conf) over the resample
        out["ece"].append(diff.abs().sum(1) / n)
        out["rms_ce"].append((diff ** 2 / (cnt.clamp(min=1) * n)).sum(1).sqrt())
        zero = torch.zeros((), dtype=torch.float64)
        out["mce"].append((diff.abs() / cnt.clamp(min=1)).where(cnt > 0, zero).amax(1))
        cum = w[:, order].cumsum(1)  # the j-th smallest of a resample: sorted_conf[first index with cum > j]

        def kth(j: torch.Tensor) -> torch.Tensor:
            targets = j.to(torch.float64).expand(r, -1).contiguous()
            return sorted_conf[torch.searchsorted(cum, targets, right=True).clamp(max=n - 1)]

        edges = _quantile_edges(sorted_conf, bins, n, kth)[:, 1:-1].contiguous()
        a_index = torch.searchsorted(edges, conf.expand(r, n).contiguous(), right=False)
        a_diff = torch.zeros(r, bins, dtype=torch.float64).scatter_add_(1, a_index, w * (hit - conf))
        out["adaptive_ece"].append(a_diff.abs().sum(1) / n)
        out["classwise_ece"].append(torch.sparse.mm(class_s, w.T).T.abs().sum(1) / (n * k))
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    return {name: tuple(torch.quantile(torch.cat(v), q).tolist()) for name, v in out.items()}


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 100,
                    bounds: tuple[float, float] = (1e-4, 1e4)) -> float:
    """Temperature scaling (Guo et al. 2017): ``T = argmin_T NLL(softmax(z / T))``, T within ``bounds``.

    With beta = 1/T, ``f(beta) = mean_i [logsumexp(beta z_i) - beta z_iy]`` is convex, ``f'(beta) = mean_i
    [E_p z_i - z_iy]`` and ``f''(beta) = mean_i Var_p z_i`` (p = softmax(beta z_i)), so the root of the monotone f'
    is found by Newton's method safeguarded by bisection: exact to rounding, and no torch.optim (whose first use
    imports torch._dynamo, seconds on a CPU)."""
    z = logits.detach().double()
    z_true = z.gather(1, labels.long().view(-1, 1)).squeeze(1)

    def derivatives(beta: float) -> tuple[float, float]:
        p = (beta * z).softmax(-1)
        mean = (p * z).sum(-1)
        return float((mean - z_true).mean()), float(((p * z * z).sum(-1) - mean ** 2).mean())

    lo, hi = 1 / bounds[1], 1 / bounds[0]  # bracket on beta
    if derivatives(lo)[0] >= 0:  # NLL grows with beta already at the largest T: the largest T
        return bounds[1]
    if derivatives(hi)[0] <= 0:  # NLL still falls at the smallest T: the smallest T
        return bounds[0]
    beta = min(max(1.0, lo), hi)
    for _ in range(max_iter):
        grad, curv = derivatives(beta)
        if grad == 0:
            break
        lo, hi = (lo, beta) if grad > 0 else (beta, hi)
        step = beta - grad / curv if curv > 0 else math.nan
        beta = step if lo < step < hi else math.sqrt(lo * hi)  # Newton inside the bracket, else bisect
        if hi / lo < 1 + 1e-12:
            break
    return 1 / beta
