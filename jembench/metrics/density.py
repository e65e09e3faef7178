"""Normalised-density numbers from AIS weights, bits per dimension, and score-matching losses (pure functions).

Score matching uses the model's score s(x) = d log p~(x) / dx, which needs no partition function.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

Score = Callable[[torch.Tensor, bool], torch.Tensor]  # (x, create_graph) -> d log p~(x)/dx, same shape as x


def log_mean_exp(log_w: torch.Tensor) -> float:
    """log (1/n sum_i exp(log_w_i)), computed stably."""
    return float(torch.logsumexp(log_w.double(), 0) - math.log(log_w.numel()))


def effective_sample_size(log_w: torch.Tensor) -> float:
    """Kish's ESS of importance weights: (sum w)^2 / sum w^2, between 1 and n (Kong 1992; Neal 2001, sec. 4)."""
    lw = log_w.double()
    return float(torch.exp(2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0)))


def log_z_forward(log_w: torch.Tensor, log_z0: float) -> float:
    """Forward AIS: log Z ~ log Z_0 + log mean exp(log w) (low in expectation; Neal 2001)."""
    return log_z0 + log_mean_exp(log_w)


def log_z_reverse(log_w_rev: torch.Tensor, log_z0: float) -> float:
    """Reverse AIS: log Z ~ log Z_0 - log mean exp(log w_rev) (high in expectation if the starts are exact
    samples; Burda et al. 2015, Grosse et al. 2015)."""
    return log_z0 - log_mean_exp(log_w_rev)


def bits_per_dim(log_px: float, dims: int, log_bin_width: float) -> float:
    """bpd = -(log p(x) + d log(bin width)) / (d ln 2): the density of dequantised 8-bit images in model space
    as a discrete likelihood (Theis et al. 2016). ``log_bin_width`` is the mean over dimensions of log(bin width),
    e.g. log(2/256) for [-1, 1]."""
    return -(log_px + dims * log_bin_width) / (dims * math.log(2))


def model_score(log_density: Callable[[torch.Tensor], torch.Tensor]) -> Score:
    """s(x) = d log p~(x) / dx by autograd; ``create_graph=True`` keeps the graph (second derivatives)."""
    def score(x: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
        with torch.enable_grad():
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(log_density(x).sum(), x, create_graph=create_graph)
        return g
    return score


def dsm_loss(score: Score, x: torch.Tensor, noise: torch.Tensor, sigma: float) -> torch.Tensor:
    """Denoising score matching per sample (Vincent 2011): 1/2 ||s(x + sigma n) + n / sigma||^2, n ~ N(0, I)
    (``noise`` is n); its mean over data and noise is the DSM objective at ``sigma``."""
    s = score(x + sigma * noise, False)
    return 0.5 * (s + noise / sigma).pow(2).flatten(1).sum(1).detach()


def ssm_loss(score: Score, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Sliced score matching per sample (Song et al. 2019, eq. 7): v^T (ds/dx) v + 1/2 (v^T s(x))^2 for one
    projection ``v`` (N(0, I) draws); the Hessian-vector product (ds/dx) v comes from a double backward."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        s = score(x, True)
        vs = (v * s).flatten(1).sum(1)
        (hv,) = torch.autograd.grad(vs.sum(), x)
    return ((v * hv).flatten(1).sum(1) + 0.5 * vs.pow(2)).detach()
