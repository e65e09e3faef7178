"""Registry of named datasets: one uniform way to get an :class:`ImageSet` by name.

``get_dataset("digits", "test")``, ``get_dataset("cifar10", "test", data_dir=...)``,
``get_dataset("npz:/path/file.npz")``, ``get_dataset("folder:/path/dir")``. Synthetic OOD sets
(``noise``, ``uniform``, ``constant``, ``interp``, ``rotated``) are derived from an in-distribution set by
:func:`jembench.data.synthetic.make_synthetic`; :func:`jembench.data.ood_sets.load_ood_set` takes any of these names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ..errors import DatasetError
from .imageset import ImageSet

Loader = Callable[[str, Optional[Path], bool], ImageSet]  # (split, root, download) -> ImageSet


@dataclass
class DatasetSpec:
    name: str
    n_classes: Optional[int]
    shape: tuple[int, int, int]  # (C, H, W)
    splits: tuple[str, ...]
    description: str
    loader: Loader
    needs_root: bool = True  # False for sets that ship with a package (digits)
    files: Callable[[Path, str], list[Path]] = field(default=lambda root, split: [])  # (root, split) -> files
    sizes: dict[str, int] = field(default_factory=dict)  # split -> number of images
    fetch: Optional[Callable[[Path], None]] = None  # download every split into root (None: nothing to download)


REGISTRY: dict[str, DatasetSpec] = {}
GENERIC_PREFIXES = ("npz:", "folder:")
SYNTHETIC = ("noise", "uniform", "constant", "interp", "rotated")  # see jembench.data.synthetic


def register(spec: DatasetSpec) -> DatasetSpec:
    REGISTRY[spec.name] = spec
    return spec


def data_root(data_dir: Optional[str | os.PathLike] = None) -> Path:
    """``data_dir``, else ``$JEMBENCH_DATA``, else ``~/.cache/jembench/data``."""
    if data_dir:
        return Path(data_dir).expanduser()
    env = os.environ.get("JEMBENCH_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "jembench" / "data"


def known_names() -> list[str]:
    """Registered names and the generic source forms (synthetic OOD names are listed by ``SYNTHETIC``)."""
    _ensure_builtin()
    return sorted(REGISTRY) + [p + "PATH" for p in GENERIC_PREFIXES]


def get_spec(name: str) -> DatasetSpec:
    _ensure_builtin()
    if name in SYNTHETIC:
        raise DatasetError(f"{name!r} is a synthetic OOD set derived from an in-distribution set: use it as an OOD set "
                           f"(jembench ood --out {name}, or jembench.data.load_ood_set), not as a dataset")
    if name not in REGISTRY:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(known_names())}")
    return REGISTRY[name]


def get_dataset(name: str, split: str = "test", *, data_dir: Optional[str | os.PathLike] = None,
                download: bool = False) -> ImageSet:
    """Load a dataset by name as an :class:`ImageSet`; absent data raises a one-line :class:`DatasetError`."""
    _ensure_builtin()
    if name.startswith(GENERIC_PREFIXES):
        from . import generic

        return generic.load_generic(name, split)
    spec = get_spec(name)
    if split not in spec.splits:
        raise DatasetError(f"dataset {name!r} has no split {split!r}; splits: {', '.join(spec.splits)}")
    root = data_root(data_dir) if spec.needs_root else None
    return spec.loader(split, root, download)


def _ensure_builtin() -> None:
    """Import the modules that register the built-in datasets (Python imports each once)."""
    from . import digits, torchvision_sets  # noqa: F401
