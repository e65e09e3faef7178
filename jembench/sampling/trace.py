"""What a sampler run leaves behind for its diagnostics: the energy of every chain at every recorded step.

A :class:`ChainTrace` holds ``energy`` ``[steps, chains]`` (E(x) = -log p~(x) = -logsumexp_y f(x)[y]), the
sampler step of each row, optionally each chain's acceptance rate (MH / MALA) and its predicted class
(argmax_y f(x)[y]) at each recorded step. :class:`TraceRecorder` fills one for free: it wraps the model's
log-density so the logits the sampler computes for its gradient anyway are read once more (no extra forward
pass). Row t is the chain state *entering* gradient step t (the state after the last step is not recorded:
that would cost a pass). With ``stride`` s only every s-th step is kept (long chains, bounded memory).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch

MAX_ROWS = 1000  # recorded steps per trace at most (the stride is chosen to stay under it)


@dataclass
class ChainTrace:
    """``energy`` ``[steps, chains]`` (CPU float), ``steps`` ``[steps]`` (sampler step of each row),
    ``acceptance`` ``[chains]`` or None, ``predicted`` ``[steps, chains]`` (int) or None, ``axis`` what a row is."""

    energy: torch.Tensor
    steps: torch.Tensor
    acceptance: Optional[torch.Tensor] = None
    predicted: Optional[torch.Tensor] = None
    axis: str = "sampler step"

    def __post_init__(self) -> None:
        if self.energy.dim() != 2 or self.steps.shape != self.energy.shape[:1]:
            raise ValueError(f"ChainTrace: energy must be [steps, chains] with one step index per row, got "
                             f"{tuple(self.energy.shape)} and {tuple(self.steps.shape)}")
        if self.predicted is not None and self.predicted.shape != self.energy.shape:
            raise ValueError("ChainTrace: predicted must have the energy's shape [steps, chains]")
        if self.acceptance is not None and self.acceptance.shape != self.energy.shape[1:]:
            raise ValueError("ChainTrace: acceptance must be one rate per chain")

    @property
    def n_chains(self) -> int:
        return self.energy.shape[1]

    @classmethod
    def cat(cls, traces: Sequence["ChainTrace"]) -> "ChainTrace":
        """Traces of the same steps over different chains (batches of one run), side by side."""
        first = traces[0]
        if any(not torch.equal(t.steps, first.steps) for t in traces):
            raise ValueError("ChainTrace.cat: traces record different steps")
        opt = lambda name: (None if any(getattr(t, name) is None for t in traces)  # noqa: E731
                            else torch.cat([getattr(t, name) for t in traces], -1))
        return cls(torch.cat([t.energy for t in traces], 1), first.steps, opt("acceptance"), opt("predicted"),
                   first.axis)

    def arrays(self) -> dict[str, Any]:
        """numpy arrays for an npz file (``energy``, ``steps`` and the optional ones present)."""
        out = {"energy": self.energy.numpy(), "steps": self.steps.numpy()}
        for name in ("acceptance", "predicted"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name).numpy()
        return out


def stride_for(steps: int, max_rows: int = MAX_ROWS) -> int:
    """The smallest stride that records at most ``max_rows`` of ``steps`` steps."""
    return max(1, math.ceil(steps / max_rows))


class TraceRecorder:
    """Wraps a HybridModel's log-density so every call records E(x) and argmax f(x) of the chains.

    ``recorder.log_density`` goes where a sampler takes ``log_density`` (``sgld_sample``, ``jempp_sample``):
    it returns log p~(x) (or log p~(x, y) with labels) from the same forward pass it records.
    """

    def __init__(self, model: Any, stride: int = 1):
        self.model, self.stride = model, stride
        self.calls = 0
        self._energy: list[torch.Tensor] = []
        self._pred: list[torch.Tensor] = []
        self._steps: list[int] = []

    def log_density(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        logits, log_px = self.model.logits_and_log_px(x)
        if self.calls % self.stride == 0:
            self._energy.append(-log_px.detach().float())
            self._pred.append(logits.detach().argmax(-1))
            self._steps.append(self.calls)
        self.calls += 1
        return log_px if y is None else self.model.joint_log_density(logits, log_px, y)

    def trace(self) -> ChainTrace:
        """What was recorded (an empty ``[0, 0]`` trace when the sampler made no step)."""
        if not self._energy:
            return ChainTrace(torch.zeros(0, 0), torch.zeros(0, dtype=torch.long))
        return ChainTrace(torch.stack(self._energy).cpu(), torch.tensor(self._steps),
                          predicted=torch.stack(self._pred).cpu())


def mcmc_trace(energy: torch.Tensor, warmup: int, acceptance: Optional[torch.Tensor] = None) -> ChainTrace:
    """MH / MALA runs (``energy`` ``[warmup + steps, chains]`` after each step): the kept steps, warm-up dropped,
    at most ``MAX_ROWS`` rows, with the per-chain acceptance."""
    kept = energy[warmup:]
    stride = stride_for(len(kept))
    return ChainTrace(kept[::stride].float().cpu(), torch.arange(warmup + 1, warmup + 1 + len(kept))[::stride],
                      acceptance=acceptance.cpu() if acceptance is not None else None,
                      axis="sampler step (energy after the step; warm-up dropped)")


def rounds_trace(rounds: Sequence[ChainTrace]) -> ChainTrace:
    """PCD: row r is round r's draw of ``pcd_batch`` chains at its last recorded step (SGLD / JEM++: entering the
    last step; MH / MALA: after it); "chain" j is the j-th draw of every round (other buffer slots each round), so
    R-hat and drift read whether the buffer is stationary."""
    if not rounds or not rounds[0].energy.shape[0]:
        return ChainTrace(torch.zeros(0, 0), torch.zeros(0, dtype=torch.long))
    pred = None if rounds[0].predicted is None else torch.stack([t.predicted[-1] for t in rounds])
    return ChainTrace(torch.stack([t.energy[-1] for t in rounds]), torch.arange(len(rounds)), predicted=pred,
                      axis="PCD round (each round's draw at its last recorded step)")
