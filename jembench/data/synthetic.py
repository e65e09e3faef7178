"""Synthetic out-of-distribution sets derived from an in-distribution :class:`ImageSet` (unlabelled, seeded).

In pixel space [0, 1], then quantised to uint8 by ``round(255 v)``:

- ``noise``: i.i.d. Gaussian N(0.5, 1) per pixel, clamped to [0, 1] (the "Gaussian" set of ODIN, Liang et al. 2018).
- ``uniform``: i.i.d. U(0, 1) per pixel (ODIN's "Uniform").
- ``constant``: one colour per image, each channel U(0, 1).
- ``interp``: ``(a + b) / 2`` of seeded pairs of distinct in-distribution images (JEM's "CIFAR-10 interp";
  JEM averages neighbours within batches of 100, 9,900 pairs for CIFAR-10), rounded half up in uint8.
- ``rotated``: in-distribution images rotated by 90 degrees counter-clockwise (``torch.rot90(k=1)``), e.g. the
  transformed-digits OOD set of the digits preset.

The generator is seeded with ``derive_seed(seed, "synthetic-ood", name)``; seed and recipe go into ``meta``.
Sets are built ``CHUNK`` images at a time straight into uint8 (float work bounded by one chunk, not the set): the
draws of consecutive chunks continue one generator stream, so the images equal one draw of the whole set (the
last chunk takes the remainder, so every chunk but the last holds a multiple of 16 values, the block size of
torch's CPU normal sampler).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ..errors import DatasetError
from ..runtime import derive_seed, generator
from .imageset import ImageSet

NOISE_MEAN, NOISE_STD = 0.5, 1.0
CHUNK = 1024  # images per generation step

RECIPES = {
    "noise": f"i.i.d. Gaussian N({NOISE_MEAN}, {NOISE_STD}^2) per pixel in [0, 1], clamped to [0, 1], round(255 v)",
    "uniform": "i.i.d. U(0, 1) per pixel, round(255 v)",
    "constant": "one colour per image, each channel U(0, 1), round(255 v)",
    "interp": "(a + b + 1) // 2 in uint8 of seeded pairs (a, b) of distinct in-distribution images",
    "rotated": "in-distribution images rotated by 90 degrees counter-clockwise (torch.rot90, k=1)",
}
SYNTHETIC_NAMES = tuple(RECIPES)


def _quantise(v: torch.Tensor) -> torch.Tensor:
    return (v.clamp(0, 1) * 255).round().to(torch.uint8)


def _noise(lo: int, hi: int, shape: tuple[int, int, int], in_set: ImageSet, g: torch.Generator) -> torch.Tensor:
    return _quantise(NOISE_MEAN + NOISE_STD * torch.randn((hi - lo, *shape), generator=g))


def _uniform(lo: int, hi: int, shape: tuple[int, int, int], in_set: ImageSet, g: torch.Generator) -> torch.Tensor:
    return _quantise(torch.rand((hi - lo, *shape), generator=g))


def _constant(lo: int, hi: int, shape: tuple[int, int, int], in_set: ImageSet, g: torch.Generator) -> torch.Tensor:
    colours = _quantise(torch.rand((hi - lo, shape[0], 1, 1), generator=g))
    return colours.expand(hi - lo, *shape)


def interp_pairs(n_images: int, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(a, b)`` of ``n`` seeded pairs of distinct images: ``b = (a + offset) mod N``, offset in [1, N)."""
    if n_images < 2:
        raise DatasetError(f"interp needs at least 2 in-distribution images, got {n_images}")
    a = torch.randint(0, n_images, (n,), generator=g)
    b = (a + torch.randint(1, n_images, (n,), generator=g)) % n_images
    return a, b


def _rotated(lo: int, hi: int, shape: tuple[int, int, int], in_set: ImageSet, g: torch.Generator) -> torch.Tensor:
    return torch.rot90(in_set.images[lo:hi], k=1, dims=(2, 3))


_MAKERS: dict[str, Callable[[int, int, tuple[int, int, int], ImageSet, torch.Generator], torch.Tensor]] = {
    "noise": _noise, "uniform": _uniform, "constant": _constant, "rotated": _rotated}


def make_synthetic(name: str, in_set: ImageSet, *, seed: int = 0, n: Optional[int] = None,
                   shape: Optional[tuple[int, int, int]] = None) -> ImageSet:
    """The synthetic OOD set ``name`` derived from ``in_set``: ``n`` images (default ``len(in_set)``, at most that
    for ``rotated``), unlabelled. ``noise``/``uniform``/``constant`` are drawn directly at ``shape`` (default
    ``in_set.shape``) so no resize alters their statistics; ``interp``/``rotated`` keep ``in_set``'s images."""
    if name not in SYNTHETIC_NAMES:
        raise DatasetError(f"unknown synthetic OOD set {name!r}; known: {', '.join(SYNTHETIC_NAMES)}")
    n = len(in_set) if n is None else int(n)
    if name == "rotated":
        n = min(n, len(in_set))
    if n < 1:
        raise DatasetError(f"synthetic OOD set {name!r} needs n >= 1 (got {n})")
    derived = derive_seed(seed, "synthetic-ood", name)
    shape = tuple(shape) if shape is not None else in_set.shape  # type: ignore[assignment]
    images = _build(name, n, shape, in_set, generator(derived))  # type: ignore[arg-type]
    meta = {"source": f"synthetic from {in_set.name}/{in_set.split}", "synthetic": name, "recipe": RECIPES[name],
            "seed": int(seed), "derived_seed": derived, "n": n, "in_distribution": in_set.name,
            "in_distribution_fingerprint": in_set.fingerprint()}
    return ImageSet(name, in_set.split, images, None, None, meta)


def _build(name: str, n: int, shape: tuple[int, int, int], in_set: ImageSet, g: torch.Generator) -> torch.Tensor:
    """uint8 ``[n, *shape]`` filled ``CHUNK`` images at a time (the last chunk takes the remainder)."""
    if name == "interp":
        a, b = interp_pairs(len(in_set), n, g)  # int64 per image, then the images chunk by chunk
    out = torch.empty((n, *shape), dtype=torch.uint8)
    lo = 0
    while lo < n:
        hi = n if n - lo < 2 * CHUNK else lo + CHUNK
        if name == "interp":
            pair = in_set.images[a[lo:hi]].to(torch.int16) + in_set.images[b[lo:hi]].to(torch.int16)
            out[lo:hi] = (pair + 1) // 2
        else:
            out[lo:hi] = _MAKERS[name](lo, hi, shape, in_set, g)
        lo = hi
    return out
