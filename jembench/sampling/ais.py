"""Annealed importance sampling (Neal 2001) between the uniform density on the input box and p~, MALA transitions.

Path: f_beta(x) = p~(x)^beta on the box [lo, hi]^d (beta = 0: the uniform base, Z_0 = prod (hi - lo), log Z_0 =
sum over dimensions of log(hi - lo)), betas 0 = beta_0 < ... < beta_K = 1 (geometric path between the base and p~).

Forward (Neal 2001): x_0 ~ U(box); for k = 1..K: log w += (beta_k - beta_{k-1}) log p~(x_{k-1}), then x_k from
``transitions`` MALA steps leaving f_{beta_k} invariant. E[w] = Z / Z_0, so log Z_0 + log mean exp(log w) is an
estimate of log Z that is low in expectation (Jensen).
Reverse (RAISE, Burda, Grosse & Salakhutdinov 2015; BDMC, Grosse et al. 2015): the same recursion along the
reversed betas 1 -> 0 from samples of p~ estimates Z_0 / Z, so log Z_0 - log mean exp(log w_rev) is high in
expectation, provided the start states are exact samples of p~; started from held-out data it is only as good
as the data's closeness to the model's samples.

The step is adapted between distributions toward a target acceptance (as Wu et al. 2017 do for AIS with HMC),
log step += AIS_RATE (mean acceptance probability - target) after each distribution: each kernel still leaves its
f_beta invariant given the past, so the weights stay valid. The rate is large because a path has few distributions
to find its step in (held-out images sit close to the box's faces, where only small steps stay inside).
log p~ and its gradient at the current states are carried from step to step: the weights cost no extra model pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from ..progress import track
from .bn import preserve_bn_stats
from .mcmc import Bound, evaluate, mala_step
from .sgld import LogDensity

SIGMOID_DELTA = 4.0
AIS_RATE = 0.5


def sigmoid_schedule(k: int, delta: float = SIGMOID_DELTA) -> torch.Tensor:
    """``k + 1`` betas from 0 to 1, dense at both ends: beta_t = (s(t) - s(0)) / (s(k) - s(0)) with
    s(t) = sigmoid(delta (2 t / k - 1)) (the BDMC schedule, Grosse et al. 2015)."""
    t = torch.arange(k + 1, dtype=torch.float64)
    s = torch.sigmoid(delta * (2 * t / k - 1))
    return (s - s[0]) / (s[-1] - s[0])


def log_box_volume(lo: Bound, hi: Bound, shape: tuple[int, ...]) -> float:
    """log Z_0 = sum over the dimensions of ``shape`` of log(hi - lo)."""
    width = torch.as_tensor(hi, dtype=torch.float64) - torch.as_tensor(lo, dtype=torch.float64)
    return float(torch.log(width).expand(shape).sum())


@dataclass
class AISResult:
    """Per-chain ``log_w`` ``[B]``; the final states ``x``; per-chain ``acceptance`` over all transitions;
    ``accept_by_step`` ``[K]`` (mean over chains); ``energy`` E(x) = -log p~(x) after each distribution ``[K, B]``;
    the ``step_size`` at the end."""

    log_w: torch.Tensor
    x: torch.Tensor
    acceptance: torch.Tensor
    accept_by_step: torch.Tensor
    energy: torch.Tensor
    step_size: float


def ais(model, x0: torch.Tensor, betas: torch.Tensor, gen: torch.Generator, *, step_size: float,
        box: tuple[Bound, Bound], log_density: LogDensity, transitions: int = 1,
        target_accept: Optional[float] = 0.574, progress: bool = False) -> AISResult:
    """AIS along ``betas`` from ``x0`` (forward: betas increasing from 0, x0 uniform on the box; reverse: betas
    decreasing from 1, x0 samples of p~). ``target_accept=None`` keeps the step fixed. ``model`` (or None) has its
    BatchNorm statistics and modes restored after; it runs in eval mode."""
    return ais_paths(model, [x0], [betas], gen, step_size=step_size, box=box, log_density=log_density,
                     transitions=transitions, target_accept=target_accept, progress=progress)[0]


def ais_paths(model, x0s: Sequence[torch.Tensor], betas: Sequence[torch.Tensor], gen: torch.Generator, *,
              step_size: float, box: tuple[Bound, Bound], log_density: LogDensity, transitions: int = 1,
              target_accept: Optional[float] = 0.574, progress: bool = False) -> list[AISResult]:
    """AIS of several groups of chains in one batch (e.g. forward and reverse): group g starts at ``x0s[g]`` and
    follows ``betas[g]`` (all of the same length); each group adapts its own step. One model pass per step for
    all groups: small batches cost nearly as much as larger ones."""
    sizes = torch.tensor([len(x) for x in x0s])
    x0 = torch.cat(list(x0s))
    dev = x0.device
    group = torch.repeat_interleave(torch.arange(len(x0s)), sizes).to(dev)
    table = torch.stack([torch.as_tensor(b, dtype=torch.float64) for b in betas]).to(dev)  # [G, K + 1]
    step = torch.full((len(x0s),), float(step_size), dtype=torch.float64, device=dev)
    counts = sizes.to(dev, torch.float64)
    with preserve_bn_stats(model):
        if model is not None:
            model.eval()
        state = evaluate(log_density, x0.detach().clone(), None, grad=True)
        log_w = torch.zeros(len(x0), dtype=torch.float64, device=dev)
        accepted = torch.zeros(len(x0), device=dev)
        by_step, energy = [], []
        for k in track(range(1, table.shape[1]), desc=f"AIS over {table.shape[1] - 1} distributions ({len(x0)} "
                       "chains)", unit="distribution", enabled=progress):
            beta = table[group, k]
            log_w += (beta - table[group, k - 1]) * state.log_p.double()
            rate = torch.zeros(len(x0s), dtype=torch.float64, device=dev)
            for _ in range(transitions):
                state, alpha, acc = mala_step(log_density, state, step[group].float(), beta.float(), gen, box)
                accepted += acc
                rate += torch.zeros_like(rate).index_add_(0, group, alpha.double()) / counts / transitions
            if target_accept is not None:
                step *= torch.exp(AIS_RATE * (rate - target_accept))
            by_step.append(rate)
            energy.append(-state.log_p)
    n_steps = max(table.shape[1] - 1, 1)
    by = torch.stack(by_step).cpu().float() if by_step else torch.zeros(0, len(x0s))
    trace = torch.stack(energy).cpu() if energy else torch.zeros(0, len(x0))
    parts = torch.arange(len(x0)).split(sizes.tolist())
    return [AISResult(log_w[i.to(dev)].cpu(), state.x[i.to(dev)].detach(),
                      (accepted[i.to(dev)] / (n_steps * transitions)).cpu(), by[:, g], trace[:, i], float(step[g]))
            for g, i in enumerate(parts)]
