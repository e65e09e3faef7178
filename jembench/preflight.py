"""Checks that need no model pass, run before the first one: datasets present, shapes and classes agreeing, feature
extractor weights available. Each returns problems, one line each (what is wrong, what to do); nothing is read
beyond file names and headers (a dataset's presence is its files' presence, as ``jembench datasets`` reports it).

Evaluators combine them in their ``preflight`` hook (:class:`jembench.evaluators.base.Evaluator`); the API and
run-all raise every problem found together (:class:`jembench.errors.PreflightError`) before any pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from .errors import JembenchError

if TYPE_CHECKING:  # data and models import torch: imported when the checks run, not when commands are listed
    from .data.imageset import ImageSet
    from .models import HybridModel

CONVERTIBLE = {(3, 1), (1, 3)}  # channel rules of jembench.data.adapt (RGB <-> gray)


def dataset_problems(name: str, split: str, *, data_dir: Any = None, download: bool = False) -> list[str]:
    """A named dataset is known, has ``split`` and (unless it will be downloaded) its files are all there."""
    from .data.registry import GENERIC_PREFIXES, data_root, get_spec

    if name.startswith(GENERIC_PREFIXES):
        path = Path(name.split(":", 1)[1].rsplit("@", 1)[0]).expanduser()
        return [] if path.exists() else [f"dataset {name!r}: no such file or folder {path}"]
    try:
        spec = get_spec(name)
    except JembenchError as exc:
        return exc.lines()
    if split not in spec.splits:
        return [f"dataset {name!r} has no split {split!r}; splits: {', '.join(spec.splits)}"]
    if not spec.needs_root or download:
        return []
    root = data_root(data_dir)
    missing = [f for f in spec.files(root, split) if not f.exists()]
    if not missing:
        return []
    parent = missing[0].parent
    where = (str(missing[0]) if len(missing) == 1 else f"{parent}/{{{', '.join(f.name for f in missing)}}}"
             if all(f.parent == parent for f in missing) else ", ".join(map(str, missing)))
    return [f"dataset {name!r} not found: expected {where}; fetch it with: "
            f"jembench datasets --download {name} --data-dir {root}"]


def _declared(name: str) -> Optional[tuple[Optional[int], tuple[int, int, int]]]:
    """(classes, shape) a registered dataset declares; None for generic sources (known only once read)."""
    from .data.registry import GENERIC_PREFIXES, get_spec

    if name.startswith(GENERIC_PREFIXES):
        return None
    try:
        spec = get_spec(name)
    except JembenchError:
        return None
    return spec.n_classes, tuple(spec.shape)


def eval_set_problems(model: HybridModel, dataset: str | ImageSet, split: str, *, data_dir: Any = None,
                      download: bool = False, need_labels: bool = True) -> list[str]:
    """The evaluation set of ``model``: present, with the model's input shape and (``need_labels``) class count,
    as :func:`jembench.evaluators.common.check_compatible` will require."""
    from .data.imageset import ImageSet

    if isinstance(dataset, ImageSet):
        classes, shape, name = dataset.n_classes, tuple(dataset.shape), dataset.name
        if need_labels and dataset.labels is None:
            return [f"dataset {name!r} has no labels; this evaluation needs labelled data"]
    else:
        problems = dataset_problems(dataset, split, data_dir=data_dir, download=download)
        declared = _declared(dataset)
        if problems or declared is None:
            return problems
        (classes, shape), name = declared, dataset
    return _agree(model, name, classes if need_labels else None, shape, exact=True)


def ood_set_problems(model: HybridModel, name: str, *, data_dir: Any = None, download: bool = False) -> list[str]:
    """An OOD set: present, and its channels convertible to the model's by the rules of
    :mod:`jembench.data.adapt` (any image size is resized; classes do not matter)."""
    from .data.registry import SYNTHETIC

    if name in SYNTHETIC:
        return []
    problems = dataset_problems(name, "test", data_dir=data_dir, download=download)
    declared = _declared(name)
    if problems or declared is None:
        return problems
    return _agree(model, name, None, declared[1], exact=False)


def _agree(model: HybridModel, name: str, classes: Optional[int], shape: tuple[int, ...], exact: bool) -> list[str]:
    info = model.info
    want = (info.in_channels, *info.image_size)
    out = []
    if classes is not None and classes != info.n_classes:
        out.append(f"checkpoint {info.name!r} has {info.n_classes} classes but dataset {name!r} has {classes}: "
                   "choose the matching --dataset (or the right checkpoint)")
    if exact and tuple(shape) != want:
        out.append(f"dataset {name!r} has images of shape {tuple(shape)} but checkpoint {info.name!r} takes {want}: "
                   "choose the matching dataset")
    elif not exact and shape[0] != want[0] and (shape[0], want[0]) not in CONVERTIBLE:
        out.append(f"OOD set {name!r} has {shape[0]} channels and checkpoint {info.name!r} takes {want[0]}: no rule "
                   "converts them (only RGB <-> gray)")
    return out


def extractor_problems(choice: str, dataset: str, *, fid_weights: Optional[str], offline: bool,
                       option: str = "--feature-extractor") -> list[str]:
    """The feature extractor generation will use is there, without loading or downloading it: a bundled one for
    ``auto`` when the dataset has one, else Inception weights (``fid_weights``, the hub cache, or a download
    unless ``offline``), or a checkpoint file."""
    from . import bundled
    from . import feature_extractors as fx
    from .metrics import fidelity

    try:
        if choice == "auto":
            choice = fx.BUNDLED[dataset].name if fx.bundled_path(dataset) else "inception"
        if choice == "inception":
            if fid_weights is not None or offline:  # else cached, or downloaded when generation starts
                fidelity.inception_weights(fid_weights, offline=offline)
            return []
        by_name = {b.name: ds for ds, b in fx.BUNDLED.items()}
        if choice in by_name:
            fx.bundled_path(by_name[choice])
            return []
        if bundled.resolve(choice).expanduser().is_file():  # a checkpoint file, or bundled:NAME
            return []
    except JembenchError as exc:
        return exc.lines()
    known = ", ".join(["auto", "inception", *sorted(by_name)])
    return [f"{option} {choice!r}: neither a known extractor ({known}) nor a checkpoint file"]
