"""The chains of a fresh-chain generation protocol, run over torchrun ranks with the numbers of one process.

Fresh chains (``pcd_rounds = 0``): each rank runs a contiguous block of whole batches of chains
(``distributed.shard(n, align=batch_size)``), exactly the batches of a single process: chain i's init and noise are
keyed by i, and what couples the chains of a batch (BatchNorm batch statistics with ``bn_train``; the MH / MALA
warm-up, which adapts the step on the batch's mean acceptance) stays within the batch. Samples, chain traces
(gathered along the chain dimension), MH / MALA acceptance and energies and each batch's kept step are gathered in
chain order.

PCD rounds: every rank draws the same buffer slots, restarts and fresh inits from the one generator, so buffers stay
identical; the advance noise of round r's draw j is keyed (``derived_seed``, "pcd", r) at row j. When the drawn
chains are independent (eval-mode BatchNorm and no MH / MALA warm-up) a round's draws are advanced in batches of
``batch_size``, each rank a block of whole batches, gathered before they are written back; otherwise the round's
draws are one batch (as they are coupled) that every rank advances (equal numbers, no speed-up).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

from . import distributed
from .progress import track

if TYPE_CHECKING:  # torch and the samplers are imported when sampling
    import torch

    from .sampling.buffer import ReplayBuffer
    from .sampling.trace import ChainTrace

SHARDING_FRESH = "whole batches of --batch-size chains per rank, gathered in chain order"
SHARDING_PCD = ("each round's draws in batches of --batch-size chains, whole batches per rank, gathered before they "
                "are written back")
SHARDING_COUPLED = "not split: each round's draws are coupled (BatchNorm batch statistics or MH / MALA warm-up)"


@dataclass
class MCMCRuns:
    """MH / MALA runs, gathered: per-chain ``acceptance`` ``[n]``, ``energy`` ``[warmup + steps, n]`` (fresh
    chains; None for PCD), each run's kept ``step_sizes`` ``[runs]``, the ``warmup``."""

    acceptance: torch.Tensor
    energy: Optional[torch.Tensor]
    step_sizes: torch.Tensor
    warmup: int


def advance(model: Any, x0: torch.Tensor, cfg: Any, gen: Any, y: Optional[torch.Tensor], kw: dict[str, Any],
            runs: list) -> torch.Tensor:
    """Advance chains ``x0`` with the protocol's sampler; MH / MALA runs (restricted to the model's input box)
    are appended to ``runs``."""
    from .sampling.mcmc import MCMCConfig, input_box, mcmc_sample
    from .sampling.sgld import run_sampler

    if isinstance(cfg, MCMCConfig):
        lo, hi = input_box(model.info)
        res = mcmc_sample(model, x0, cfg, gen, y=y, value_range=(lo.to(x0.device), hi.to(x0.device)))
        runs.append(res)
        return res.x
    return run_sampler(model, x0, cfg, gen, y=y, **kw)


def _no_chains(calls: int, stride: int) -> ChainTrace:
    """The trace of zero chains over ``calls`` sampler passes recorded every ``stride`` (a rank with no chains)."""
    import torch

    from .sampling.trace import ChainTrace

    steps = torch.arange(0, calls, stride)
    return ChainTrace(torch.zeros(len(steps), 0), steps, predicted=torch.zeros(len(steps), 0, dtype=torch.long))


def gather_trace(trace: ChainTrace) -> ChainTrace:
    """Every rank's chains of one trace, side by side in chain order."""
    from .sampling.trace import ChainTrace

    g = distributed.gather
    return ChainTrace(g(trace.energy, dim=1), trace.steps, None if trace.acceptance is None else g(trace.acceptance),
                      None if trace.predicted is None else g(trace.predicted, dim=1), trace.axis)


def _gather_runs(runs: list, steps: int, warmup: int, energy: bool = True) -> MCMCRuns:
    """This rank's MH / MALA runs, gathered over ranks in chain order."""
    import torch

    g = distributed.gather
    acc = torch.cat([r.acceptance for r in runs]) if runs else torch.zeros(0)
    sizes = g(torch.tensor([r.step_size for r in runs], dtype=torch.float64))
    trace = (torch.cat([r.energy for r in runs], 1) if runs else torch.zeros(steps, 0)) if energy else None
    return MCMCRuns(g(acc), g(trace, dim=1) if trace is not None else None, sizes, warmup)


