"""Helpers every benchmark shares: the demo model (or a random stand-in) and median timings."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from jembench.models import load
from jembench.models.hybrid import HybridModel, ModelInfo
from jembench.models.wrn import JEMNet

DEMO = Path("checkpoints/jem-digits.pt")


def random_digits_model(depth: int, width: int, device: str | torch.device) -> HybridModel:
    """A randomly initialised WRN-depth-width for 1x8x8 digits (speed does not depend on training)."""
    torch.manual_seed(0)
    info = ModelInfo(family="jembench", source_format="jembench", architecture="wrn", n_classes=10, in_channels=1,
                     image_size=(8, 8), depth=depth, width=width, norm="none", dataset="digits",
                     name=f"random-wrn-{depth}-{width}")
    return HybridModel(JEMNet(depth, width, "none", 1, 10), info).to(device).eval()


def demo_model(path: Optional[str | Path], device: str | torch.device, fallback_width: int = 1) -> HybridModel:
    """``path`` (default the bundled jem-digits.pt) or, when absent, a random WRN-10-``fallback_width``."""
    p = Path(path) if path else DEMO
    if p.exists():
        return load(p).to(device).eval()
    return random_digits_model(10, fallback_width, device)


def sync(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def median_seconds(fn: Callable[[], object], repeats: int, device: str | torch.device = "cpu") -> float:
    """Median wall time of ``repeats`` calls of ``fn`` (CUDA work synchronised)."""
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)
