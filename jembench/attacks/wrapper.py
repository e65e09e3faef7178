"""Pixel-space classifiers for attack libraries, optionally defended by JEM-K SGLD purification.

Attacks see images in [0, 1]; the conversion to the model's input space (``model.to_model_space``) lives
here, so an eps of 8/255 means 8/255 in pixels whatever the model's normalisation (JEM: [-1, 1]).

JEM-K purification (Grathwohl et al. 2020, sec. 5.3): in model space, ``copies`` noisy copies
``x + sigma * N(0, I)``, each refined by K SGLD steps ``x <- x + step * grad_x log p~(x) + noise * N(0, I)``,
then the logits of the copies are averaged. Gradients of the attack reach the input either straight through
the purifier (BPDA, Athalye et al. 2018: forward purified, backward identity, written
``x + (purify(x) - x).detach()``) or through the unrolled chain (``gradient="full"``, create_graph).

Noise keyed by sample index (``key(seed, start, n)``, recipe ``per-sample v2``): each call's rows are ``m`` stacked
replicas of samples ``[start, start + n)`` (EOT samples or evaluation purifications batched along the batch
dimension); replica ``d`` (counted over the calls since ``key``), copy ``c`` takes its t-th draw (t = 0: the
``sigma`` noise, then one per SGLD step) keyed ``(seed, "purify", c, d, t)`` (:class:`jembench.rng.KeyedNoise`).
So stacking replicas in one call gives the noise of calling them one by one, whatever the batch size.
``reseed(seed)`` instead draws everything from one generator (attacks that pick rows themselves, APGD).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import torch
import torch.nn as nn

from ..models.hybrid import HybridModel
from ..rng import KeyedNoise
from ..runtime import generator, randn
from ..sampling.sgld import SGLDConfig, sgld_sample

GRADIENTS = ("bpda", "full")


@dataclass(frozen=True)
class PurifyConfig:
    """JEM-K: ``steps`` = K (0: no purification at all, the undefended model), all in model space."""

    steps: int = 0
    step_size: float = 1.0
    noise: float = 0.01
    copies: int = 5
    sigma: float = 0.03

    @property
    def active(self) -> bool:
        return self.steps > 0

    def sgld(self) -> SGLDConfig:
        return SGLDConfig(steps=self.steps, step_size=self.step_size, noise=self.noise)

    def to_dict(self) -> dict:
        return {**asdict(self), "space": "model", "logits": "mean over copies"} if self.active else {"steps": 0}


@dataclass
class PassCounter:
    """Network passes, counted in images: a forward of a batch of B images adds B to ``forward``.

    Each SGLD step is one forward and one backward; an attack gradient through the BPDA purifier is one
    backward per copy, through the unrolled chain 1 + 2K backward-equivalents per copy (each step's gradient
    graph is differentiated again).
    """

    forward: int = 0
    backward: int = 0

    def reset(self) -> None:
        self.forward = self.backward = 0


class PixelClassifier(nn.Module):
    """``pixels01 [B, C, H, W] -> logits [B, n_classes]``: model space conversion, optional purification."""

    def __init__(self, model: HybridModel, purify: Optional[PurifyConfig] = None, *, gradient: str = "bpda",
                 seed: int = 0, counter: Optional[PassCounter] = None):
        super().__init__()
        if gradient not in GRADIENTS:
            raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
        self.model = model
        self.purify = purify if purify is not None and purify.active else None
        self.gradient = gradient
        self.counter = counter if counter is not None else PassCounter()
        self.reseed(seed)
        self.eval()

    def train(self, mode: bool = True) -> "PixelClassifier":
        """Always evaluation mode, for the wrapper and the model it holds. torchattacks puts a model it found in
        training mode back with ``train()`` after each attack; as an ``nn.Module``'s child, the evaluated model
        would then run BatchNorm on batch statistics and overwrite its running statistics. Samplers that want
        batch statistics (``bn_train``) set them for their own steps and restore them."""
        return super().train(False)

    def reseed(self, seed: int) -> None:
        """Restart the purification noise from ``seed`` (every call afterwards draws fresh noise)."""
        self.gen = generator(seed, self.model.device)
        self.keying: Optional[tuple[int, int, int]] = None

    def key(self, seed: int, start: int, n: int) -> None:
        """Key the noise of the next calls by sample index: samples ``[start, start + n)`` (module docstring)."""
        self.keying, self.replicas = (int(seed), int(start), int(n)), 0

    def _noise(self, rows: int, copies: int) -> torch.Generator | KeyedNoise:
        if self.keying is None:
            return self.gen
        seed, start, n = self.keying
        if rows % n:
            raise ValueError(f"keyed purification: {rows} rows are not replicas of {n} samples")
        m = rows // n
        groups = [(c, d) for c in range(copies) for d in range(self.replicas, self.replicas + m)]
        self.replicas += m
        return KeyedNoise(seed, start, start + n, "purify", groups=groups)

    def forward(self, pixels01: torch.Tensor) -> torch.Tensor:
        x = self.model.to_model_space(pixels01)
        if self.purify is None:
            return self._logits(x, backward_factor=1)
        p, b = self.purify, x.shape[0]
        noise = self._noise(b, p.copies)
        start = x.repeat(p.copies, 1, 1, 1)  # copy-major: rows [c * B, (c + 1) * B) are copy c
        start = start + p.sigma * randn(tuple(start.shape), noise, start)
        full = self.gradient == "full"
        end = sgld_sample(self.model, start, p.sgld(), noise, value_range=self.model.info.value_range,
                          log_density=self._log_px, differentiable=full)
        purified = end if full else start + (end - start).detach()  # BPDA: forward purified, backward identity
        logits = self._logits(purified, backward_factor=1 + 2 * p.steps if full else 1)
        return logits.view(p.copies, b, -1).mean(0)

    def _logits(self, x: torch.Tensor, backward_factor: int) -> torch.Tensor:
        self.counter.forward += x.shape[0]
        if x.requires_grad and torch.is_grad_enabled():
            n = x.shape[0] * backward_factor
            x.register_hook(lambda g: self._count_backward(n))
        return self.model(x)

    def _count_backward(self, n: int) -> None:
        self.counter.backward += n

    def _log_px(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        self.counter.forward += x.shape[0]
        self.counter.backward += x.shape[0]  # SGLD differentiates every evaluation
        return self.model.log_px(x)
