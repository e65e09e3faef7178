"""Generic sources: ``npz:PATH`` (arrays) and ``folder:PATH`` (a torchvision ImageFolder of image files).

``npz:PATH``: array ``x`` uint8 in NCHW or NHWC (the layout is read from where the 1- or 3-channel axis is;
``[N, H, W]`` counts as one channel), optional ``y`` (integer labels). Files holding several splits may name
them ``x_train`` / ``y_train``, ``x_test`` / ``y_test``; then ``split`` picks one (else the split is "all").
The class count is not guessed from the labels (a test subset may lack the highest class): an optional array
``classes`` (one entry per class, e.g. names) gives it; otherwise it is the model's, and labels must be below it.

``folder:PATH``: ``PATH/<class>/<image>`` (torchvision ``ImageFolder``; labels are the sorted folder names).
Images are RGB unless every image is grayscale. All must have one size, or a size is given as
``folder:PATH@32`` / ``folder:PATH@32x48`` (H x W): then each image is resized by :mod:`jembench.data.adapt`'s rule
(shorter side + center crop, bilinear antialias), recorded in ``meta["resize"]``.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import DatasetError
from .adapt import resize_center_crop, resize_rule
from .imageset import ImageSet

_SIZE_SUFFIX = re.compile(r"@(\d+)(?:x(\d+))?$")


def load_generic(name: str, split: str = "test", size: Optional[tuple[int, int]] = None) -> ImageSet:
    """``npz:PATH`` or ``folder:PATH[@H[xW]]`` as an :class:`ImageSet`."""
    kind, _, path = name.partition(":")
    if kind == "npz":
        return load_npz(path, split)
    if kind == "folder":
        m = _SIZE_SUFFIX.search(path)
        if m:
            path = path[:m.start()]
            size = (int(m.group(1)), int(m.group(2) or m.group(1)))
        return load_folder(path, size)
    raise DatasetError(f"unknown generic source {name!r}; use npz:PATH or folder:PATH")


def _channel_layout(shape: tuple[int, ...], path: str) -> str:
    if len(shape) == 3:
        return "NHW"
    if len(shape) != 4:
        raise DatasetError(f"npz {path}: x has shape {shape}; expected [N, C, H, W] or [N, H, W, C] with C = 1 or 3")
    first, last = shape[1] in (1, 3), shape[3] in (1, 3)
    if first and not last:
        return "NCHW"
    if last and not first:
        return "NHWC"
    if first and last:
        raise DatasetError(f"npz {path}: x has shape {shape}, both axis 1 and axis 3 could be channels; "
                           "store images larger than 3x3 so the layout can be told")
    raise DatasetError(f"npz {path}: x has shape {shape}, no axis of size 1 or 3 for channels; "
                       "expected [N, C, H, W] or [N, H, W, C] with C = 1 or 3")


def load_npz(path: str, split: str = "test") -> ImageSet:
    """``x`` (uint8, NCHW / NHWC / NHW) and optional ``y`` from ``path``; ``x_<split>`` / ``y_<split>`` first."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DatasetError(f"npz file {p} {'is a directory' if p.is_dir() else 'not found'}; give npz:PATH to a "
                           ".npz with an array 'x' (uint8 images)")
    try:
        with np.load(p, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(f"cannot read {p} as .npz ({type(exc).__name__}: {exc}); "
                           "write it with numpy.savez") from None
    xk, yk = (f"x_{split}", f"y_{split}") if f"x_{split}" in arrays else ("x", "y")
    split = split if xk == f"x_{split}" else "all"
    if xk not in arrays:
        raise DatasetError(f"npz {p} has no array 'x' (arrays: {', '.join(sorted(arrays)) or 'none'}); "
                           "store images as x (uint8 [N, C, H, W] or [N, H, W, C]) and labels as y")
    x = arrays[xk]
    if x.dtype != np.uint8:
        raise DatasetError(f"npz {p}: {xk} has dtype {x.dtype}, expected uint8 pixels 0..255 "
                           "(from floats in [0, 1]: (x * 255).round().astype(np.uint8))")
    layout = _channel_layout(x.shape, str(p))
    x = {"NHW": lambda a: a[:, None], "NCHW": lambda a: a, "NHWC": lambda a: a.transpose(0, 3, 1, 2)}[layout](x)
    if x.shape[0] == 0:
        raise DatasetError(f"npz {p}: {xk} holds no images")
    labels, n_classes = None, (len(arrays["classes"]) if "classes" in arrays else None)
    if yk in arrays:
        y = arrays[yk]
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
            raise DatasetError(f"npz {p}: {yk} must hold {len(x)} non-negative integer labels, got {y.dtype} "
                               f"{tuple(y.shape)}")
        if n_classes is not None and len(y) and y.max() >= n_classes:
            raise DatasetError(f"npz {p}: {yk} has label {int(y.max())} but 'classes' names only {n_classes}")
        labels = torch.from_numpy(y.astype(np.int64))
    meta = {"source": str(p.resolve()), "format": "npz", "arrays": [xk] + ([yk] if labels is not None else []),
            "layout": layout}
    return ImageSet(f"npz:{p.stem}", split, torch.from_numpy(np.ascontiguousarray(x)), labels, n_classes, meta)


def load_folder(path: str, size: Optional[tuple[int, int]] = None) -> ImageSet:
    """Every image under ``path/<class>/`` (torchvision ImageFolder order), as one uint8 tensor."""
    from PIL import Image
    from torchvision.datasets import ImageFolder

    p = Path(path).expanduser()
    if not p.is_dir():
        raise DatasetError(f"image folder {p} not found; give folder:PATH to a directory PATH/<class>/<image files>")
    try:
        folder = ImageFolder(str(p), loader=lambda f: f)  # paths only; images decoded below
    except (FileNotFoundError, RuntimeError) as exc:
        raise DatasetError(f"image folder {p}: {exc}".replace("\n", " ")) from None
    pictures = []
    for file, _ in folder.samples:
        try:
            with Image.open(file) as im:
                im.load()
                pictures.append(im.copy())
        except OSError as exc:
            raise DatasetError(f"image folder {p}: cannot read {file} ({exc})") from None
    gray = all(im.mode in ("1", "L", "I", "I;16", "F") for im in pictures)
    mode = "L" if gray else "RGB"
    sizes = sorted({(im.height, im.width) for im in pictures})
    if size is None and len(sizes) > 1:
        raise DatasetError(f"image folder {p} has images of {len(sizes)} sizes (e.g. {sizes[0][0]}x{sizes[0][1]} and "
                           f"{sizes[-1][0]}x{sizes[-1][1]}); give one size: folder:{p}@32 (H or HxW)")
    target = size or sizes[0]
    images = torch.empty((len(pictures), 1 if gray else 3, *target), dtype=torch.uint8)
    for i, im in enumerate(pictures):
        t = torch.from_numpy(np.asarray(im.convert(mode), dtype=np.uint8).copy())
        t = t[None] if gray else t.permute(2, 0, 1)
        images[i] = resize_center_crop(t[None], target)[0]
    rules = sorted({resize_rule(s, target) for s in sizes if s != tuple(target)})
    meta = {"source": str(p.resolve()), "format": "folder", "classes": list(folder.classes), "mode": mode,
            "resize": "; ".join(rules) if rules else "none"}
    labels = torch.tensor([c for _, c in folder.samples], dtype=torch.int64)
    return ImageSet(f"folder:{p.name}", "all", images, labels, len(folder.classes), meta)
