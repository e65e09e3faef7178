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
f_beta invariant given the past, so the weights stay valid. The mean is over every chain of the group (forward or
reverse), however many batches (and ranks, through ``rates``) hold them: batches advance in lockstep, one
distribution at a time, so with each chain's noise keyed by its index the numbers do not depend on the batching.
The rate is large because a path has few distributions to find its step in (held-out images sit close to the box's
faces, where only small steps stay inside).
log p~ and its gradient at the current states are carried from step to step: the weights cost no extra model pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

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


Rates = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]  # (per-chain alpha, group, groups) -> [G]


def group_means(alpha: torch.Tensor, group: torch.Tensor, groups: int) -> torch.Tensor:
    """``[groups]``: the mean of ``alpha`` over the chains of each group (float64; 0 for an empty group)."""
    total = torch.zeros(groups, dtype=torch.float64).index_add_(0, group.cpu(), alpha.double().cpu())
    counts = torch.zeros(groups, dtype=torch.float64).index_add_(0, group.cpu(), torch.ones(len(group),
                                                                                              dtype=torch.float64))
    return total / counts.clamp(min=1)


def ais_paths(model, x0s: Sequence[torch.Tensor], betas: Sequence[torch.Tensor], gen: Any, *,
              step_size: float, box: tuple[Bound, Bound], log_density: LogDensity, transitions: int = 1,
              target_accept: Optional[float] = 0.574, progress: bool = False, batch_size: Optional[int] = None,
              rates: Rates = group_means) -> list[AISResult]:
    """AIS of several groups of chains (e.g. forward and reverse): group g starts at ``x0s[g]`` and follows
    ``betas[g]`` (all of the same length); each group adapts its own step from the mean acceptance of its chains.
    The chains (groups one after another) run in batches of at most ``batch_size`` (one model pass per batch and
    step for all groups), all batches one distribution at a time. ``gen``: a ``torch.Generator``, or
    ``gen(start, stop)`` giving the draws of chains ``[start, stop)`` (keyed by chain, e.g.
    :class:`jembench.rng.StackedNoise`). ``rates(alpha, group, groups)`` turns the chains' acceptance probabilities
    into each group's mean (sharded: over the chains of every rank)."""
    sizes = torch.tensor([len(x) for x in x0s], dtype=torch.long)
    x0 = torch.cat(list(x0s))
    n, dev = len(x0), x0.device
    group = torch.repeat_interleave(torch.arange(len(x0s)), sizes).to(dev)
    table = torch.stack([torch.as_tensor(b, dtype=torch.float64) for b in betas]).to(dev)  # [G, K + 1]
    step = torch.full((len(x0s),), float(step_size), dtype=torch.float64, device=dev)
    spans = [(s, min(s + (batch_size or n), n)) for s in range(0, n, batch_size or max(n, 1))]
    draws = [gen(a, b) if callable(gen) else gen for a, b in spans]
    with preserve_bn_stats(model):
        if model is not None:
            model.eval()
        states = [evaluate(log_density, x0[a:b].detach().clone(), None, grad=True) for a, b in spans]
        log_w = torch.zeros(n, dtype=torch.float64, device=dev)
        accepted = torch.zeros(n, device=dev)
        by_step, energy = [], []
        for k in track(range(1, table.shape[1]), desc=f"AIS over {table.shape[1] - 1} distributions ({n} "
                       "chains)", unit="distribution", enabled=progress):
            beta = table[group, k]
            log_w += (beta - table[group, k - 1]) * torch.cat([st.log_p for st in states] or [log_w[:0]]).double()
            alpha = torch.zeros(n, dtype=torch.float64, device=dev)
            for i, (a, b) in enumerate(spans):
                for _ in range(transitions):
                    states[i], al, acc = mala_step(log_density, states[i], step[group[a:b]].float(),
                                                   beta[a:b].float(), draws[i], box)
                    accepted[a:b] += acc
                    alpha[a:b] += al.double() / transitions
            rate = rates(alpha, group, len(x0s)).to(dev)
            if target_accept is not None:
                step *= torch.exp(AIS_RATE * (rate - target_accept))
            by_step.append(rate)
            energy.append(torch.cat([-st.log_p for st in states] or [accepted[:0]]))
    n_steps = max(table.shape[1] - 1, 1)
    by = torch.stack(by_step).cpu().float() if by_step else torch.zeros(0, len(x0s))
    trace = torch.stack(energy).cpu() if energy else torch.zeros(0, n)
    x = torch.cat([st.x for st in states] or [x0[:0]]).detach()
    parts = torch.arange(n).split(sizes.tolist())
    return [AISResult(log_w[i.to(dev)].cpu(), x[i.to(dev)], (accepted[i.to(dev)] / (n_steps * transitions)).cpu(),
                      by[:, g], trace[:, i], float(step[g])) for g, i in enumerate(parts)]
