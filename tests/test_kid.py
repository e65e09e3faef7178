"""KID (jembench.metrics.kid): the definition by hand on tiny sets, torch-fidelity's own function on the same
features and seeds, and chunking that changes nothing."""

import itertools

import numpy as np
import pytest
import torch

from jembench.metrics import kid


def _mmd2_by_definition(x: np.ndarray, y: np.ndarray) -> float:
    k = lambda a, b: (float(np.dot(a, b)) / x.shape[1] + 1.0) ** 3  # noqa: E731
    m = len(x)
    pairs = [(i, j) for i, j in itertools.product(range(m), repeat=2) if i != j]
    return (sum(k(x[i], x[j]) for i, j in pairs) / (m * (m - 1)) + sum(k(y[i], y[j]) for i, j in pairs) / (m * (m - 1))
            - 2 * sum(k(a, b) for a in x for b in y) / m ** 2)


def test_one_subset_equals_the_definition():
    g = np.random.default_rng(0)
    x, y = g.normal(size=(5, 3)).astype(np.float32), g.normal(1.0, 2.0, size=(5, 3)).astype(np.float32)
    ix, iy = torch.tensor([[0, 1, 2, 3, 4], [4, 2, 0, 1, 3]]), torch.tensor([[0, 1, 2, 3, 4], [1, 0, 3, 4, 2]])
    for chunk in (kid.CHUNK_ELEMENTS, 3 * 25 * 2):  # whole Gram matrices, then per-subset blocks
        kid.CHUNK_ELEMENTS, saved = chunk, kid.CHUNK_ELEMENTS
        try:
            got = kid.mmd2_subsets(torch.as_tensor(x), torch.as_tensor(y), ix, iy)
        finally:
            kid.CHUNK_ELEMENTS = saved
        assert got.dtype == torch.float64 and got.tolist() == pytest.approx([_mmd2_by_definition(x, y)] * 2, rel=1e-6)


def test_identical_constant_features_have_zero_kid_and_too_small_subsets_are_nan():
    x = torch.full((6, 4), 0.5)
    assert kid.kernel_inception_distance(x, x.clone(), subsets=3, size=4, seed=0) == (0.0, 0.0)
    mean, std = kid.kernel_inception_distance(x, x, subsets=3, size=1, seed=0)
    assert np.isnan(mean) and np.isnan(std)
    with pytest.raises(ValueError, match="larger than the smaller feature set"):
        kid.kernel_inception_distance(x, x[:3], subsets=3, size=4, seed=0)


@pytest.mark.parametrize("whole_gram", [True, False])
@pytest.mark.parametrize("n_fake,n_real,size,d,seed",
                         [(60, 90, 40, 8, 0), (50, 50, 50, 64, 2020), (120, 70, 70, 16, 7)])
def test_equals_torch_fidelity_on_the_same_features_and_seed(n_fake, n_real, size, d, seed, whole_gram,
                                                             monkeypatch):
    from torch_fidelity.metric_kid import kid_features_to_metric

    if not whole_gram:  # too small for the three Gram matrices: chunks of subsets
        monkeypatch.setattr(kid, "CHUNK_ELEMENTS", n_fake * n_fake + n_real * n_real + n_fake * n_real - 1)

    g = torch.Generator().manual_seed(seed)
    fake, real = torch.randn(n_fake, d, generator=g) + 0.3, torch.randn(n_real, d, generator=g)
    theirs = kid_features_to_metric(fake, real, kid_subsets=25, kid_subset_size=size, rng_seed=seed, verbose=False)
    mean, std = kid.kernel_inception_distance(fake, real, subsets=25, size=size, seed=seed)
    assert mean == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-5)
    # float32 sums leave torch-fidelity's std at ~1e-7 of the mean where it is 0 (every subset a permutation)
    assert std == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-4, abs=1e-6 * abs(mean))
    if size == n_fake == n_real:  # every subset a permutation of the whole sets: float64 rounding only
        assert std <= 1e-12 * abs(mean)
    assert abs(mean) > 1e-3  # a real difference was measured


def test_chunks_of_subsets_and_whole_gram_matrices_agree(monkeypatch):
    g = torch.Generator().manual_seed(1)
    fake, real = torch.randn(40, 5, generator=g), torch.randn(30, 5, generator=g)
    whole = kid.kernel_inception_distance(fake, real, subsets=10, size=20, seed=3)
    monkeypatch.setattr(kid, "CHUNK_ELEMENTS", 3 * 20 * 20 * 3)  # 3 subsets per chunk, the last one short
    chunked = kid.kernel_inception_distance(fake, real, subsets=10, size=20, seed=3)
    assert chunked == pytest.approx(whole, rel=1e-12)