def fresh(model: Any, proto: Any, n: int, batch_size: int, init: Callable, labels: Optional[torch.Tensor],
          kw: dict[str, Any], seed: int, steps: int, progress: bool) -> tuple[torch.Tensor, Optional[ChainTrace],
                                                                              Optional[MCMCRuns]]:
    """``(x, trace, MH / MALA runs)`` of ``n`` fresh chains of ``steps`` sampler passes each, chain i keyed
    ``(seed, "chain")`` (see the module docstring); the trace is None for MH / MALA (built from their energies)."""
    import torch

    from .rng import KeyedNoise
    from .sampling.mcmc import MCMCConfig
    from .sampling.trace import ChainTrace, TraceRecorder, stride_for

    dev, mcmc = model.device, isinstance(proto.sampler, MCMCConfig)
    chunks, traces, runs = [], [], []
    lo, hi = distributed.shard(n, align=batch_size)  # this rank's whole batches: the batches of one process
    for s in track(range(lo, hi, batch_size), desc=f"sampling {proto.name} ({model.info.name}), {steps} steps per "
                   "chain", unit="batch", enabled=progress):
        y = labels[s:s + batch_size] if labels is not None else None
        noise = KeyedNoise(seed, s, min(s + batch_size, n), "chain")  # per chain, not per batch
        x0 = init(noise.n, noise, y).to(dev)
        rec = None if mcmc else TraceRecorder(model, stride_for(steps))
        chunks.append(advance(model, x0, proto.sampler, noise, _to(y, dev), traced(kw, rec), runs).cpu())
        traces += [rec.trace()] if rec is not None else []
    shape = (model.info.in_channels, *model.info.image_size)
    x = distributed.gather(torch.cat(chunks) if chunks else torch.zeros(0, *shape))
    if mcmc:
        return x, None, _gather_runs(runs, steps, proto.sampler.warmup)
    return x, gather_trace(ChainTrace.cat(traces) if traces else _no_chains(steps, stride_for(steps))), None


def pcd(model: Any, proto: Any, buf: ReplayBuffer, labels: Optional[torch.Tensor], kw: dict[str, Any], seed: int,
        batch_size: int, steps: int, progress: bool) -> tuple[torch.Tensor, list[ChainTrace], Optional[MCMCRuns]]:
    """PCD rounds on ``buf``, ``steps`` sampler passes per draw (see the module docstring): ``(which slots were
    advanced, each round's trace, MH / MALA runs)``."""
    import torch

    from .rng import KeyedNoise
    from .sampling.mcmc import MCMCConfig
    from .sampling.trace import TraceRecorder, mcmc_trace

    dev, size, mcmc = model.device, proto.pcd_batch, isinstance(proto.sampler, MCMCConfig)
    coupled = kw["bn_train"] or (mcmc and proto.sampler.warmup > 0)
    bs = size if coupled else batch_size
    lo, hi = (0, size) if coupled else distributed.shard(size, align=bs)
    split = distributed.gather if not coupled else (lambda t: t)  # coupled: every rank advanced every draw
    advanced = torch.zeros(len(buf), dtype=torch.bool)
    rounds, runs = [], []
    desc = f"PCD {proto.name} ({model.info.name}), {size} chains x {steps} steps per round"
    for r in track(range(proto.pcd_rounds), desc=desc, unit="round", enabled=progress):
        x0, idx = buf.sample(size)
        y = labels[idx] if labels is not None else None
        chunks, traces, local = [], [], []
        for s in range(lo, hi, bs):
            e = min(s + bs, hi)
            rec = None if mcmc else TraceRecorder(model)
            chunks.append(advance(model, x0[s:e].to(dev), proto.sampler, KeyedNoise(seed, s, e, "pcd", r),
                                  _to(y[s:e] if y is not None else None, dev), traced(kw, rec), local).cpu())
            traces.append(rec.trace() if rec is not None else mcmc_trace(local[-1].energy, local[-1].warmup, None))
        buf.update(idx, split(torch.cat(chunks) if chunks else x0[:0].cpu()))
        advanced[idx.cpu()] = True
        rounds.append(_round_trace(traces, steps, mcmc, proto.sampler, coupled))
        runs += [_gather_runs(local, steps, proto.sampler.warmup, energy=False)] if mcmc and not coupled else local
    if not mcmc:
        return advanced, rounds, None
    return advanced, rounds, MCMCRuns(torch.cat([r.acceptance for r in runs]), None,
                                      torch.cat([torch.as_tensor(_sizes(r), dtype=torch.float64) for r in runs]),
                                      proto.sampler.warmup)


def _sizes(run: Any) -> Any:
    return run.step_sizes if isinstance(run, MCMCRuns) else [run.step_size]


def _round_trace(traces: list, steps: int, mcmc: bool, cfg: Any, coupled: bool) -> ChainTrace:
    """One PCD round's trace over all its draws (this rank's batches side by side, gathered unless coupled)."""
    import torch

    from .sampling.trace import ChainTrace, mcmc_trace

    if traces:
        local = ChainTrace.cat(traces)
    else:
        local = mcmc_trace(torch.zeros(steps, 0), cfg.warmup, None) if mcmc else _no_chains(steps, 1)
    return local if coupled else gather_trace(local)


def traced(kw: dict[str, Any], rec: Any) -> dict[str, Any]:
    """The sampler's keyword arguments, with the recorder's log-density when the energies are recorded."""
    return kw if rec is None else {**kw, "log_density": rec.log_density}


def _to(y: Optional[torch.Tensor], dev: Any) -> Optional[torch.Tensor]:
    return y.to(dev) if y is not None else None
