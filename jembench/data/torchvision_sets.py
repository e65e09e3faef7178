"""CIFAR-10, CIFAR-100, SVHN and CelebA through torchvision (registered in the dataset registry).

Files are read by torchvision's own classes (which check their md5 sums) from the data root, laid out as
torchvision lays them out: ``ROOT/cifar-10-batches-py/``, ``ROOT/cifar-100-python/``, ``ROOT/{train,test}_32x32.mat``
(SVHN, as in JEM's scripts), ``ROOT/celeba/``. Nothing is downloaded unless ``download=True``
(``jembench datasets --download NAME``). A whole split is read into one uint8 tensor and kept for the process.
CelebA (aligned 178x218) is brought to 32x32 by :mod:`jembench.data.adapt`'s rule: shorter side to 32 (bilinear,
antialias) + center crop; its attributes are not classes, so it is unlabelled. The resized split is kept in
``ROOT/celeba/jembench-SPLIT-32x32.npz`` (when the root is writable), so only the first load decodes the JPEGs.
"""

from __future__ import annotations

from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from ..errors import DatasetError
from .adapt import resize_center_crop, resize_rule
from .imageset import ImageSet
from .registry import DatasetSpec, register

CELEBA_SIZE = 32
CELEBA_CHUNK = 512
CELEBA_CACHE_VERSION = 1  # bump when the decode / resize rule changes


def _tv(cls_name: str) -> Any:
    import torchvision.datasets

    return getattr(torchvision.datasets, cls_name)


def _cifar_files(cls_name: str, root: Path, split: str) -> list[Path]:
    cls = _tv(cls_name)  # torchvision's CIFAR10 checks every batch file and the meta file, whatever the split
    return [root / cls.base_folder / f for f, _ in cls.train_list + cls.test_list] + [root / cls.base_folder /
                                                                                     cls.meta["filename"]]


def _svhn_files(root: Path, split: str) -> list[Path]:
    return [root / _tv("SVHN").split_list[split][1]]


def _celeba_files(root: Path, split: str) -> list[Path]:
    cls = _tv("CelebA")
    return [root / cls.base_folder / "img_align_celeba"] + [root / cls.base_folder / f for _, _, f in cls.file_list
                                                            if not f.endswith(".zip")]


def _fmt_files(root: Path, files: list[Path]) -> str:
    """``ROOT/dir/{a, b}`` (or ``ROOT/file`` for one file): the expected paths, on one line."""
    if len(files) == 1:
        return str(files[0])
    parent = files[0].parent if len({f.parent for f in files}) == 1 else root
    return f"{parent}/{{{', '.join(str(f.relative_to(parent)) for f in files)}}}"


def _fetch_command(name: str, root: Path) -> str:
    return f"jembench datasets --download {name} --data-dir {root}"


def _construct(name: str, root: Path, files: list[Path], make: Callable[[bool], Any], download: bool) -> Any:
    """``make(download)`` (a torchvision dataset) with its failures turned into one-line :class:`DatasetError`s."""
    missing = [f for f in files if not f.exists()]
    if missing and not download:
        raise DatasetError(f"dataset {name!r} not found: expected {_fmt_files(root, missing)}; "
                           f"fetch it with: {_fetch_command(name, root)}")
    if download:
        try:
            return make(True)
        except (OSError, RuntimeError, ValueError) as exc:  # network errors are OSErrors; CelebA needs gdown
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DatasetError(f"downloading {name!r} to {root} failed: {msg}; check the network or place "
                               f"{_fmt_files(root, files)} there by hand") from None
    try:
        return make(False)
    except RuntimeError as exc:
        raise DatasetError(f"dataset {name!r} under {root} is corrupted or incomplete (torchvision: "
                           f"{str(exc).splitlines()[0]}); delete it and run: {_fetch_command(name, root)}") from None


def _stamp(files: list[Path]) -> tuple:
    """Part of the in-process cache key, so files replaced on disk are read again."""
    return tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files if f.exists())


@lru_cache(maxsize=4)
def _read_cifar(cls_name: str, root: Path, split: str, download: bool, stamp: tuple) -> tuple:
    name = cls_name.lower()
    ds = _construct(name, root, _cifar_files(cls_name, root, split),
                    lambda dl: _tv(cls_name)(str(root), train=split == "train", download=dl), download)
    images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
    return images, torch.tensor(ds.targets, dtype=torch.int64), list(ds.classes)


@lru_cache(maxsize=4)
def _read_svhn(root: Path, split: str, download: bool, stamp: tuple) -> tuple:
    ds = _construct("svhn", root, _svhn_files(root, split), lambda dl: _tv("SVHN")(str(root), split=split,
                                                                                    download=dl), download)
    return torch.from_numpy(np.ascontiguousarray(ds.data)), torch.from_numpy(ds.labels.astype(np.int64))


def _read_rgb(pil: Any, path: Path) -> torch.Tensor:
    with pil.open(path) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)


