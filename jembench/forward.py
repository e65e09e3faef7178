"""The shared forward cache: one pass over a dataset feeds accuracy, calibration and logit OOD scores.

A pass is keyed by content hashes of (model parameters, head and input normalisation; dataset images and
labels) plus the test noise sigma, seed and refinement.
Inside a process passes live in memory; with ``cache_dir`` they persist as ``<key>.pt`` files and a
second run reuses them. ``ForwardCache.model_calls`` counts batches sent through a model.

Test-time noise (JEM evaluates with sigma 0.03): ``x + sigma * N(0, I)`` in model space, drawn in
fixed chunks of ``NOISE_CHUNK`` samples, chunk j from seed ``derive_seed(seed, "test-noise", j)``
(:func:`jembench.rng.keyed`), so the noise of each sample does not depend on the batch size.

JEM-K refinement (JEM's ``test_clf`` with ``n_steps``; Grathwohl et al. 2020): after the test noise, K SGLD
steps on log p~(x), ``x <- x + step_size * grad_x log p~(x) + noise * N(0, I)`` (JEM: step 1, noise 0.01,
no clamping), then classify. Step t's noise is drawn like the test noise from ``derive_seed(seed, "refine",
t, j)``, so refined logits do not depend on the batch size either. The model runs in eval mode; its
train/eval flags and BatchNorm statistics are restored afterwards.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch

from . import distributed
from .data.imageset import ImageSet
from .io import read_cache
from .models.checkpoints import atomic_torch_save
from .models.hybrid import HybridModel
from .progress import bar as progress_bar
from .rng import NOISE_CHUNK, keyed
from .runtime import to_device
from .sampling.bn import preserve_bn_stats
from .sampling.sgld import SGLDConfig, sgld_sample

@dataclass
class ForwardPass:
    """Outputs of one pass, on CPU: ``logits`` [N, C] float32, ``log_px`` [N], ``labels`` [N] or None."""

    logits: torch.Tensor
    log_px: torch.Tensor
    labels: Optional[torch.Tensor]
    key: str
    protocol: dict[str, Any] = field(default_factory=dict)

    @property
    def probs(self) -> torch.Tensor:
        return self.logits.softmax(-1)


def model_fingerprint(model: HybridModel) -> str:
    """sha256 of the parameters and buffers plus the head and input transform; cached on the model until
    any parameter or buffer changes (tracked by the tensors' in-place version counters)."""
    header = f"head={model.info.head};mean={model.info.mean};std={model.info.std}"
    stamp = (header, tuple((t.data_ptr(), t._version) for t in itertools.chain(model.parameters(), model.buffers())))
    cached = getattr(model, "_jembench_fingerprint", None)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    h = hashlib.sha256(header.encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    fp = h.hexdigest()
    object.__setattr__(model, "_jembench_fingerprint", (stamp, fp))
    return fp


def test_noise(start: int, stop: int, shape: tuple[int, ...], sigma: float, seed: int) -> torch.Tensor:
    """Test-time noise ``sigma * N(0, I)`` for samples ``[start, stop)``: independent of how the range is batched."""
    return sigma * keyed(start, stop, shape, seed, "test-noise", chunk=NOISE_CHUNK)


def refine_inputs(model: HybridModel, x: torch.Tensor, cfg: SGLDConfig, start: int, seed: int) -> torch.Tensor:
    """JEM-K: ``cfg.steps`` SGLD steps on log p~(x) from ``x`` (samples ``start..`` of the dataset), each
    step's noise drawn per sample (:func:`jembench.rng.keyed`), so the result does not depend on the batching."""
    step = dataclasses.replace(cfg, steps=1, noise=0.0, clamp_x=False)
    lo, hi = model.info.value_range
    stop = start + x.shape[0]
    for t in range(cfg.steps):
        x = sgld_sample(model, x, step, None, value_range=(lo, hi))  # noise-free step: no generator needed
        if cfg.noise:
            x = x + cfg.noise * keyed(start, stop, tuple(x.shape[1:]), seed, "refine", t, chunk=NOISE_CHUNK).to(x)
        if cfg.clamp_x:
            x = x.clamp(lo, hi)
    return x


def noisy_batches(model: HybridModel, imageset: ImageSet, batch_size: int, sigma: float, seed: int, desc: str,
                  progress: bool = True, span: Optional[tuple[int, int]] = None) -> Iterator[tuple[int, torch.Tensor]]:
    """``(start, x)`` over samples ``span = (lo, hi)`` of ``imageset`` (default all) in order: x in model space
    plus the test noise of samples ``[start, start + len(x))``, on the model's device, with the model in eval mode
    (its train/eval flags and BN statistics restored afterwards) and a progress bar. Every per-sample pass (logits,
    input gradients) iterates this way, so all of them see the same noisy inputs whatever the batch size."""
    lo, hi = span if span is not None else (0, len(imageset))
    bar = progress_bar(hi - lo, f"{desc} {imageset.name} ({model.info.name})", "img", progress)
    with preserve_bn_stats(model):
        model.eval()
        for start in range(lo, hi, batch_size):
            stop = min(start + batch_size, hi)
            x = model.to_model_space(imageset.pixels01(start, stop))
            if sigma:
                x = x + test_noise(start, stop, tuple(x.shape[1:]), sigma, seed)
            yield start, to_device(x, model.device)
            bar.update(stop - start)
    bar.close()


def sharded(model: HybridModel, imageset: ImageSet, batch_size: int, sigma: float, seed: int, desc: str,
            progress: bool, fn: Callable[[int, torch.Tensor], tuple[torch.Tensor, ...]],
            empty: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """``fn(start, x)`` over this rank's block of samples (:func:`jembench.distributed.shard`, whole batches, so
    every batch holds the samples it holds in one process and outputs are bit-identical), outputs (CPU, per
    sample) concatenated and gathered from every rank in sample order; ``empty`` are the outputs of no samples.
    In a single process: the whole set, no communication."""
    span = distributed.shard(len(imageset), align=batch_size)
    outs = [fn(start, x) for start, x in noisy_batches(model, imageset, batch_size, sigma, seed, desc,
                                                        progress and distributed.is_main(), span)]
    local = tuple(torch.cat(parts) for parts in zip(*outs)) if outs else empty
    return tuple(distributed.gather(t) for t in local)


class ForwardCache:
    """Memory (and optionally disk) cache of forward passes."""

    def __init__(self, cache_dir: Optional[str | Path] = None):
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.memory: dict[str, ForwardPass] = {}
        self.model_calls = 0  # batches sent through a model (refinement steps not counted separately)
        self.disk_hits = 0

    @staticmethod
    def protocol(imageset: ImageSet, sigma: float, seed: int, refine: Optional[SGLDConfig],
                 precision: str = "fp32") -> dict[str, Any]:
        return {"dataset": imageset.name, "split": imageset.split, "n": len(imageset), "test_sigma": float(sigma),
                "sigma_space": "model", "noise_seed": int(seed), "refine": refine.to_dict() if refine else None,
                "dataset_sha256": imageset.fingerprint(), "precision": precision}

    def key(self, model: HybridModel, imageset: ImageSet, sigma: float, seed: int,
            refine: Optional[SGLDConfig]) -> str:
        blob = json.dumps([model_fingerprint(model), self.protocol(imageset, sigma, seed, refine, model.precision)],
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def get(self, model: HybridModel, imageset: ImageSet, *, sigma: float = 0.0, seed: int = 0,
            refine: Optional[SGLDConfig] = None, batch_size: int = 256, progress: bool = True) -> ForwardPass:
        """The pass of ``model`` over ``imageset`` with test noise ``sigma`` (and JEM-K ``refine`` steps)."""
        key = self.key(model, imageset, sigma, seed, refine)
        if key in self.memory:
            return self.memory[key]
        path = self.cache_dir / f"{key}.pt" if self.cache_dir else None
        if path is not None:  # rank 0 reads the file and hands it to the others: ranks agree without a shared disk
            fp = distributed.from_main(read_cache(path, lambda p: _read_pass(p, key, len(imageset)), "forward")
                                       if distributed.is_main() else None)  # corrupt: deleted, warned
            if fp is not None:
                self.memory[key] = fp
                self.disk_hits += 1
                return fp
        fp = self._compute(model, imageset, sigma, seed, refine, batch_size, progress, key)
        self.memory[key] = fp
        if path is not None and distributed.is_main():
            atomic_torch_save({"logits": fp.logits, "log_px": fp.log_px, "labels": fp.labels,
                               "protocol": fp.protocol}, path)
        return fp

    def _compute(self, model: HybridModel, imageset: ImageSet, sigma: float, seed: int,
                 refine_cfg: Optional[SGLDConfig], batch_size: int, progress: bool, key: str) -> ForwardPass:
        def one(start: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            if refine_cfg is not None and refine_cfg.steps:
                x = refine_inputs(model, x, refine_cfg, start, seed)
            with torch.no_grad():
                lg, lp = model.logits_and_log_px(x)
            self.model_calls += 1
            return lg.float().cpu(), lp.float().cpu()

        empty = (torch.zeros(0, model.info.n_classes), torch.zeros(0))
        logits, log_px = sharded(model, imageset, batch_size, sigma, seed, "forward", progress, one, empty)
        return ForwardPass(logits, log_px, imageset.labels, key,
                           self.protocol(imageset, sigma, seed, refine_cfg, model.precision))


def _read_pass(path: Path, key: str, n: int) -> ForwardPass:
    """A cached pass from disk; any damage (not a torch file, keys or length wrong, NaN) raises."""
    d = torch.load(path, map_location="cpu", weights_only=True)
    fp = ForwardPass(d["logits"], d["log_px"], d.get("labels"), key, d["protocol"])
    if fp.logits.shape[0] != n or fp.log_px.shape[0] != n or not bool(torch.isfinite(fp.logits).all()):
        raise ValueError(f"holds {fp.logits.shape[0]} rows for {n} images or non-finite logits")
    return fp
