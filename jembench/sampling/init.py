"""Chain initialisations: uniform noise (JEM) and per-class Gaussians ("informative", JEM++)."""

from __future__ import annotations

from typing import Optional

import torch

from ..runtime import randn


class UniformInit:
    """x ~ U(lo, hi)^shape in model space (JEM: U(-1, 1))."""

    name = "uniform"

    def __init__(self, shape: tuple[int, ...], lo: float = -1.0, hi: float = 1.0):
        self.shape, self.lo, self.hi = tuple(shape), lo, hi

    def __call__(self, n: int, gen: torch.Generator, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        u = torch.rand((n, *self.shape), generator=gen, device=gen.device)
        return self.lo + (self.hi - self.lo) * u

    def describe(self) -> dict:
        return {"init": "uniform", "low": self.lo, "high": self.hi}


class GaussianInit:
    """x ~ N(mu_y, Sigma_y) per class y, clamped to [lo, hi] (JEM++'s informative initialisation).

    ``means`` ``[K, D]`` and ``covs`` ``[K, D, D]`` are fitted on training images in model space with
    :meth:`fit`. Without ``y``, classes are drawn uniformly.
    """

    name = "gaussian"

    def __init__(self, means: torch.Tensor, covs: torch.Tensor, shape: tuple[int, ...], lo: float = -1.0,
                 hi: float = 1.0):
        self.means, self.shape, self.lo, self.hi = means.float(), tuple(shape), lo, hi
        d = means.shape[1]
        jitter = 1e-4 * torch.eye(d)
        self.chol = torch.linalg.cholesky(covs.double() + jitter.double()).float()

    @classmethod
    def fit(cls, x: torch.Tensor, y: torch.Tensor, n_classes: int, lo: float = -1.0, hi: float = 1.0) -> "GaussianInit":
        flat = x.flatten(1).double()
        means, covs = [], []
        for k in range(n_classes):
            xk = flat[y == k]
            mu = xk.mean(0)
            c = xk - mu
            means.append(mu)
            covs.append(c.T @ c / max(len(xk) - 1, 1))
        return cls(torch.stack(means).float(), torch.stack(covs).float(), tuple(x.shape[1:]), lo, hi)

    def __call__(self, n: int, gen: torch.Generator, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        if y is None:
            y = torch.randint(0, self.means.shape[0], (n,), generator=gen, device=gen.device)
        y = y.to(self.means.device)
        z = randn((n, self.means.shape[1]), gen, self.means)
        x = self.means[y] + torch.einsum("nij,nj->ni", self.chol[y], z)
        return x.view(n, *self.shape).clamp(self.lo, self.hi)

    def describe(self) -> dict:
        return {"init": "gaussian", "per_class": True, "classes": int(self.means.shape[0]), "low": self.lo,
                "high": self.hi}
