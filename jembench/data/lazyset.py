"""LazyImageSet: an :class:`ImageSet` whose uint8 images are made on demand, a range at a time, never held whole.

``read(start, stop)`` returns images ``[start, stop)`` from a maker (e.g. a synthetic OOD set regenerating the
chunks that hold them from their seeds), so every consumer that reads by range (the forward pass, gradient scores,
the fingerprint) holds one batch, not the set. ``images`` still gives the whole set (made on the spot) for code that
needs it all at once; nothing on the OOD path asks for it.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from .imageset import ImageSet

Maker = Callable[[int, int], torch.Tensor]  # (start, stop) -> uint8 [stop - start, C, H, W]


class LazyImageSet(ImageSet):
    """``n`` images of ``shape`` (C, H, W) made by ``make(start, stop)``; unlabelled unless ``labels`` is given."""

    def __init__(self, name: str, split: str, n: int, shape: tuple[int, int, int], make: Maker,
                 labels: Optional[torch.Tensor] = None, n_classes: Optional[int] = None,
                 meta: Optional[dict[str, Any]] = None):
        self.name, self.split, self.labels, self.n_classes = name, split, labels, n_classes
        self.meta = dict(meta or {})
        self._fingerprint = None
        self._n, self._shape, self._make = int(n), tuple(int(v) for v in shape), make

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"LazyImageSet({self.name!r}, {self.split!r}, n={self._n}, shape={self._shape})"

    @property
    def shape(self) -> tuple[int, int, int]:
        return self._shape  # type: ignore[return-value]

    @property
    def images(self) -> torch.Tensor:  # type: ignore[override]
        """The whole set as one uint8 tensor, made now (for code that needs every image at once)."""
        return self.read()

    def read(self, start: int = 0, stop: Optional[int] = None) -> torch.Tensor:
        start, stop, _ = slice(start, stop).indices(self._n)
        if stop <= start:
            return torch.empty((0, *self._shape), dtype=torch.uint8)
        return self._make(start, stop)

    def map(self, convert: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, int, int],
            meta: dict[str, Any]) -> "LazyImageSet":
        """This set with ``convert`` (uint8 batch -> uint8 batch of ``shape``, image by image) applied per read."""
        return LazyImageSet(self.name, self.split, self._n, shape, lambda lo, hi: convert(self.read(lo, hi)),
                            self.labels, self.n_classes, meta)

    def subset(self, indices: torch.Tensor | slice, suffix: str = "") -> ImageSet:
        """A contiguous slice stays lazy; any other selection is made now (only the chosen images)."""
        labels = self.labels[indices] if self.labels is not None else None
        if isinstance(indices, slice) and indices.step in (None, 1):
            lo, hi, _ = indices.indices(self._n)
            return LazyImageSet(self.name + suffix, self.split, max(0, hi - lo), self._shape,
                                lambda a, b: self.read(lo + a, lo + b), labels, self.n_classes, self.meta)
        idx = torch.arange(self._n)[indices]
        return ImageSet(self.name + suffix, self.split, torch.stack([self.read(i, i + 1)[0] for i in idx.tolist()])
                        if len(idx) else torch.empty((0, *self._shape), dtype=torch.uint8), labels, self.n_classes,
                        dict(self.meta))
