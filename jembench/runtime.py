"""Devices, seeds and generators: every random draw in jembench goes through an explicit generator.

torch is imported when a device or generator is made, so settings that check ``--device`` stay light."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

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


def randn(shape: tuple[int, ...], gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise drawn from ``gen`` on the generator's device, moved to ``like``'s device/dtype."""
    import torch

    return torch.randn(shape, generator=gen, device=gen.device, dtype=torch.float32).to(like.device, like.dtype)
