"""What ``jembench datasets`` shows: each registered dataset, where it is looked for, whether it is there, sizes;
and fetching named datasets (torchvision downloads). Python API behind the CLI command."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Sequence

from ..errors import DatasetError
from .registry import GENERIC_PREFIXES, REGISTRY, data_root, get_dataset, get_spec, known_names
from .synthetic import RECIPES


@dataclass
class DatasetStatus:
    name: str
    description: str
    shape: tuple[int, int, int]
    n_classes: Optional[int]
    sizes: dict[str, int]  # split -> number of images on disk (intact splits only)
    present: dict[str, bool]  # split -> all expected files exist
    location: str  # where the files are looked for ("bundled" when shipped with a package)
    missing: dict[str, list[str]]  # split -> expected files not found
    state: dict[str, str] = field(default_factory=dict)  # split -> intact / corrupt / absent: what loaders will say
    problems: dict[str, str] = field(default_factory=dict)  # split -> the loader's one-line error (corrupt splits)
    expected_sizes: dict[str, int] = field(default_factory=dict)  # split -> registered size

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


def _generic_status(name: str) -> DatasetStatus:
    """``npz:PATH`` / ``folder:PATH``: read it (that is the presence check) and report its splits and sizes."""
    first = get_dataset(name, "train")
    sets = [first, get_dataset(name, "test")] if first.split == "train" else [first]  # else one split, "all"
    sizes = {s.split: len(s) for s in sets}
    classes = [s.n_classes for s in sets if s.n_classes]
    what = f"{first.meta['format']} source" + (f", {len(first)} images in one split 'all' (no train/test)"
                                               if first.split == "all" else "")
    return DatasetStatus(name, what, first.shape, max(classes) if classes else None,
                         sizes, {s: True for s in sizes}, first.meta["source"], {s: [] for s in sizes},
                         {s: "intact" for s in sizes})


def dataset_status(name: str, data_dir: Optional[str | os.PathLike] = None) -> DatasetStatus:
    if name.startswith(GENERIC_PREFIXES):
        return _generic_status(name)
    spec = get_spec(name)
    if not spec.needs_root:
        present = {s: True for s in spec.splits}
        return DatasetStatus(name, spec.description, spec.shape, spec.n_classes, dict(spec.sizes), present, "bundled",
                             {s: [] for s in spec.splits}, {s: "intact" for s in spec.splits}, {}, dict(spec.sizes))
    root = data_root(data_dir)
    missing = {s: [str(f) for f in spec.files(root, s) if not f.exists()] for s in spec.splits}
    state, sizes, problems = {}, {}, {}
    for split in spec.splits:
        if missing[split]:
            state[split] = "absent"
            continue
        try:  # what every evaluator will find: the loader's own checks (md5, format), and the size on disk
            sizes[split], state[split] = len(get_dataset(name, split, data_dir=root)), "intact"
        except DatasetError as exc:
            state[split], problems[split] = "corrupt", str(exc)
    return DatasetStatus(name, spec.description, spec.shape, spec.n_classes, sizes,
                         {s: not m for s, m in missing.items()}, str(root), missing, state, problems,
                         dict(spec.sizes))


def list_datasets(names: Sequence[str] = (), data_dir: Optional[str | os.PathLike] = None) -> list[DatasetStatus]:
    """Status of the named datasets (all registered ones when ``names`` is empty)."""
    known_names()  # registers the built-in datasets
    return [dataset_status(n, data_dir) for n in (names or sorted(REGISTRY))]


def download_datasets(names: Sequence[str], data_dir: Optional[str | os.PathLike] = None) -> list[DatasetStatus]:
    """Fetch every split of each named dataset into the data root (torchvision); return their new status."""
    if not names:
        raise DatasetError("name the datasets to download, e.g. jembench datasets --download cifar10 svhn")
    root = data_root(data_dir)
    for name in names:
        spec = get_spec(name)
        if spec.fetch is not None:
            spec.fetch(root)
    return list_datasets(names, data_dir)


def catalog_document(statuses: list[DatasetStatus], data_dir: Optional[str | os.PathLike] = None) -> dict[str, Any]:
    """The JSON ``jembench datasets --json`` prints."""
    return {"data_dir": str(data_root(data_dir)), "datasets": [s.to_dict() for s in statuses],
            "synthetic_ood": dict(RECIPES), "generic": [p + "PATH" for p in GENERIC_PREFIXES]}
