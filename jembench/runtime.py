"""Devices, precision, seeds and generators: every random draw in jembench goes through an explicit generator.

Precision (``--precision``): model passes run under ``torch.autocast`` (:func:`autocast`, entered in one place,
:class:`jembench.models.HybridModel`); fp32 = no autocast; bf16 on CPU and CUDA; fp16 on CUDA only. On CUDA,
:func:`accelerate` turns on ``cudnn.benchmark`` and puts the weights in channels-last memory format, and
:func:`to_device` copies batches from pinned memory without blocking.

torch is imported inside the functions, so settings that check ``--device`` / ``--precision`` stay light.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, ContextManager, Optional

from .errors import JembenchError

if TYPE_CHECKING:
    import torch


def resolve_device(device: Optional[str | torch.device] = None) -> torch.device:
    """``None``/"auto" -> CUDA when available, else CPU; otherwise the named device, checked."""
    import torch

    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise JembenchError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise JembenchError(f"--device {device}: MPS is not available on this machine (use --device cpu)")
    return dev


PRECISIONS = ("fp32", "bf16", "fp16")  # fp32: no autocast; the others autocast to torch.bfloat16 / torch.float16


def precision_problem(precision: str, device: torch.device) -> Optional[str]:
    """Why ``precision`` cannot run on ``device`` (None when it can)."""
    if precision not in PRECISIONS:
        return f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}"
    if precision == "fp16" and device.type != "cuda":
        return f"fp16 needs a CUDA device (this run uses {device.type}): use bf16 or fp32"
    return None


def autocast(precision: str, device: torch.device) -> ContextManager:
    """``torch.autocast`` at ``precision`` on ``device``'s type; fp32: no autocast."""
    import torch

    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def accelerate(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """On CUDA: ``cudnn.benchmark`` on and the weights in channels-last format; elsewhere ``module`` unchanged."""
    import torch

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        module = module.to(memory_format=torch.channels_last)
    return module


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``x`` on ``device``; CPU -> CUDA copies go through pinned memory, non-blocking."""
    if device.type == "cuda" and x.device.type == "cpu":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


def generator(seed: int, device: Optional[str | torch.device] = None) -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded with ``seed``."""
    import torch

    g = torch.Generator(device=torch.device(device) if device is not None else "cpu")
    g.manual_seed(int(seed))
    return g


def derive_seed(seed: int, *labels: object) -> int:
    """A stable sub-seed for a named purpose (e.g. ``derive_seed(0, "test-noise", "svhn")``)."""
    import hashlib

    h = hashlib.sha256(repr((int(seed),) + labels).encode()).digest()
    return int.from_bytes(h[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def randn(shape: tuple[int, ...], gen: Any, like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise drawn from ``gen`` on the generator's device, moved to ``like``'s device/dtype;
    ``gen`` may also be a :class:`jembench.rng.KeyedNoise` (draws keyed by sample index)."""
    import torch

    if not isinstance(gen, torch.Generator):
        return gen.randn(shape, like)
    return torch.randn(shape, generator=gen, device=gen.device, dtype=torch.float32).to(like.device, like.dtype)


def rand(shape: tuple[int, ...], gen: Any) -> torch.Tensor:
    """U[0, 1) draws from ``gen`` on the generator's device (a :class:`jembench.rng.KeyedNoise`: on the CPU)."""
    import torch

    if not isinstance(gen, torch.Generator):
        return gen.rand(shape)
    return torch.rand(shape, generator=gen, device=gen.device)
