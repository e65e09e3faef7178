"""Metropolis-Hastings samplers of p~(x)^(1/T) restricted to the model's input box: random-walk MH and MALA.

Random-walk MH (Metropolis et al. 1953): x' = x + s z, z ~ N(0, I); accept with probability min(1, pi(x') / pi(x)).
MALA (Roberts & Tweedie 1996): x' = x + eps grad log pi(x) + sqrt(2 eps) z; accept with probability
min(1, pi(x') q(x | x') / (pi(x) q(x' | x))), log q(x' | x) = -||x' - x - eps grad log pi(x)||^2 / (4 eps) + const.

The target is pi(x) = p~(x)^beta on the box [lo, hi] (zero outside), beta = 1/T (T = 1: p~ itself). A proposal
outside the box has pi = 0 and is rejected, which keeps detailed balance with respect to the truncated target.
Warm-up: ``warmup`` steps before the ``steps`` kept ones adapt the step by log s += RATE (mean acceptance
probability - target) (Robbins-Monro; targets 0.234 for random-walk MH, Roberts, Gelman & Gilks 1997, and 0.574
for MALA, Roberts & Rosenthal 1998); the step is then frozen, so the kept chain has one fixed kernel. Acceptance
rates are counted over the kept steps. The model runs in eval mode (BatchNorm on its running statistics): a
density that depends on the batch is no fixed target.

Every step carries log p~ (and for MALA its gradient) of the current states, so a step costs one model pass at
the proposal (forward for MH, forward + backward for MALA), as an SGLD step.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

import torch

from ..runtime import rand, randn
from .bn import preserve_bn_stats
from .sgld import LogDensity, model_log_density

Bound = float | torch.Tensor  # a number, or a tensor broadcastable to one sample (per-channel [C, 1, 1])
RATE = 0.05  # warm-up adaptation rate of log step


@dataclass
class MCMCConfig:
    """Shared fields of :class:`MHConfig` and :class:`MALAConfig`."""

    steps: int = 100
    step_size: float = 0.01
    temperature: float = 1.0
    warmup: int = 0  # adaptation steps before the kept ones (not counted in ``steps``)
    target_accept: float = 0.574
    sampler = "mcmc"
    proposal = ""

    def to_dict(self) -> dict:
        return {"sampler": self.sampler, **asdict(self), "proposal": self.proposal,
                "target": "p~(x)^(1/T) on the input box (proposals outside it are rejected)",
                "adaptation": (f"warm-up only: log step += {RATE} (mean acceptance - target) per step, then frozen"
                               if self.warmup else "none")}


@dataclass
class MHConfig(MCMCConfig):
    """Random-walk MH; ``step_size`` is the proposal std s (model space)."""

    step_size: float = 0.01
    target_accept: float = 0.234
    sampler = "mh"
    proposal = "x' = x + s N(0, I)"


@dataclass
class MALAConfig(MCMCConfig):
    """MALA; ``step_size`` is eps of x' = x + eps grad log pi(x) + sqrt(2 eps) N(0, I)."""

    step_size: float = 1e-3
    target_accept: float = 0.574
    sampler = "mala"
    proposal = "x' = x + eps grad log pi(x) + sqrt(2 eps) N(0, I), MH-corrected"


@dataclass
class ChainState:
    """Current states ``x``, their untempered ``log_p`` = log p~(x) ``[B]`` and (MALA) ``grad`` of log p~."""

    x: torch.Tensor
    log_p: torch.Tensor
    grad: Optional[torch.Tensor] = None


@dataclass
class ChainResult:
    """Final ``x``; per-chain ``acceptance`` over the kept steps; ``energy`` of every chain after each step
    ``[warmup + steps, B]``, minus the untempered log density sampled (E(x) = -logsumexp f(x); -f(x)[y] for
    class-conditional chains; the first ``warmup`` rows are the warm-up); the kept ``step_size``."""

    x: torch.Tensor
    acceptance: torch.Tensor
    energy: torch.Tensor
    step_size: float
    warmup: int


def evaluate(log_density: LogDensity, x: torch.Tensor, y: Optional[torch.Tensor], grad: bool) -> ChainState:
    """log p~ at ``x`` (and its gradient when ``grad``), detached."""
    if not grad:
        with torch.no_grad():
            return ChainState(x, log_density(x, y).detach().float())
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        lp = log_density(xg, y)
        (g,) = torch.autograd.grad(lp.sum(), xg)
    return ChainState(x, lp.detach().float(), g.detach())


def inside(x: torch.Tensor, lo: Bound, hi: Bound) -> torch.Tensor:
    """``[B]``: whether each sample lies in the box [lo, hi]."""
    return ((x >= lo) & (x <= hi)).flatten(1).all(1)


def _sq(t: torch.Tensor) -> torch.Tensor:
    return t.pow(2).flatten(1).sum(1).float()


