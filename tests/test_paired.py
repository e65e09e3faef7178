"""Paired comparisons (jembench.metrics.paired) against scipy, closed forms and a brute-force bootstrap that
draws the same resamples with plain indexing and recomputes each statistic with an independent implementation."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import binomtest, norm
from sklearn.metrics import roc_auc_score

from jembench.metrics import paired
from jembench.metrics.calibration import ece


def brute(stat, arrays_by_group, resamples, seed, level=0.95):
    """Resample each group with rng.integers(0, n, (B, n)) in group order (one block), stat on indexed arrays."""
    rng = np.random.default_rng(seed)
    idx = [rng.integers(0, len(g[0]), (resamples, len(g[0]))) for g in arrays_by_group]
    d = np.array([stat(*[[a[i[r]] for a in g] for g, i in zip(arrays_by_group, idx)]) for r in range(resamples)])
    point = stat(*arrays_by_group)
    lo, hi = np.quantile(d, [(1 - level) / 2, (1 + level) / 2])
    se = d.std(ddof=1)
    return point, (lo, hi), 2 * norm.sf(abs(point) / se)


@pytest.fixture
def pair():
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 10, 120)
    correct_a = rng.random(120) < 0.9
    correct_b = rng.random(120) < 0.8
    return labels, correct_a, correct_b


def test_mcnemar_equals_scipy_and_the_closed_form(pair):
    _, a, b = pair
    p, n01, n10 = paired.mcnemar_exact(a, b)
    assert n01 == int(np.sum(a & ~b)) and n10 == int(np.sum(~a & b))
    assert p == pytest.approx(binomtest(n01, n01 + n10, 0.5).pvalue, rel=1e-12)
    n, k = n01 + n10, min(n01, n10)  # exact two-sided: 2 * P(X <= min(b, c)), X ~ Bin(b + c, 1/2)
    assert p == pytest.approx(min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n), rel=1e-12)
    assert paired.mcnemar_exact(a, a) == (1.0, 0, 0)
    # 0 of 6 discordant pairs favour a: p = 2 / 2**6
    assert paired.mcnemar_exact(np.array([0] * 6 + [1] * 4), np.array([1] * 10))[0] == pytest.approx(2 / 64)


def test_accuracy_difference_interval_equals_brute_force(pair):
    _, a, b = pair
    res = paired.accuracy_difference(a, b, resamples=300, seed=3)
    point, (lo, hi), _ = brute(lambda x, : x[0].mean() - x[1].mean(), [(a.astype(float), b.astype(float))], 300, 3)
    assert res.difference == pytest.approx(point) == pytest.approx(a.mean() - b.mean())
    assert res.interval == pytest.approx((lo, hi), abs=1e-12)
    assert res.p_value == paired.mcnemar_exact(a, b)[0] and res.n == 120


def test_mean_difference_p_value_is_the_bootstrap_z_test():
    rng = np.random.default_rng(1)
    x, y = rng.normal(0.3, 1, 80), rng.normal(0, 1, 80)
    res = paired.mean_difference(x, y, resamples=400, seed=5)
    point, (lo, hi), p = brute(lambda g: g[0].mean() - g[1].mean(), [(x, y)], 400, 5)
    assert (res.difference, *res.interval, res.p_value) == pytest.approx((point, lo, hi, p), rel=1e-9)
    same = paired.mean_difference(x, x, resamples=50, seed=0)
    assert same.difference == 0 and same.interval == (0.0, 0.0) and same.p_value == 1.0


def test_ece_difference_equals_brute_force_with_the_reference_ece():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 5, 90)
    pa = torch.softmax(torch.as_tensor(rng.normal(0, 2, (90, 5))), -1).numpy()
    pb = torch.softmax(torch.as_tensor(rng.normal(0, 1, (90, 5))), -1).numpy()

    def ece_of(p, y):
        return ece(torch.as_tensor(p), torch.as_tensor(y), 15)

    res = paired.ece_difference(pa.max(1), pa.argmax(1) == labels, pb.max(1), pb.argmax(1) == labels, 15,
                                resamples=200, seed=11)
    point, (lo, hi), p = brute(lambda g: ece_of(g[0], g[2]) - ece_of(g[1], g[2]), [(pa, pb, labels)], 200, 11)
    assert res.difference == pytest.approx(point, abs=1e-12)
    assert res.interval == pytest.approx((lo, hi), abs=1e-9) and res.p_value == pytest.approx(p, rel=1e-6)


def test_auroc_difference_is_a_stratified_paired_bootstrap_equal_to_brute_force():
    rng = np.random.default_rng(4)
    s_in_a, s_in_b = rng.normal(1, 1, 60), rng.normal(0.5, 1, 60)
    outs_a = [rng.normal(0, 1, 40), rng.normal(-1, 1, 50)]
    outs_b = [o + rng.normal(0, 0.5, o.size) for o in outs_a]

    def auc(pos, neg):
        return roc_auc_score(np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg])

    def stat(g_in, g_o1, g_o2):
        return np.mean([auc(g_in[0], g_o1[0]) - auc(g_in[1], g_o1[1]), auc(g_in[0], g_o2[0]) - auc(g_in[1], g_o2[1])])

    res = paired.auroc_difference(s_in_a, outs_a, s_in_b, outs_b, resamples=150, seed=9)
    point, (lo, hi), p = brute(stat, [(s_in_a, s_in_b), (outs_a[0], outs_b[0]), (outs_a[1], outs_b[1])], 150, 9)
    assert res.difference == pytest.approx(point, abs=1e-12)
    assert res.interval == pytest.approx((lo, hi), abs=1e-12) and res.p_value == pytest.approx(p, rel=1e-9)


def test_resample_weights_are_multiplicities_of_the_same_draws_in_blocks(monkeypatch):
    one = paired.resample_weights([7, 5], 10, seed=0)
    monkeypatch.setattr(paired, "BLOCK_VALUES", 12 * 3)  # blocks of 3 resamples: the draws differ, sums hold
    blocks = paired.resample_weights([7, 5], 10, seed=0)
    assert [b[0].shape[0] for b in blocks] == [3, 3, 3, 1] and len(one) == 1
    assert all(np.all(w[0].sum(1) == 7) and np.all(w[1].sum(1) == 5) for w in blocks)


def test_holm_known_answer():
    assert paired.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert paired.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
