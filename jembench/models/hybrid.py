"""The interface every evaluator uses: a classifier read as an energy-based model.

JEM (Grathwohl et al. 2020): p(y|x) = softmax f(x), log p~(x) = logsumexp_y f(x)[y], E(x) = -log p~(x),
log p~(x, y) = f(x)[y]. Unconditional ``F`` models take log p~(x) from their energy head instead, and
log p~(x, y) = log p~(x) + log p(y|x).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn as nn

from ..runtime import autocast
from .finite import check_outputs
from .wrn import JEMNet


@dataclass
class ModelInfo:
    """Everything known about a model: what was read from the file and what was inferred."""

    family: str  # "jem", "jem++", "jembench", "wrapped"
    source_format: str  # "jem", "jem++", "bare-state-dict", "jembench", "module"
    architecture: str  # "wrn" or a module class name
    n_classes: int
    in_channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...] = (0.5,)  # model input = (pixel01 - mean) / std
    std: tuple[float, ...] = (0.5,)
    depth: Optional[int] = None
    width: Optional[int] = None
    norm: Optional[str] = None
    head: str = "ccf"  # "ccf": log p(x) = logsumexp(logits); "f": energy head
    dataset: Optional[str] = None
    train_sigma: Optional[float] = None
    bn_momentum: Optional[float] = None
    path: Optional[str] = None
    sha256: Optional[str] = None
    name: Optional[str] = None
    jembench_version: Optional[str] = None
    train_config: dict[str, Any] = field(default_factory=dict)
    experts: list[dict[str, Any]] = field(default_factory=list)  # a product of experts: each one's file and weight
    notes: list[str] = field(default_factory=list)

    @property
    def arch_label(self) -> str:
        """``"WRN-28-10"`` for WRNs, else the module class name."""
        return f"WRN-{self.depth}-{self.width}" if self.architecture == "wrn" else self.architecture

    @property
    def value_range(self) -> tuple[float, float]:
        """Model-space values of pixel 0 and pixel 1 (first channel)."""
        return ((0.0 - self.mean[0]) / self.std[0], (1.0 - self.mean[0]) / self.std[0])

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["image_size"] = list(self.image_size)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["value_range"] = list(self.value_range)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelInfo":
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        for key in ("image_size", "mean", "std"):
            if key in kw:
                kw[key] = tuple(kw[key])
        return cls(**kw)


class HybridModel(nn.Module):
    """A classifier with its energy reading. ``model(x)`` returns logits; inputs are in model space.

    Build one with :func:`jembench.load` (checkpoint files) or :func:`jembench.wrap` (any classifier). Every
    logits / log p~(x) it produces is checked finite (:func:`jembench.models.finite.check_outputs`: a NaN fails
    the evaluation instead of becoming a number) unless ``check_outputs`` is False (the trainer has its own guard).
    ``precision`` (fp32, bf16, fp16) is the autocast of every pass (:func:`jembench.runtime.autocast`); outputs
    are float32 whatever it is.
    """

    check_outputs = True
    precision = "fp32"

    def __init__(self, net: nn.Module, info: ModelInfo, replay_buffer: Optional[torch.Tensor] = None,
                 extras: Optional[dict[str, Any]] = None):
        super().__init__()
        self.net = net
        self.info = info
        self.replay_buffer = replay_buffer
        self.extras = extras or {}  # e.g. JEM++ per-class Gaussian statistics
        self.eval()

    # --- the energy-model reading --------------------------------------------------------------
    def logits_and_log_px(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[B, C]`` and log p~(x) ``[B]`` from one forward pass (float32, computed at ``precision``)."""
        logits, log_px = self._at_precision(self._logits_and_log_px, x)
        if self.check_outputs:
            check_outputs(str(self.info.name), logits=logits, log_px=log_px)
        return logits, log_px

    def _logits_and_log_px(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(self.net, JEMNet):
            z = self.net.f(x)
            logits = self.net.class_output(z)
            if self.info.head == "f":
                return logits, self.net.energy_output(z).squeeze(-1)
        else:
            logits = self.net(x)
        return logits, logits.float().logsumexp(-1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        logits = self._at_precision(self._logits, x)
        if self.check_outputs:
            check_outputs(str(self.info.name), logits=logits)
        return logits

    def _at_precision(self, fn: Any, x: torch.Tensor) -> Any:
        """``fn(x)`` under the autocast of :attr:`precision`, its tensor (or tuple of tensors) made float32."""
        if self.precision == "fp32":
            return fn(x)
        with autocast(self.precision, x.device):
            out = fn(x)
        return tuple(o.float() for o in out) if isinstance(out, tuple) else out.float()

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.class_output(self.net.f(x)) if isinstance(self.net, JEMNet) else self.net(x)

    def log_px(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised log density log p~(x) ``[B]``."""
        return self.logits_and_log_px(x)[1]

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """E(x) = -log p~(x)."""
        return -self.log_px(x)

    def log_pxy(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log p~(x, y): f(x)[y] for CCF models, log p~(x) + log p(y|x) for ``F`` models."""
        return self.joint_log_density(*self.logits_and_log_px(x), y)

    def joint_log_density(self, logits: torch.Tensor, log_px: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log p~(x, y) from one pass's logits and log p~(x) (samplers that also record the pass use it)."""
        y = y.view(-1, 1)
        if self.info.head == "f":
            return log_px + logits.log_softmax(-1).gather(1, y).squeeze(1)
        return logits.gather(1, y).squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x)

    # --- input space ----------------------------------------------------------------------------
    def to_model_space(self, pixels01: torch.Tensor) -> torch.Tensor:
        """Map images in [0, 1] to the model's input space."""
        mean = torch.tensor(self.info.mean, dtype=pixels01.dtype, device=pixels01.device).view(1, -1, 1, 1)
        std = torch.tensor(self.info.std, dtype=pixels01.dtype, device=pixels01.device).view(1, -1, 1, 1)
        return (pixels01 - mean) / std

    def to_pixels01(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_model_space`."""
        mean = torch.tensor(self.info.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.info.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return x * std + mean

    @property
    def device(self) -> torch.device:
        """Where the weights live (CPU for a wrapped module without parameters or buffers)."""
        t = next(self.parameters(), None)
        t = t if t is not None else next(self.buffers(), None)
        return t.device if t is not None else torch.device("cpu")

    def __repr__(self) -> str:  # short: the nn.Module repr of a WRN fills a screen
        i = self.info
        arch = f"{i.arch_label} norm={i.norm}" if i.architecture == "wrn" else i.arch_label
        return f"HybridModel({i.family}, {arch}, classes={i.n_classes}, head={i.head}, name={i.name!r})"


def wrap(module: nn.Module, *, n_classes: int, input_shape: tuple[int, int, int],
         mean: tuple[float, ...] = (0.5,), std: tuple[float, ...] = (0.5,), dataset: Optional[str] = None,
         name: Optional[str] = None) -> HybridModel:
    """Turn any classifier ``module: x -> logits [B, n_classes]`` into a :class:`HybridModel` (CCF reading:
    log p~(x) = logsumexp of its logits).

    ``input_shape`` is (C, H, W); ``mean``/``std`` (one value, or one per channel) map [0, 1] pixels to the
    module's inputs as ``(pixel - mean) / std`` (the default gives [-1, 1], as JEM).
    """
    if len(tuple(input_shape)) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {input_shape!r}")
    c, h, w = (int(v) for v in input_shape)
    norm = {}
    for key, value in (("mean", tuple(float(v) for v in mean)), ("std", tuple(float(v) for v in std))):
        if len(value) not in (1, c):
            raise ValueError(f"{key} must have 1 or {c} values, got {value}")
        norm[key] = value * c if len(value) == 1 else value
    info = ModelInfo(family="wrapped", source_format="module", architecture=type(module).__name__,
                     n_classes=int(n_classes), in_channels=c, image_size=(h, w), dataset=dataset,
                     name=name or type(module).__name__, **norm)
    return HybridModel(module, info)


def describe(model: HybridModel) -> dict[str, Any]:
    """What ``jembench inspect`` prints: :meth:`ModelInfo.to_dict` plus the architecture label, input shape,
    parameter count, replay buffer shape (or None) and the names of any extras."""
    buf = model.replay_buffer
    return {**model.info.to_dict(), "arch_label": model.info.arch_label,
            "input_shape": [model.info.in_channels, *model.info.image_size],
            "n_parameters": sum(p.numel() for p in model.parameters()),
            "replay_buffer_shape": list(buf.shape) if buf is not None else None,
            "extras": sorted(str(k) for k in model.extras)}
