"""The one entry point for out-of-distribution sets: a registry name, a generic source or a synthetic recipe,
brought to the model's input shape by :func:`jembench.data.adapt.adapt_to` (rule recorded in ``meta``)."""

from __future__ import annotations

import os
from typing import Optional

from .adapt import adapt_to
from .imageset import ImageSet
from .registry import get_dataset
from .synthetic import SYNTHETIC_NAMES, make_synthetic


def load_ood_set(name: str, in_set: ImageSet, shape: tuple[int, int, int], *, split: str = "test",
                 data_dir: Optional[str | os.PathLike] = None, download: bool = False, seed: int = 0,
                 n: Optional[int] = None) -> ImageSet:
    """OOD set ``name`` for a model taking ``shape`` = (C, H, W), ``n`` images at most (all when None).

    ``name``: a registered dataset (``svhn``, ``cifar100``, ``celeba``, ...; its ``split``), ``npz:PATH``,
    ``folder:PATH`` (mixed image sizes are resized straight to ``shape``), or a synthetic set derived from ``in_set``
    (``noise``, ``uniform``, ``constant``, ``interp``, ``rotated``; seeded by ``seed``). Labels of named sets are
    kept; the result's ``meta["preprocessing"]`` says how it was adapted to ``shape`` ("none" when it already fit).
    """
    shape = tuple(int(v) for v in shape)  # type: ignore[assignment]
    if name in SYNTHETIC_NAMES:
        out = make_synthetic(name, in_set, seed=seed, n=n, shape=shape)
    elif name.startswith("folder:"):
        from .generic import load_generic

        out = load_generic(name, split, size=shape[1:]).first(n)  # type: ignore[arg-type]
    else:
        out = get_dataset(name, split, data_dir=data_dir, download=download).first(n)
    return adapt_to(out, shape)
