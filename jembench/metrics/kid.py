"""Kernel Inception Distance (Binkowski et al. 2018) over random subsets, batched in torch.

For each of ``subsets`` draws of ``m`` rows without replacement from the generated features X and the reference
features Y, the unbiased MMD^2 with the cubic polynomial kernel k(a, b) = (a.b / d + 1)^3 is

    MMD^2 = sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (m (m - 1))
            - 2 sum_{i, j} k(x_i, y_j) / m^2,

and KID is the mean (and std) of MMD^2 over the subsets. The subsets are torch-fidelity's own draws
(``np.random.RandomState(seed)``, for each subset ``choice(n_X, m)`` then ``choice(n_Y, m)``), so the numbers are
``torch_fidelity.metric_kid.kid_features_to_metric``'s; what differs is the work: torch-fidelity runs a NumPy loop
over subsets with float32 sums; here small sets get their three Gram matrices once and every subset's sums from
indicator vectors, large ones a batched matmul per chunk of subsets (on the features' device, a GPU when they are
there), the kernel and its sums in float64.
"""

from __future__ import annotations

import numpy as np
import torch

CHUNK_ELEMENTS = 2 ** 24  # Gram-matrix entries per chunk of subsets (128 MiB in float64)


def subset_draws(n_x: int, n_y: int, subsets: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows of X, rows of Y)``, each ``[subsets, size]``: torch-fidelity's subset draws for ``seed``."""
    rng = np.random.RandomState(seed)
    ix, iy = [], []
    for _ in range(subsets):
        ix.append(rng.choice(n_x, size, replace=False))
        iy.append(rng.choice(n_y, size, replace=False))
    return torch.as_tensor(np.stack(ix)), torch.as_tensor(np.stack(iy))


def _kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """torch-fidelity's ``kernel_poly``: (a.b / d + 1)^3 over the last two dimensions, float64."""
    return (torch.matmul(a, b.mT).double() * (1.0 / a.shape[-1]) + 1.0) ** 3


def _subset_sums(k: torch.Tensor, w_a: torch.Tensor, w_b: torch.Tensor, off_diagonal: bool) -> torch.Tensor:
    """Per subset s, sum_{i in A_s, j in B_s} k[i, j] for 0/1 indicator rows ``w_a`` ``[S, n_a]``, ``w_b``
    ``[S, n_b]`` (``off_diagonal``: without i = j; A = B)."""
    sums = ((w_a @ k) * w_b).sum(1)
    return sums - w_a @ k.diagonal() if off_diagonal else sums


def _indicators(idx: torch.Tensor, n: int) -> torch.Tensor:
    return torch.zeros(idx.shape[0], n, dtype=torch.float64).scatter_(1, idx, 1.0)


def mmd2_subsets(x: torch.Tensor, y: torch.Tensor, ix: torch.Tensor, iy: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD^2 (cubic polynomial kernel, gamma 1/d, coef0 1) of each subset pair ``(x[ix[s]], y[iy[s]])``:
    float64 ``[subsets]``. When the three whole Gram matrices fit in :data:`CHUNK_ELEMENTS` they are computed
    once and each subset's sums read from them with its indicator vector (sum_{i,j in S} K_ij = 1_S^T K 1_S);
    otherwise each chunk of subsets gets its own Gram blocks from one batched matmul."""
    m, (n_x, n_y) = ix.shape[1], (len(x), len(y))
    scale_xx, scale_xy = 1.0 / (m * (m - 1)), 2.0 / (m * m)
    if n_x * n_x + n_y * n_y + n_x * n_y <= CHUNK_ELEMENTS:
        w_x, w_y = _indicators(ix, n_x).to(x.device), _indicators(iy, n_y).to(x.device)
        xx = _subset_sums(_kernel(x, x), w_x, w_x, True)
        yy = _subset_sums(_kernel(y, y), w_y, w_y, True)
        return ((xx + yy) * scale_xx - _subset_sums(_kernel(x, y), w_x, w_y, False) * scale_xy).cpu()
    off = lambda k: k.sum((1, 2)) - k.diagonal(dim1=1, dim2=2).sum(1)  # noqa: E731 - per subset, i != j
    chunk, out = max(1, CHUNK_ELEMENTS // (3 * m * m)), []
    for s in range(0, ix.shape[0], chunk):
        a, b = x[ix[s:s + chunk].to(x.device)], y[iy[s:s + chunk].to(y.device)]
        out.append((off(_kernel(a, a)) + off(_kernel(b, b))) * scale_xx - _kernel(a, b).sum((1, 2)) * scale_xy)
    return torch.cat(out).cpu()


def kernel_inception_distance(fake: torch.Tensor, real: torch.Tensor, subsets: int, size: int,
                              seed: int) -> tuple[float, float]:
    """``(mean, std)`` of the unbiased MMD^2 over ``subsets`` random subsets of ``size`` rows of each feature set
    (std with ddof 0, as torch-fidelity); NaN for ``size`` < 2, where the unbiased estimate is undefined."""
    if size > min(len(fake), len(real)):
        raise ValueError(f"KID subset size {size} is larger than the smaller feature set ({min(len(fake), len(real))})")
    if size < 2:
        return float("nan"), float("nan")
    ix, iy = subset_draws(len(fake), len(real), subsets, size, seed)
    mmd = mmd2_subsets(fake.float(), real.float().to(fake.device), ix, iy)
    return float(mmd.mean()), float(mmd.std(unbiased=False))