def _decode_resize(files: list[Path], split: str) -> tuple[torch.Tensor, str]:
    """Decode (PIL, RGB) and resize every file to CELEBA_SIZE; decoding runs on ``torch.get_num_threads()`` threads."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image
    from tqdm import tqdm

    out, sizes = [], set()
    with ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads())) as pool:
        for s in tqdm(range(0, len(files), CELEBA_CHUNK), desc=f"celeba {split}: decode + resize to {CELEBA_SIZE}",
                      unit="chunk", leave=False):
            chunk = list(pool.map(partial(_read_rgb, Image), files[s:s + CELEBA_CHUNK]))
            shapes = {tuple(c.shape[1:]) for c in chunk}
            sizes |= shapes
            batches = [torch.stack(chunk)] if len(shapes) == 1 else [c[None] for c in chunk]
            out += [resize_center_crop(b, (CELEBA_SIZE, CELEBA_SIZE)) for b in batches]
    return torch.cat(out), "; ".join(sorted(resize_rule(s, (CELEBA_SIZE, CELEBA_SIZE)) for s in sizes))


@lru_cache(maxsize=2)
def _read_celeba(root: Path, split: str, download: bool, stamp: tuple) -> tuple:
    """Resized images and rule; kept in ``ROOT/celeba/jembench-SPLIT-32x32.npz`` (keyed by the file list) when the
    root is writable, so only the first load decodes ~20k JPEGs."""
    import hashlib

    from ..io import atomic_savez

    ds = _construct("celeba", root, _celeba_files(root, split),
                    lambda dl: _tv("CelebA")(str(root), split=split, target_type=[], download=dl), download)
    folder = Path(ds.root) / ds.base_folder / "img_align_celeba"
    names = list(ds.filename)
    if not names:
        raise DatasetError(f"dataset 'celeba' under {root} lists no {split} images; delete it and run: "
                           f"{_fetch_command('celeba', root)}")
    key = hashlib.sha256(repr((CELEBA_CACHE_VERSION, CELEBA_SIZE, names)).encode()).hexdigest()
    cache = folder.parent / f"jembench-{split}-{CELEBA_SIZE}x{CELEBA_SIZE}.npz"
    try:
        with np.load(cache, allow_pickle=False) as f:
            if str(f["key"]) == key:
                return torch.from_numpy(f["images"]), str(f["rule"]), str(cache)
    except (OSError, ValueError, KeyError, EOFError):
        pass  # no usable cache: decode below
    images, rule = _decode_resize([folder / f for f in names], split)
    try:
        atomic_savez(cache, images=images, key=np.array(key), rule=np.array(rule))
    except OSError:  # read-only data root: keep going without the cache
        return images, rule, None
    return images, rule, str(cache)


def _load_cifar(cls_name: str, split: str, root: Optional[Path], download: bool) -> ImageSet:
    assert root is not None
    files = _cifar_files(cls_name, root, split)
    images, labels, classes = _read_cifar(cls_name, root, split, download, _stamp(files))
    meta = {"source": f"torchvision.datasets.{cls_name}", "root": str(root), "classes": classes}
    return ImageSet(cls_name.lower(), split, images, labels, len(classes), meta)


def _load_svhn(split: str, root: Optional[Path], download: bool) -> ImageSet:
    assert root is not None
    files = _svhn_files(root, split)
    images, labels = _read_svhn(root, split, download, _stamp(files))
    meta = {"source": "torchvision.datasets.SVHN", "root": str(root),
            "label_rule": "digit 0 (label 10 in the .mat) -> 0"}
    return ImageSet("svhn", split, images, labels, 10, meta)


def _load_celeba(split: str, root: Optional[Path], download: bool) -> ImageSet:
    assert root is not None
    files = _celeba_files(root, split)
    images, rule, cache = _read_celeba(root, split, download, _stamp(files))
    meta = {"source": "torchvision.datasets.CelebA (aligned)", "root": str(root), "torchvision_split": split,
            "resize": rule, "decoded_cache": cache}
    return ImageSet("celeba", split, images, None, None, meta)


def _fetch_cifar(cls_name: str, root: Path) -> None:
    _construct(cls_name.lower(), root, _cifar_files(cls_name, root, "test"),
               lambda dl: _tv(cls_name)(str(root), train=False, download=dl), True)


def _fetch_svhn(root: Path) -> None:
    for split in ("train", "test"):
        _construct("svhn", root, _svhn_files(root, split), lambda dl: _tv("SVHN")(str(root), split=split, download=dl),
                   True)


def _fetch_celeba(root: Path) -> None:
    _construct("celeba", root, _celeba_files(root, "test"),
               lambda dl: _tv("CelebA")(str(root), split="all", target_type=[], download=dl), True)


register(DatasetSpec("cifar10", 10, (3, 32, 32), ("train", "test"), "CIFAR-10 (torchvision, python pickle batches)",
                     partial(_load_cifar, "CIFAR10"), files=partial(_cifar_files, "CIFAR10"),
                     sizes={"train": 50000, "test": 10000}, fetch=partial(_fetch_cifar, "CIFAR10")))
register(DatasetSpec("cifar100", 100, (3, 32, 32), ("train", "test"), "CIFAR-100, fine labels (torchvision)",
                     partial(_load_cifar, "CIFAR100"), files=partial(_cifar_files, "CIFAR100"),
                     sizes={"train": 50000, "test": 10000}, fetch=partial(_fetch_cifar, "CIFAR100")))
register(DatasetSpec("svhn", 10, (3, 32, 32), ("train", "test"), "SVHN cropped digits, .mat (torchvision)",
                     _load_svhn, files=_svhn_files, sizes={"train": 73257, "test": 26032}, fetch=_fetch_svhn))
register(DatasetSpec("celeba", None, (3, 32, 32), ("train", "test"),
                     "CelebA aligned faces, shorter side to 32 + center crop, unlabelled (torchvision)",
                     _load_celeba, files=_celeba_files, sizes={"train": 162770, "test": 19962}, fetch=_fetch_celeba))
