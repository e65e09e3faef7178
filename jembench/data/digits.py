"""``digits``: scikit-learn's bundled 8x8 handwritten digits (1797 images), the embedded default.

Pixels 0..16 are mapped to uint8 by ``round(v * 255 / 16)``. The train/test split is stratified,
20% test, seed 0 (``sklearn.model_selection.train_test_split``), fixed so results compare.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .imageset import ImageSet
from .registry import DatasetSpec, register

SPLIT_SEED = 0
TEST_FRACTION = 0.2


@lru_cache(maxsize=None)
def _arrays() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # [N, 1, 8, 8]
    x_tr, x_te, y_tr, y_te = train_test_split(images, bunch.target, test_size=TEST_FRACTION,
                                              random_state=SPLIT_SEED, stratify=bunch.target)
    return {"train": (x_tr, y_tr), "test": (x_te, y_te)}


def load_digits_set(split: str, root: Optional[Path] = None, download: bool = False) -> ImageSet:
    x, y = _arrays()[split]
    return ImageSet("digits", split, torch.from_numpy(x.copy()), torch.from_numpy(y.astype(np.int64)), 10,
                    {"source": "sklearn.datasets.load_digits", "split_rule": f"stratified {TEST_FRACTION:.0%} test, "
                     f"seed {SPLIT_SEED}", "pixel_map": "round(v * 255 / 16)"})


register(DatasetSpec("digits", 10, (1, 8, 8), ("train", "test"),
                     "scikit-learn 8x8 digits, bundled (no download)", load_digits_set, needs_root=False,
                     sizes={"train": 1437, "test": 360}))
