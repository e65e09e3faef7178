"""ImageSet: a dataset held as uint8 images, handed to models in their own input space."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import torch

HASH_BLOCK = 4096  # images hashed per step of fingerprint()

@dataclass
class ImageSet:
    """``images`` uint8 ``[N, C, H, W]`` (pixels 0..255), ``labels`` int64 ``[N]`` or None.

    ``meta`` records where the images came from and every transformation applied (resize rule,
    synthetic recipe and seed), and goes into results.json next to the numbers.
    """

    name: str
    split: str
    images: torch.Tensor
    labels: Optional[torch.Tensor] = None
    n_classes: Optional[int] = None
    meta: dict[str, Any] = field(default_factory=dict)
    _fingerprint: Optional[str] = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"ImageSet {self.name}: images must be uint8 [N, C, H, W], got "
                             f"{self.images.dtype} {tuple(self.images.shape)}")
        if self.labels is not None and len(self.labels) != len(self.images):
            raise ValueError(f"ImageSet {self.name}: {len(self.labels)} labels for {len(self.images)} images")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W)."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def read(self, start: int = 0, stop: Optional[int] = None) -> torch.Tensor:
        """uint8 images ``[start:stop]`` (a lazy set makes them here, on demand)."""
        return self.images[start:stop]

    def fingerprint(self) -> str:
        """sha256 of the image bytes (read ``HASH_BLOCK`` images at a time) and labels: the content key of caches."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update(str((len(self), *self.shape)).encode())
            for start in range(0, len(self), HASH_BLOCK):
                h.update(self.read(start, start + HASH_BLOCK).contiguous().numpy().tobytes())
            if self.labels is not None:
                h.update(self.labels.to(torch.int64).contiguous().numpy().tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def subset(self, indices: torch.Tensor | slice, suffix: str = "") -> "ImageSet":
        labels = self.labels[indices] if self.labels is not None else None
        return ImageSet(self.name + suffix, self.split, self.images[indices].contiguous(), labels, self.n_classes,
                        dict(self.meta))

    def first(self, n: Optional[int]) -> "ImageSet":
        """The first ``n`` images (all when ``n`` is None or larger than the set)."""
        if n is None or n >= len(self):
            return self
        out = self.subset(slice(0, n))
        out.meta["n_limit"] = n
        return out

    def pixels01(self, start: int = 0, stop: Optional[int] = None) -> torch.Tensor:
        """Images ``[start:stop]`` as float32 in [0, 1]."""
        return self.read(start, stop).to(torch.float32) / 255.0

    def batches(self, batch_size: int, model: Any = None,
                device: Any = None) -> Iterator[tuple[torch.Tensor, Optional[torch.Tensor]]]:
        """Yield ``(x, y)`` in order; ``x`` in ``model``'s input space (or [0, 1] without a model)."""
        for start in range(0, len(self), batch_size):
            x = self.pixels01(start, start + batch_size)
            if device is not None:
                x = x.to(device)
            if model is not None:
                x = model.to_model_space(x)
            y = self.labels[start:start + batch_size] if self.labels is not None else None
            yield x, (y.to(device) if (y is not None and device is not None) else y)
