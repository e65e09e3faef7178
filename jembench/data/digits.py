"""``digits``: scikit-learn's bundled 8x8 handwritten digits (1797 images), the embedded default.

Pixels 0..16 are mapped to uint8 by ``round(v * 255 / 16)``. The train/test split is stratified,
20% test, seed 0 (``sklearn.model_selection.train_test_split``), fixed so results compare. The split arrays ship
as ``digits.npz`` next to this module (48 KB), so reading them imports no scikit-learn; ``tests/test_data.py``
rebuilds them from ``sklearn.datasets.load_digits`` by the rule above and checks they are identical.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .imageset import ImageSet
from .registry import DatasetSpec, register

SPLIT_SEED = 0
TEST_FRACTION = 0.2


ARRAYS = "digits.npz"  # x_train, y_train, x_test, y_test: uint8, images [N, 1, 8, 8]


@lru_cache(maxsize=None)
def _arrays() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    with files(__package__).joinpath(ARRAYS).open("rb") as fh, np.load(fh) as z:
        return {split: (z[f"x_{split}"], z[f"y_{split}"]) for split in ("train", "test")}


def load_digits_set(split: str, root: Optional[Path] = None, download: bool = False) -> ImageSet:
    x, y = _arrays()[split]
    return ImageSet("digits", split, torch.from_numpy(x.copy()), torch.from_numpy(y.astype(np.int64)), 10,
                    {"source": "sklearn.datasets.load_digits", "split_rule": f"stratified {TEST_FRACTION:.0%} test, "
                     f"seed {SPLIT_SEED}", "pixel_map": "round(v * 255 / 16)"})


register(DatasetSpec("digits", 10, (1, 8, 8), ("train", "test"),
                     "scikit-learn 8x8 digits, bundled (no download)", load_digits_set, needs_root=False,
                     sizes={"train": 1437, "test": 360}))
