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
The images are made ``CHUNK`` at a time straight into uint8: the draws of consecutive chunks continue one generator
stream, so the images equal one draw of the whole set (the last chunk takes the remainder, so every chunk but the
last holds a multiple of 16 values, the block size of torch's CPU normal sampler). A set is a
:class:`~jembench.data.lazyset.LazyImageSet`: chunk c is made on demand from the generator state at its start
(kept, about 5 KB per chunk, once the stream has passed it), so reading images ``[s, e)`` makes only the chunks
holding them and nothing holds the whole set; the last chunk made is kept for the next read. ``interp`` keeps its
pair indices (16 B per image).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ..errors import DatasetError
from ..runtime import derive_seed, generator
from .imageset import ImageSet
from .lazyset import LazyImageSet

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
    return torch.rot90(in_set.read(lo, hi), k=1, dims=(2, 3))


_MAKERS: dict[str, Callable[[int, int, tuple[int, int, int], ImageSet, torch.Generator], torch.Tensor]] = {
    "noise": _noise, "uniform": _uniform, "constant": _constant, "rotated": _rotated}


def make_synthetic(name: str, in_set: ImageSet, *, seed: int = 0, n: Optional[int] = None,
                   shape: Optional[tuple[int, int, int]] = None) -> LazyImageSet:
    """The synthetic OOD set ``name`` derived from ``in_set``: ``n`` images (default ``len(in_set)``, at most that
    for ``rotated``), unlabelled, made on demand (see the module docstring). ``noise``/``uniform``/``constant`` are
    drawn directly at ``shape`` (default ``in_set.shape``) so no resize alters their statistics;
    ``interp``/``rotated`` keep ``in_set``'s images."""
    if name not in SYNTHETIC_NAMES:
        raise DatasetError(f"unknown synthetic OOD set {name!r}; known: {', '.join(SYNTHETIC_NAMES)}")
    n = len(in_set) if n is None else int(n)
    if name == "rotated":
        n = min(n, len(in_set))
    if n < 1:
        raise DatasetError(f"synthetic OOD set {name!r} needs n >= 1 (got {n})")
    derived = derive_seed(seed, "synthetic-ood", name)
    if name == "rotated":
        shape = (in_set.shape[0], in_set.shape[2], in_set.shape[1])
    elif name == "interp" or shape is None:
        shape = in_set.shape
    chunks = Chunks(name, n, tuple(shape), in_set, generator(derived))  # type: ignore[arg-type]
    meta = {"source": f"synthetic from {in_set.name}/{in_set.split}", "synthetic": name, "recipe": RECIPES[name],
            "seed": int(seed), "derived_seed": derived, "n": n, "in_distribution": in_set.name,
            "in_distribution_fingerprint": in_set.fingerprint()}
    return LazyImageSet(name, in_set.split, n, chunks.shape, chunks.read, meta=meta)


class Chunks:
    """The images of one synthetic set, chunk by chunk: chunk c = images ``[c * CHUNK, (c + 1) * CHUNK)``, the last
    one up to ``n``; made from the generator state at its start (``states[c]``, recorded as the stream passes)."""

    def __init__(self, name: str, n: int, shape: tuple[int, int, int], in_set: ImageSet, g: torch.Generator):
        self.name, self.n, self.shape, self.in_set = name, n, shape, in_set
        self.size = CHUNK  # read once: a set keeps the chunking it was made with
        self.count = max(1, n // self.size)  # the last chunk takes the remainder (< 2 * CHUNK images)
        if name == "interp":
            self.pairs = interp_pairs(len(in_set), n, g)  # drawn first, for the whole set (as before)
        self.states = [g.get_state()]
        self.last: tuple[int, Optional[torch.Tensor]] = (-1, None)

    def bounds(self, c: int) -> tuple[int, int]:
        return c * self.size, (self.n if c == self.count - 1 else (c + 1) * self.size)

    def chunk(self, c: int) -> torch.Tensor:
        """uint8 images of chunk ``c`` (the stream is run through the chunks before it once, if not yet)."""
        if self.last[0] == c:
            return self.last[1]  # type: ignore[return-value]
        for before in range(len(self.states) - 1, c):
            self._make(before)
        images = self._make(c)
        self.last = (c, images)
        return images

    def _make(self, c: int) -> torch.Tensor:
        lo, hi = self.bounds(c)
        g = torch.Generator()
        g.set_state(self.states[c])
        if self.name == "interp":
            a, b = self.pairs[0][lo:hi], self.pairs[1][lo:hi]
            pair = self.in_set.images[a].to(torch.int16) + self.in_set.images[b].to(torch.int16)
            images = ((pair + 1) // 2).to(torch.uint8)
        else:
            images = _MAKERS[self.name](lo, hi, self.shape, self.in_set, g).contiguous()
        if c + 1 == len(self.states) and c + 1 < self.count:
            self.states.append(g.get_state())
        return images

    def read(self, start: int, stop: int) -> torch.Tensor:
        """uint8 images ``[start, stop)`` (a new tensor), made from the chunks holding them."""
        first, last = min(start // self.size, self.count - 1), min((stop - 1) // self.size, self.count - 1)
        parts = []
        for c in range(first, last + 1):
            lo, hi = self.bounds(c)
            parts.append(self.chunk(c)[max(start, lo) - lo:min(stop, hi) - lo])
        return torch.cat(parts)
