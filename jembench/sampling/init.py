"""Chain initialisations: uniform noise (JEM) and per-class Gaussians ("informative", JEM++)."""

from __future__ import annotations

from typing import Any, Optional

import torch

from ..runtime import rand, randn


class UniformInit:
    """x ~ U(lo, hi)^shape in model space (JEM: U(-1, 1))."""

    name = "uniform"

    def __init__(self, shape: tuple[int, ...], lo: float = -1.0, hi: float = 1.0):
        self.shape, self.lo, self.hi = tuple(shape), lo, hi

    def __call__(self, n: int, gen: Any, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        u = rand((n, *self.shape), gen)
        return self.lo + (self.hi - self.lo) * u

    def describe(self) -> dict:
        return {"init": "uniform", "low": self.lo, "high": self.hi}


class GaussianInit:
    """x ~ N(mu_y, Sigma_y) per class y, clamped to [lo, hi] (JEM++'s informative initialisation).

    ``means`` ``[K, D]`` and ``covs`` ``[K, D, D]`` are fitted on training images in model space with
    :meth:`fit` (unbiased covariance; 1e-4 I is added before the Cholesky factorisation, so pixels that
    never vary still factorise). Without ``y``, classes are drawn uniformly. :meth:`to_extras` /
    :meth:`from_extras` store the statistics in a checkpoint (keys ``class_means``, ``class_covs``).
    """

    name = "gaussian"
    JITTER = 1e-4

    def __init__(self, means: torch.Tensor, covs: torch.Tensor, shape: tuple[int, ...], lo: float = -1.0,
                 hi: float = 1.0):
        self.means, self.covs, self.shape, self.lo, self.hi = means.float(), covs.float(), tuple(shape), lo, hi
        eye = torch.eye(means.shape[1], dtype=torch.float64, device=covs.device)
        self.chol = torch.linalg.cholesky(covs.double() + self.JITTER * eye).float()

    @classmethod
    def fit(cls, x: torch.Tensor, y: torch.Tensor, n_classes: int, lo: float = -1.0, hi: float = 1.0) -> "GaussianInit":
        flat = x.flatten(1).double()
        means, covs = [], []
        for k in range(n_classes):
            xk = flat[y == k]
            if len(xk) == 0:
                raise ValueError(f"GaussianInit.fit: no training images of class {k}")
            mu = xk.mean(0)
            c = xk - mu
            means.append(mu)
            covs.append(c.T @ c / max(len(xk) - 1, 1))
        return cls(torch.stack(means).float(), torch.stack(covs).float(), tuple(x.shape[1:]), lo, hi)

    def __call__(self, n: int, gen: Any, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        k = self.means.shape[0]
        if y is None and isinstance(gen, torch.Generator):
            y = torch.randint(0, k, (n,), generator=gen, device=gen.device)
        elif y is None:  # KeyedNoise: class floor(k u) of a keyed uniform
            y = (rand((n,), gen) * k).long().clamp_max(k - 1)
        y = y.to(self.means.device)
        z = randn((n, self.means.shape[1]), gen, self.means)
        x = self.means[y].clone()
        for k in y.unique().tolist():  # one matmul per class: no [n, D, D] gather (D = 3072 on CIFAR)
            sel = y == k
            x[sel] += z[sel] @ self.chol[k].T
        return x.view(n, *self.shape).clamp(self.lo, self.hi)

    def to_extras(self) -> dict[str, torch.Tensor]:
        return {"class_means": self.means.cpu(), "class_covs": self.covs.cpu()}

    @classmethod
    def from_extras(cls, extras: dict, shape: tuple[int, ...], lo: float = -1.0, hi: float = 1.0) -> "GaussianInit":
        """From a checkpoint's per-class statistics (``class_means`` ``[K, D]``, ``class_covs`` ``[K, D, D]``)."""
        return cls(extras["class_means"], extras["class_covs"], shape, lo, hi)

    def describe(self) -> dict:
        return {"init": "gaussian", "per_class": True, "classes": int(self.means.shape[0]), "low": self.lo,
                "high": self.hi, "jitter": self.JITTER}
