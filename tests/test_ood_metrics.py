"""OOD metrics: known answers, agreement with scikit-learn, both FPR conventions by brute force, bootstrap."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from jembench.errors import JembenchError
from jembench.metrics.ood import PairCounter, bootstrap_auroc, ood_metrics, sanitize


def _brute(score_in, score_out):
    """Both FPR conventions and the detection error by scanning every threshold, no sklearn."""
    ts = np.unique(np.concatenate([score_in, score_out, [np.inf]]))
    in_kept = min((score_out >= t).mean() for t in ts if (score_in >= t).mean() >= 0.95)
    ood_caught = min((score_in <= t).mean() for t in ts if (score_out <= t).mean() >= 0.95)
    det = min(0.5 * (1 - (score_in >= t).mean()) + 0.5 * (score_out >= t).mean() for t in ts)
    return in_kept, ood_caught, det


def test_perfect_separation():
    m = ood_metrics(np.arange(10, 20.0), np.arange(0, 10.0), bootstrap=50)
    assert m["auroc"] == 1.0 and m["aupr_in"] == pytest.approx(1.0) and m["aupr_out"] == pytest.approx(1.0)
    assert m["fpr95_in_kept"] == 0.0 and m["fpr95_ood_caught"] == 0.0 and m["detection_error"] == 0.0
    assert m["auroc_lo"] == 1.0 and m["auroc_hi"] == 1.0
    assert (m["n_in"], m["n_out"]) == (10, 10)


def test_reversed_scores_are_worst_case():
    m = ood_metrics(np.arange(0, 10.0), np.arange(10, 20.0), bootstrap=0)
    assert m["auroc"] == 0.0 and m["fpr95_in_kept"] == 1.0 and m["fpr95_ood_caught"] == 1.0
    assert m["auroc_lo"] is None


def test_identical_distributions_near_chance():
    rng = np.random.default_rng(0)
    m = ood_metrics(rng.normal(size=4000), rng.normal(size=3000), bootstrap=200, seed=1)
    assert abs(m["auroc"] - 0.5) < 0.03
    assert m["auroc_lo"] < 0.5 < m["auroc_hi"]
    assert abs(m["fpr95_in_kept"] - 0.95) < 0.03 and abs(m["fpr95_ood_caught"] - 0.95) < 0.03
    assert m["detection_error"] > 0.46


def test_hand_example_fpr_conventions_differ():
    # in: 20 scores 1..20; out: 17 scores below every in score plus 3 above every in score
    score_in = np.arange(1, 21, dtype=float)
    score_out = np.concatenate([np.arange(-17, 0, dtype=float), [30.0, 31.0, 32.0]])
    m = ood_metrics(score_in, score_out, bootstrap=0)
    # keep 95% of in (19 of 20: threshold 2): OOD accepted = 3 of 20
    assert m["fpr95_in_kept"] == pytest.approx(3 / 20)
    # catch 95% of OOD (19 of 20: reject <= 31): in rejected = all 20
    assert m["fpr95_ood_caught"] == pytest.approx(1.0)


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, True)])
def test_agrees_with_sklearn_and_brute_force(seed, ties):
    rng = np.random.default_rng(seed)
    score_in, score_out = rng.normal(1.0, 1.0, 300), rng.normal(0.0, 1.5, 200)
    if ties:
        score_in, score_out = np.round(score_in, 1), np.round(score_out, 1)
    m = ood_metrics(score_in, score_out, bootstrap=0)
    y = np.r_[np.ones(300), np.zeros(200)]
    s = np.r_[score_in, score_out]
    assert m["auroc"] == pytest.approx(roc_auc_score(y, s))
    assert m["aupr_in"] == pytest.approx(average_precision_score(y, s))
    assert m["aupr_out"] == pytest.approx(average_precision_score(1 - y, -s))
    assert m["aupr_in"] != pytest.approx(m["aupr_out"])
    in_kept, ood_caught, det = _brute(score_in, score_out)
    assert m["fpr95_in_kept"] == pytest.approx(in_kept)
    assert m["fpr95_ood_caught"] == pytest.approx(ood_caught)
    assert m["detection_error"] == pytest.approx(det)


def test_weighted_auroc_equals_sklearn_on_repeated_samples():
    rng = np.random.default_rng(3)
    a, b = np.round(rng.normal(0.5, 1, 60), 1), np.round(rng.normal(0, 1, 40), 1)
    w_a, w_b = rng.integers(0, 4, 60), rng.integers(0, 4, 40)
    y = np.r_[np.ones(w_a.sum()), np.zeros(w_b.sum())]
    expected = roc_auc_score(y, np.r_[np.repeat(a, w_a), np.repeat(b, w_b)])
    counter = PairCounter(a, b)
    assert counter.auroc(w_a, w_b) == pytest.approx(expected)
    assert counter.auroc(w_a, w_b) == counter.auroc(w_a.astype(float), w_b.astype(float))  # int64 path == float64
    batch = counter.auroc(np.stack([w_a, np.ones(60)]), np.stack([w_b, np.ones(40)]))  # resamples as rows
    assert batch[0] == pytest.approx(expected) and batch[1] == pytest.approx(roc_auc_score(np.r_[np.ones(60),
                                                                                        np.zeros(40)], np.r_[a, b]))


def test_bootstrap_seeded_and_sensible():
    rng = np.random.default_rng(4)
    a, b = rng.normal(1, 1, 200), rng.normal(0, 1, 150)
    ci = bootstrap_auroc(a, b, resamples=300, seed=7)
    assert ci == bootstrap_auroc(a, b, resamples=300, seed=7)
    assert ci != bootstrap_auroc(a, b, resamples=300, seed=8)
    auroc = roc_auc_score(np.r_[np.ones(200), np.zeros(150)], np.r_[a, b])
    assert ci[0] < auroc < ci[1] and ci[1] - ci[0] < 0.2


def test_non_finite_scores():
    with pytest.raises(JembenchError, match="NaN or infinity"):
        ood_metrics([1.0, np.nan], [0.0], bootstrap=0)
    a, b, bad = sanitize(np.array([1.0, np.inf]), np.array([np.nan, 0.0, -np.inf]))
    assert bad == 3 and np.isfinite(a).all() and a[1] > a[0] and b[0] < b[1] and b[2] < b[1]
    with pytest.raises(JembenchError, match="empty"):
        ood_metrics([], [1.0])


def test_bootstrap_width_matches_delong_standard_error():
    """Independent check of the interval: DeLong's (1988) variance of the Mann-Whitney AUROC."""
    rng = np.random.default_rng(5)
    a, b = rng.normal(1, 1, 300), rng.normal(0, 1.3, 250)
    psi = (a[:, None] > b[None, :]) + 0.5 * (a[:, None] == b[None, :])
    se = np.sqrt(psi.mean(1).var(ddof=1) / a.size + psi.mean(0).var(ddof=1) / b.size)
    lo, hi = bootstrap_auroc(a, b, resamples=2000, seed=0)
    assert (hi - lo) / (2 * 1.959964) == pytest.approx(se, rel=0.12)
    assert (lo + hi) / 2 == pytest.approx(psi.mean(), abs=0.25 * se)
