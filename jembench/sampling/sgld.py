"""SGLD on log p~(x) (or log p~(x, y)) and the JEM++ sampler.

JEM (Grathwohl et al. 2020):  x <- x + alpha * grad_x log p~(x) + sigma * N(0, I)   (alpha 1, sigma 0.01, 20 steps)
with an optional proximal clamp of the gradient to [-c, c] (JEM++) and optional clamping of x to the
data range.

Alpha and sigma: Langevin dynamics for a density p is x <- x + eps * grad log p + sqrt(2 eps) * N(0, I); its
stationary law (eps -> 0) is p. With free alpha and sigma the chain targets p^(1/T) with temperature
T = sigma^2 / (2 alpha); ``SGLDConfig.langevin(eps)`` gives the T = 1 setting. JEM's alpha = 1, sigma = 0.01
is T = 5e-5: a near-deterministic ascent of log p~, not a sampler of p~ (its short-run chains are what the
model is trained against, so that is the setting to use for JEM models).

JEM++ (Yang & Ji 2021): per outer step one gradient g = clamp(grad_x log p~(x), -c, c), then
``inner`` steps x <- clamp(x + alpha * g, lo, hi) (+ optional noise); M outer steps.

Gradients of ``sum_i log p~(x_i)`` give every chain's gradient in one backward pass. In eval mode the
chains are independent; with ``bn_train=True`` BatchNorm uses batch statistics (as JEM++ trains) and
its running statistics are restored afterwards.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Optional

import torch

from ..runtime import randn
from .bn import preserve_bn_stats

LogDensity = Callable[[torch.Tensor, Optional[torch.Tensor]], torch.Tensor]  # (x, y) -> [B]


@dataclass
class SGLDConfig:
    steps: int = 20
    step_size: float = 1.0
    noise: float = 0.01
    clamp_x: bool = False  # clamp chains to the data range after every step
    grad_clamp: Optional[float] = None  # proximal clamp of the gradient (JEM++ uses 1.0)

    @classmethod
    def langevin(cls, step_size: float, steps: int, **kw) -> "SGLDConfig":
        """Unadjusted Langevin at temperature 1: noise = sqrt(2 * step_size)."""
        return cls(steps=steps, step_size=step_size, noise=(2.0 * step_size) ** 0.5, **kw)

    @property
    def temperature(self) -> float:
        """T = noise^2 / (2 step_size): the chain targets p~^(1/T)."""
        return self.noise ** 2 / (2.0 * self.step_size)

    def to_dict(self) -> dict:
        return {"sampler": "sgld", **asdict(self)}


@dataclass
class JEMPPConfig:
    outer_steps: int = 10  # M
    inner_steps: int = 5
    step_size: float = 0.2
    grad_clamp: float = 1.0
    noise: float = 0.0

    def to_dict(self) -> dict:
        return {"sampler": "jem++", **asdict(self)}


def model_log_density(model) -> LogDensity:
    """log p~(x) of a HybridModel, or log p~(x, y) when labels are given (class-conditional sampling)."""
    def fn(x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        return model.log_px(x) if y is None else model.log_pxy(x, y)
    return fn


def _set_mode(model, bn_train: bool) -> None:
    """Eval mode, except BatchNorm layers in train mode (batch statistics) when ``bn_train``."""
    if model is None:
        return
    model.eval()
    if bn_train:
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.train()


def _grad(log_density: LogDensity, x: torch.Tensor, y: Optional[torch.Tensor],
          create_graph: bool = False) -> torch.Tensor:
    with torch.enable_grad():
        if not create_graph:
            x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(log_density(x, y).sum(), x, create_graph=create_graph)
    return g


def sgld_sample(model, x0: torch.Tensor, cfg: SGLDConfig, gen: torch.Generator, *, y: Optional[torch.Tensor] = None,
                value_range: tuple[float, float] = (-1.0, 1.0), bn_train: bool = False,
                log_density: Optional[LogDensity] = None, differentiable: bool = False) -> torch.Tensor:
    """Run ``cfg.steps`` SGLD steps from ``x0``; returns detached chains. ``model`` may be any nn.Module
    (its BN stats are preserved); ``log_density`` defaults to the HybridModel's log p~(x) / log p~(x, y).
    ``differentiable=True`` (with ``x0.requires_grad``) keeps the graph through every step (create_graph), so
    gradients reach ``x0`` through the chain (full-gradient attacks on SGLD purification)."""
    log_density = log_density or model_log_density(model)
    lo, hi = value_range
    differentiable = differentiable and x0.requires_grad
    x = x0 if differentiable else x0.detach().clone()
    with preserve_bn_stats(model):
        _set_mode(model, bn_train)
        for _ in range(cfg.steps):
            g = _grad(log_density, x, y, create_graph=differentiable)
            if cfg.grad_clamp is not None:
                g = g.clamp(-cfg.grad_clamp, cfg.grad_clamp)
            x = x + cfg.step_size * g
            if cfg.noise:
                x = x + cfg.noise * randn(tuple(x.shape), gen, x)
            if cfg.clamp_x:
                x = x.clamp(lo, hi)
    return x if differentiable else x.detach()


def jempp_sample(model, x0: torch.Tensor, cfg: JEMPPConfig, gen: torch.Generator, *, y: Optional[torch.Tensor] = None,
                 value_range: tuple[float, float] = (-1.0, 1.0), bn_train: bool = False,
                 log_density: Optional[LogDensity] = None) -> torch.Tensor:
    """The JEM++ sampler: one clipped gradient per outer step, ``inner_steps`` clamped moves along it."""
    log_density = log_density or model_log_density(model)
    lo, hi = value_range
    x = x0.detach().clone()
    with preserve_bn_stats(model):
        _set_mode(model, bn_train)
        for _ in range(cfg.outer_steps):
            g = _grad(log_density, x, y).clamp(-cfg.grad_clamp, cfg.grad_clamp)
            for _ in range(cfg.inner_steps):
                x = x + cfg.step_size * g
                if cfg.noise:
                    x = x + cfg.noise * randn(tuple(x.shape), gen, x)
                x = x.clamp(lo, hi)
    return x.detach()


def run_sampler(model, x0: torch.Tensor, cfg: SGLDConfig | JEMPPConfig, gen: torch.Generator, **kw) -> torch.Tensor:
    """Dispatch on the config type."""
    fn = jempp_sample if isinstance(cfg, JEMPPConfig) else sgld_sample
    return fn(model, x0, cfg, gen, **kw)
