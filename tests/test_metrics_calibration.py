"""Calibration metrics: known answers, agreement with torchmetrics (and numpy/scipy) on the same inputs.

torchmetrics' MulticlassCalibrationError bins [lo, hi) and gives confidence 1.0 a bin of its own; ours bins
(lo, hi] with 1.0 in the last bin. Its ``norm="l2"`` is sqrt(sum_b n_b/N (acc_b - conf_b)^2), our ``rms_ce``;
``norm="max"`` is our ``mce``. With continuous confidences (none on a bin edge) all three agree exactly.
"""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar
from torchmetrics.classification import BinaryCalibrationError, MulticlassCalibrationError

from jembench.metrics import (adaptive_ece, bin_index, bootstrap_calibration_errors, bootstrap_ci, calibration_errors,
                              classwise_ece, ece, fit_temperature, mce, nll, reliability_bins, rms_ce)


def _dirichlet(n, k, seed, concentration=0.5):
    g = torch.Generator().manual_seed(seed)
    gam = torch._standard_gamma(torch.full((n, k), concentration, dtype=torch.float64), generator=g)
    return gam / gam.sum(-1, keepdim=True), g


def _calibrated(n=20000, k=10, seed=0):
    """A perfectly calibrated predictor: labels drawn from the predicted distribution."""
    probs, g = _dirichlet(n, k, seed)
    return probs, torch.multinomial(probs, 1, generator=g).squeeze(1)


def _miscalibrated(n=3000, k=10, seed=1):
    probs, g = _dirichlet(n, k, seed)
    return probs, torch.randint(0, k, (n,), generator=g)


def test_perfectly_calibrated_predictor_has_ece_near_zero():
    probs, labels = _calibrated()
    assert ece(probs, labels) < 0.015
    assert adaptive_ece(probs, labels) < 0.015
    assert rms_ce(probs, labels) < 0.02
    assert classwise_ece(probs, labels) < 0.005
    p2, y2 = _miscalibrated()
    assert ece(p2, y2) > 0.2  # the test can fail: random labels are far from calibrated


def test_constant_confidence_predictor_has_ece_equal_to_gap():
    n, k = 1000, 5
    probs = torch.full((n, k), 0.3 / (k - 1), dtype=torch.float64)
    probs[:, 0] = 0.7
    labels = torch.zeros(n, dtype=torch.long)
    labels[600:] = 2  # accuracy 0.6, confidence 0.7
    for fn in (ece, mce, rms_ce, adaptive_ece):
        assert fn(probs, labels, 15) == pytest.approx(0.1, abs=1e-12), fn.__name__


def test_bin_edges_are_left_open_right_closed_with_one_in_the_last_bin():
    conf = torch.tensor([0.0, 1e-9, 0.2, 0.2 + 1e-9, 0.6, 0.99, 1.0], dtype=torch.float64)
    assert bin_index(conf, 5).tolist() == [0, 0, 0, 1, 2, 4, 4]
    assert bin_index(torch.tensor([1.0]), 15).item() == 14
    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    table = reliability_bins(probs, torch.tensor([0, 1]), 10)
    assert table["count"][-1] == 1 and table["accuracy"][-1] == 1.0 and table["confidence"][-1] == 1.0
    assert table["count"][4] == 1  # 0.5 lies in (0.4, 0.5]


@pytest.mark.parametrize("norm,ours", [("l1", ece), ("max", mce), ("l2", rms_ce)])
@pytest.mark.parametrize("bins", [15, 20])
def test_agrees_with_torchmetrics(norm, ours, bins):
    probs, labels = _miscalibrated(2000, 10, seed=bins)
    probs = (probs * 0.5 + 0.05).float()  # confidences spread over the bins, none on an edge
    probs = probs / probs.sum(-1, keepdim=True)
    ref = MulticlassCalibrationError(num_classes=10, n_bins=bins, norm=norm)(probs, labels)
    assert ours(probs, labels, bins) == pytest.approx(float(ref), abs=1e-6)


def test_classwise_ece_equals_mean_of_torchmetrics_binary_per_class():
    probs, labels = _miscalibrated(1500, 6, seed=4)
    probs = probs.float()
    ref = np.mean([float(BinaryCalibrationError(n_bins=15, norm="l1")(probs[:, c], (labels == c).long()))
                   for c in range(6)])
    assert classwise_ece(probs, labels, 15) == pytest.approx(ref, abs=1e-6)


