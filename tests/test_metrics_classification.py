"""Classification metrics: known answers and agreement with scikit-learn on the same inputs."""

import math

import numpy as np
import pytest
import sklearn
import torch
from sklearn.metrics import brier_score_loss, log_loss
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from jembench.metrics import accuracy_wilson, brier, confusion_matrix, nll, per_class_accuracy, wilson_interval


def _random(n=500, k=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(n, k, generator=g, dtype=torch.float64)
    labels = torch.randint(0, k, (n,), generator=g)
    return logits, labels


@pytest.mark.parametrize("k,n,lo,hi", [
    (81, 263, 0.2553, 0.3662),  # Newcombe (1998), Stat. Med. 17:857, Table I, method 3 (Wilson score)
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
])
def test_wilson_interval_matches_newcombe(k, n, lo, hi):
    got = wilson_interval(k, n, 0.95)
    assert got == pytest.approx((lo, hi), abs=6e-5)


def test_wilson_interval_edges():
    assert wilson_interval(10, 10)[1] == 1.0
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    assert wilson_interval(50, 100, 0.99)[0] < wilson_interval(50, 100, 0.95)[0]


def test_accuracy_wilson_counts_top1():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    acc, lo, hi = accuracy_wilson(probs, torch.tensor([0, 1, 1, 1]))
    assert acc == 0.75
    assert (lo, hi) == pytest.approx(wilson_interval(3, 4))


def test_nll_matches_sklearn_log_loss():
    logits, labels = _random()
    probs = logits.softmax(-1).numpy()
    assert nll(logits, labels) == pytest.approx(log_loss(labels.numpy(), probs, labels=list(range(7))), rel=1e-9)
    assert nll(logits.log_softmax(-1), labels) == pytest.approx(nll(logits, labels), rel=1e-12)  # log-probs too


def test_brier_known_answers():
    k = 4
    labels = torch.arange(k)
    assert brier(torch.eye(k), labels) == 0.0
    assert brier(torch.full((k, k), 1 / k), labels) == pytest.approx(1 - 1 / k)  # (1-1/K)^2 + (K-1)/K^2
    assert brier(torch.eye(k).roll(1, 0), labels) == pytest.approx(2.0)  # always confidently wrong


def test_brier_is_the_sum_over_classes_as_in_sklearn():
    logits, labels = _random()
    probs = logits.softmax(-1)
    major, minor = (int(v) for v in sklearn.__version__.split(".")[:2])
    if (major, minor) >= (1, 7):  # multiclass Brier; scale_by_half=False keeps the sum over classes
        ref = brier_score_loss(labels.numpy(), probs.numpy(), labels=list(range(7)), scale_by_half=False)
    else:  # older sklearn: binary only; the sum over classes is K times the mean squared error
        ref = 7 * np.mean((probs.numpy() - np.eye(7)[labels.numpy()]) ** 2)
    assert brier(probs, labels) == pytest.approx(ref, rel=1e-9)


def test_confusion_matrix_matches_sklearn():
    logits, labels = _random(300, 5, seed=3)
    preds = logits.argmax(-1)
    cm = confusion_matrix(preds, labels, 5)
    np.testing.assert_array_equal(cm.numpy(), sk_confusion_matrix(labels.numpy(), preds.numpy(), labels=range(5)))
    recall = per_class_accuracy(cm)
    for c in range(5):
        mask = labels == c
        assert recall[c].item() == pytest.approx((preds[mask] == c).double().mean().item())


def test_per_class_accuracy_absent_class_is_nan():
    cm = confusion_matrix(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]
    acc = per_class_accuracy(cm)
    assert acc[:2].tolist() == [0.5, 1.0] and math.isnan(acc[2])
