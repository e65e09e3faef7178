"""Save and restore BatchNorm running statistics (and train/eval flags) around sampling."""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
import torch.nn as nn


@contextlib.contextmanager
def preserve_bn_stats(module: Optional[nn.Module]) -> Iterator[Optional[nn.Module]]:
    """Whatever sampling does inside (train-mode BN updates its running stats), they are restored after,
    as is every submodule's train/eval flag. ``None`` (a bare log-density, no module) is a no-op. Only buffers
    that changed are written back: eval-mode BatchNorm keeps its running statistics for the backward pass, so an
    in-place write to unchanged ones would break a gradient taken through the chain afterwards (full-gradient
    attacks on SGLD purification)."""
    if module is None:
        yield module
        return
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [[(b, b.clone()) for b in m.buffers()] for m in bns]  # running_mean/var, num_batches_tracked
    modes = {m: m.training for m in module.modules()}
    try:
        yield module
    finally:
        with torch.no_grad():  # buffers only: parameters are untouched by sampling and may sit in a live graph
            for pairs in saved:
                for buf, value in pairs:
                    if not torch.equal(buf, value):
                        buf.copy_(value)
        for m, mode in modes.items():
            m.training = mode