def test_adaptive_ece_matches_numpy_quantile_bins():
    probs, labels = _miscalibrated(1003, 10, seed=5)
    conf, pred = (t.numpy() for t in probs.max(-1))
    hits = pred == labels.numpy()
    edges = np.quantile(conf, np.linspace(0, 1, 16))
    group = np.searchsorted(edges[1:-1], conf, side="left")  # (lo, hi]
    sizes = np.bincount(group, minlength=15)
    assert sizes.min() >= 1003 // 15 - 1 and sizes.max() <= 1003 // 15 + 2  # equal mass
    ref = sum(sizes[b] / 1003 * abs(hits[group == b].mean() - conf[group == b].mean()) for b in range(15))
    assert adaptive_ece(probs, labels, 15) == pytest.approx(ref, abs=1e-12)


def test_calibration_errors_bundles_the_five():
    probs, labels = _miscalibrated(500, 10, seed=6)
    bundle = calibration_errors(probs, labels, 12)
    for name, fn in [("ece", ece), ("adaptive_ece", adaptive_ece), ("mce", mce), ("rms_ce", rms_ce),
                     ("classwise_ece", classwise_ece)]:
        assert bundle[name] == pytest.approx(fn(probs, labels, 12), abs=1e-12)


def test_bootstrap_ci_is_seeded_and_has_the_normal_width():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, generator=g, dtype=torch.float64)
    mean = lambda t: float(t.mean())  # noqa: E731
    lo, hi = bootstrap_ci(mean, x, n_boot=400, seed=1)
    assert lo < float(x.mean()) < hi
    assert hi - lo == pytest.approx(2 * 1.96 * float(x.std()) / math.sqrt(2000), rel=0.15)
    assert bootstrap_ci(mean, x, n_boot=400, seed=1) == (lo, hi)
    assert bootstrap_ci(mean, x, n_boot=400, seed=2) != (lo, hi)
    both = bootstrap_ci(lambda t: {"mean": float(t.mean()), "max": float(t.max())}, x, n_boot=50, seed=1)
    assert set(both) == {"mean", "max"} and both["mean"] == bootstrap_ci(mean, x, n_boot=50, seed=1)


@pytest.mark.parametrize("n,k,bins", [(257, 10, 15), (400, 3, 20)])
def test_vectorised_bootstrap_equals_the_resampling_loop(n, k, bins):
    probs, labels = _miscalibrated(n, k, seed=n)
    probs = probs.float()
    loop = bootstrap_ci(lambda p, y: calibration_errors(p, y, bins), probs, labels, n_boot=60, level=0.9, seed=11)
    fast = bootstrap_calibration_errors(probs, labels, bins, n_boot=60, level=0.9, seed=11, chunk=16)
    assert set(fast) == set(loop)
    for name in loop:
        assert fast[name] == pytest.approx(loop[name], abs=1e-12), name


def test_fit_temperature_recovers_the_true_temperature_and_minimises_nll():
    n, k, t_true = 4000, 10, 2.5
    g = torch.Generator().manual_seed(7)
    base = 2 * torch.randn(n, k, generator=g, dtype=torch.float64)
    labels = torch.multinomial(base.softmax(-1), 1, generator=g).squeeze(1)
    logits = base * t_true  # overconfident by a factor t_true
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(t_true, rel=0.1)
    ref = minimize_scalar(lambda s: nll(logits / s, labels), bounds=(0.05, 20), method="bounded").x
    assert t == pytest.approx(ref, rel=1e-3)
    assert ece((logits / t).softmax(-1), labels) < ece(logits.softmax(-1), labels)


def test_fit_temperature_bounds():
    z = 3 * torch.eye(5, dtype=torch.float64)
    assert fit_temperature(z, torch.arange(5)) == 1e-4  # always right: NLL falls as T -> 0, the lower bound
    assert fit_temperature(z, torch.arange(5).roll(1)) == 1e4  # always wrong: NLL falls as T grows, the upper bound
    assert fit_temperature(z, torch.arange(5).roll(1), bounds=(0.1, 50.0)) == 50.0
