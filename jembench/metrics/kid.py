"""Kernel Inception Distance (Binkowski et al. 2018) over random subsets, batched in torch.

For each of ``subsets`` draws of ``m`` rows without replacement from the generated features X and the reference
features Y, the unbiased MMD^2 with the cubic polynomial kernel k(a, b) = (a.b / d + 1)^3 is

    MMD^2 = sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (m (m - 1))
            - 2 sum_{i, j} k(x_i, y_j) / m^2,

and KID is the mean (and std) of MMD^2 over the subsets. The subsets are torch-fidelity's own draws
(``np.random.RandomState(seed)``, for each subset ``choice(n_X, m)`` then ``choice(n_Y, m)``), so the numbers are
``torch_fidelity.metric_kid.kid_features_to_metric``'s; what differs is the work: torch-fidelity runs a NumPy loop
over subsets with float32 sums, here the subsets are stacked and their Gram matrices taken with one batched
matmul per chunk (on the features' device, a GPU when they are there), the kernel and its sums in float64.
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


def _off_diagonal_sum(k: torch.Tensor) -> torch.Tensor:
    """Per subset, the sum of a ``[S, m, m]`` kernel block without its diagonal."""
    return k.sum((1, 2)) - k.diagonal(dim1=1, dim2=2).sum(1)


def mmd2_subsets(x: torch.Tensor, y: torch.Tensor, ix: torch.Tensor, iy: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD^2 (cubic polynomial kernel, gamma 1/d, coef0 1) of each subset pair ``(x[ix[s]], y[iy[s]])``:
    float64 ``[subsets]``."""
    m, d = ix.shape[1], x.shape[1]
    chunk = max(1, CHUNK_ELEMENTS // (3 * m * m))
    kernel = lambda a, b: (torch.bmm(a, b.mT).double() * (1.0 / d) + 1.0) ** 3  # noqa: E731 - torch-fidelity's kernel_poly
    out = []
    for s in range(0, ix.shape[0], chunk):
        a, b = x[ix[s:s + chunk].to(x.device)], y[iy[s:s + chunk].to(y.device)]
        xx, yy, xy = _off_diagonal_sum(kernel(a, a)), _off_diagonal_sum(kernel(b, b)), kernel(a, b).sum((1, 2))
        out.append((xx + yy) / (m * (m - 1)) - 2.0 * xy / (m * m))
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