def _accept(state: ChainState, prop: ChainState, log_alpha: torch.Tensor, box: tuple[Bound, Bound],
            gen: Any) -> tuple[ChainState, torch.Tensor, torch.Tensor]:
    """MH accept/reject: proposals outside the box or with a non-finite ratio are rejected."""
    log_alpha = torch.where(inside(prop.x, *box) & ~log_alpha.isnan(), log_alpha, -math.inf).clamp(max=0.0)
    u = rand(tuple(log_alpha.shape), gen).to(log_alpha.device)
    acc = u.log() < log_alpha
    view = acc.view(-1, *([1] * (state.x.dim() - 1)))
    new = ChainState(torch.where(view, prop.x, state.x), torch.where(acc, prop.log_p, state.log_p),
                     torch.where(view, prop.grad, state.grad) if state.grad is not None else None)
    return new, log_alpha.exp(), acc


def mh_step(log_density: LogDensity, state: ChainState, step: float, beta: float, gen: Any,
            box: tuple[Bound, Bound], y: Optional[torch.Tensor] = None):
    """One random-walk MH step at inverse temperature ``beta``: ``(state, acceptance probability, accepted)``."""
    xp = state.x + step * randn(tuple(state.x.shape), gen, state.x)
    prop = evaluate(log_density, xp, y, grad=False)
    return _accept(state, prop, beta * (prop.log_p - state.log_p), box, gen)


def _col(v: float | torch.Tensor, x: torch.Tensor) -> float | torch.Tensor:
    """A number, or a per-chain ``[B]`` tensor shaped to broadcast against ``x``."""
    return v.view(-1, *([1] * (x.dim() - 1))) if torch.is_tensor(v) else v


def mala_step(log_density: LogDensity, state: ChainState, eps: float | torch.Tensor, beta: float | torch.Tensor,
              gen: Any, box: tuple[Bound, Bound], y: Optional[torch.Tensor] = None):
    """One MALA step on pi = p~^beta: ``(state, acceptance probability, accepted)`` (see the module docstring).
    ``eps`` and ``beta`` are numbers or per-chain ``[B]`` tensors."""
    drift = _col(eps * beta, state.x)
    mean_fwd = state.x + drift * state.grad
    xp = mean_fwd + _col((2 * eps) ** 0.5, state.x) * randn(tuple(state.x.shape), gen, state.x)
    prop = evaluate(log_density, xp, y, grad=True)
    log_q_fwd = -_sq(xp - mean_fwd) / (4 * eps)
    log_q_bwd = -_sq(state.x - xp - drift * prop.grad) / (4 * eps)
    return _accept(state, prop, beta * (prop.log_p - state.log_p) + log_q_bwd - log_q_fwd, box, gen)


Kernel = Callable[..., tuple[ChainState, torch.Tensor, torch.Tensor]]


def mcmc_sample(model, x0: torch.Tensor, cfg: MCMCConfig, gen: Any, *, y: Optional[torch.Tensor] = None,
                value_range: tuple[Bound, Bound] = (-1.0, 1.0),
                log_density: Optional[LogDensity] = None) -> ChainResult:
    """Run ``cfg.warmup`` adapting steps, then ``cfg.steps`` kept ones, of MH (:class:`MHConfig`) or MALA
    (:class:`MALAConfig`) from ``x0`` (which must lie in the box); the model runs in eval mode. ``gen`` is a
    ``torch.Generator`` or a :class:`jembench.rng.KeyedNoise` (each chain's draws keyed by its index)."""
    log_density = log_density or model_log_density(model)
    is_mala = isinstance(cfg, MALAConfig)
    kernel: Kernel = mala_step if is_mala else mh_step
    beta = 1.0 / cfg.temperature
    step = cfg.step_size
    with preserve_bn_stats(model):
        if model is not None:
            model.eval()
        state = evaluate(log_density, x0.detach().clone(), y, grad=is_mala)
        energy, accepted = [], torch.zeros(x0.shape[0], device=x0.device)
        for t in range(cfg.warmup + cfg.steps):
            state, alpha, acc = kernel(log_density, state, step, beta, gen, value_range, y)
            energy.append(-state.log_p)
            if t < cfg.warmup:
                step *= math.exp(RATE * (float(alpha.mean()) - cfg.target_accept))
            else:
                accepted += acc
    return ChainResult(state.x.detach(), (accepted / max(cfg.steps, 1)).cpu(),
                       torch.stack(energy).cpu() if energy else torch.zeros(0, x0.shape[0]), step, cfg.warmup)


def input_box(info) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's input box in model space, per channel ``[C, 1, 1]``: pixel 0 and pixel 1 of each channel."""
    mean = torch.tensor(info.mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(info.std, dtype=torch.float32).view(-1, 1, 1)
    return -mean / std, (1 - mean) / std
