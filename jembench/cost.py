"""What a step costs, counted before it runs: network passes, sampler and attack steps, per image and in total.

Each evaluator declares its cost from its settings in one function next to it (``Evaluator.cost``); ``--plan``
prints it and every evaluation records it in results.json (``provenance["passes"]``: RobustBench's
``number_forward_passes`` per image, extended to backward passes and sampler steps).

Units: a pass is one image through the network (a batch of B is B passes); a backward pass is one
gradient through it (each SGLD step and each attack gradient is one forward and one backward). Feature
extractor passes (generation metrics) are counted apart: another network. Set sizes are the registry's
declared sizes (``DatasetSpec.sizes``; npz / folder sources are read), cut to the run's N.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Optional, Sequence

if TYPE_CHECKING:  # torch, models and data are imported when a plan is made, not when commands are listed
    import torch

    from .models import HybridModel

PROBE_CPU_BATCH = 32  # on CPU the probe times at most this batch (smaller ones are dominated by overheads)
PROBE_SECONDS = 1.0  # each probe repeats until it has run this long
PROBE_REPS = 5  # at least this many timed calls (a loaded machine stalls some of them)
PROBE_LONG = 10.0  # a first call this long is the measurement (no warm-up for large models on CPU)


@dataclass
class Cost:
    """One part of a step: ``images`` evaluated with ``forward`` / ``backward`` passes in total."""

    part: str
    images: int
    forward: int
    backward: int = 0
    sampler_steps: int = 0  # SGLD steps summed over chains (chains x steps)
    attack_steps: int = 0  # attack iterations summed over images and restarts
    extractor: int = 0  # feature-extractor passes (another network; not in forward / backward)
    shared: Optional[str] = None  # the shared forward pass it reads: run-all pays each key once

    def per_image(self, total: int) -> float:
        return total / self.images if self.images else 0.0


def total(costs: Sequence[Cost]) -> dict[str, Any]:
    """Totals and per-image numbers of a step's parts (what results.json records)."""
    keys = ("forward", "backward", "sampler_steps", "attack_steps", "extractor")
    sums = {k: int(sum(getattr(c, k) for c in costs)) for k in keys}
    images = next((c.images for c in costs if c.images), 0)  # the step's evaluation set: its first part's
    return {"images": images, **sums,
            **{f"{k}_per_image": sums[k] / images if images else 0.0 for k in keys if k != "extractor"},
            "number_forward_passes": sums["forward"] / images if images else 0.0,
            "parts": [asdict(c) for c in costs],
            "units": "passes of one image through the network; SGLD step and attack gradient = 1 forward + 1 "
                     "backward; per_image = total / the images of the step's evaluation set (its first part)"}


def set_size(name: str, split: str, n: Optional[int]) -> int:
    """Images a step reads from a set: its declared size (npz / folder: read), cut to ``n``."""
    from .data.registry import GENERIC_PREFIXES, get_dataset, get_spec

    if name.startswith(GENERIC_PREFIXES):
        size = len(get_dataset(name, split))
    else:
        spec = get_spec(name)
        size = spec.sizes.get(split) or len(get_dataset(name, split))
    return min(size, n) if n is not None else size


@dataclass
class Throughput:
    """Seconds per image of one model at ``batch``: forward (no gradient) and forward + backward to the input."""

    forward_s: float
    forward_backward_s: float
    batch: int
    device: str

    def seconds(self, forward: int, backward: int) -> float:
        """Wall time of ``forward`` passes and ``backward`` passes (each costing forward+backward - forward)."""
        return forward * self.forward_s + backward * max(self.forward_backward_s - self.forward_s, 0.0)


def probe(model: HybridModel, batch_size: int) -> Throughput:
    """Time the model on random inputs of its shape: forward, then forward + backward of log p~(x) to x."""
    import torch

    dev = model.device
    batch = min(batch_size, PROBE_CPU_BATCH) if dev.type == "cpu" else batch_size
    x = torch.rand(batch, model.info.in_channels, *model.info.image_size, device=dev) * 2 - 1

    def fwd() -> None:
        with torch.no_grad():
            model(x)

    def fwd_bwd() -> None:
        xg = x.detach().requires_grad_(True)
        torch.autograd.grad(model.log_px(xg).sum(), xg)

    fastest = _time([fwd, fwd_bwd], dev)
    return Throughput(fastest[0] / batch, fastest[1] / batch, batch, str(dev))


def _time(fns: list[Any], dev: torch.device) -> list[float]:
    """Fastest timed call of each of ``fns`` (the minimum: other load on the machine only adds time), taken in
    interleaved rounds after a warm-up call of each, at least :data:`PROBE_REPS` rounds and until
    :data:`PROBE_SECONDS`; warm-up calls of more than :data:`PROBE_LONG` seconds are the measurement themselves
    (one-off start-up costs are then a small share)."""
    first = [_once(fn, dev) for fn in fns]
    if min(first) >= PROBE_LONG:
        return first
    times: list[list[float]] = [[] for _ in fns]
    while len(times[0]) < PROBE_REPS or (sum(map(sum, times)) < PROBE_SECONDS and len(times[0]) < 20):
        for fn, t in zip(fns, times):
            t.append(_once(fn, dev))
    return [min(t) for t in times]


def _once(fn: Any, dev: torch.device) -> float:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    start = time.perf_counter()
    fn()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter() - start
