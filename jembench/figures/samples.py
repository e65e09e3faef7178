"""Sample grids as pixel-exact PNGs: the uint8 pixels the metrics saw, never min-max rescaled.

A grid is an image, not a plot: each sample is tiled as is (optionally enlarged by an integer factor with
nearest-neighbour, which repeats pixels and changes no value), separated by a mid-gray border.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Optional

import numpy as np
import torch

PAD = 1
PAD_VALUE = 128


def grid(images: torch.Tensor, nrow: Optional[int] = None, scale: int = 1) -> np.ndarray:
    """uint8 ``[N, C, H, W]`` -> uint8 ``[H', W', C]`` tiled ``nrow`` per row (default: square-ish)."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected uint8 [N, C, H, W] images, got {images.dtype} {tuple(images.shape)}")
    n, c, h, w = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / nrow))
    out = np.full((rows * (h + PAD) + PAD, nrow * (w + PAD) + PAD, c), PAD_VALUE, dtype=np.uint8)
    arr = images.permute(0, 2, 3, 1).cpu().numpy()
    for i in range(n):
        r, col = divmod(i, nrow)
        out[PAD + r * (h + PAD):PAD + r * (h + PAD) + h, PAD + col * (w + PAD):PAD + col * (w + PAD) + w] = arr[i]
    if scale > 1:
        out = out.repeat(scale, 0).repeat(scale, 1)
    return out


def class_grid(images: torch.Tensor, labels: torch.Tensor, n_classes: int, per_class: int = 10,
               scale: int = 1) -> np.ndarray:
    """One row per class (row k: the first ``per_class`` samples with label k; blank cells where fewer)."""
    c, h, w = images.shape[1:]
    cells = torch.full((n_classes * per_class, c, h, w), PAD_VALUE, dtype=torch.uint8)
    for k in range(n_classes):
        idx = (labels == k).nonzero().squeeze(1)[:per_class]
        cells[k * per_class:k * per_class + len(idx)] = images[idx]
    return grid(cells, nrow=per_class, scale=scale)


def auto_scale(image_size: int, target: int = 32) -> int:
    """Integer enlargement that shows small images (8x8 digits) at about ``target`` pixels."""
    return max(1, target // max(1, image_size))


def png_bytes(array: np.ndarray) -> bytes:
    """``[H, W, C]`` uint8 (C = 1 or 3) -> PNG bytes (write with :func:`jembench.io.atomic_write_bytes`)."""
    from PIL import Image

    img = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def grid_files(images: torch.Tensor, labels: Optional[torch.Tensor], n_classes: int, size: int, path: Path,
               per_class: Path, grid_max: int) -> dict[Path, bytes]:
    """``{path: the grid of the first grid_max samples}`` and, for conditional samples, ``{per_class: the per-class
    grid}``, as PNG bytes (a figure-worker job, :mod:`jembench.background`)."""
    scale = auto_scale(size)
    files = {Path(path): png_bytes(grid(images[:grid_max], scale=scale))}
    if labels is not None:
        files[Path(per_class)] = png_bytes(class_grid(images, labels, n_classes, scale=scale))
    return files
