"""What ``jembench train`` checks before any work: the resume checkpoint, the config, ``--out``, the dataset."""

from __future__ import annotations

import dataclasses

import os
from pathlib import Path
from typing import Any, Optional

from . import bundled, defaults
from .data import ImageSet, get_dataset
from .errors import JembenchError
from .models.checkpoints import NATIVE_FORMAT, read_checkpoint
from .models.wrn import NORMS

FIXED_ON_RESUME = ("dataset", "depth", "width", "norm", "labels_per_class", "buffer_size", "init", "seed",
                   "sampler_init")


def read_resume(resume: Optional[str | Path]) -> Optional[dict[str, Any]]:
    """The checkpoint to resume (None for a new run); refuses anything jembench train did not write."""
    if resume is None:
        return None
    resume = bundled.resolve(resume)  # bundled:NAME -> the file shipped in the package
    if not Path(resume).is_file():
        raise JembenchError(f"--resume {resume}: {'is a directory' if Path(resume).is_dir() else 'no such file'}; "
                            "give a checkpoint written by jembench train")
    saved = read_checkpoint(resume)
    if not (isinstance(saved, dict) and saved.get("format") == NATIVE_FORMAT and "train_state" in saved):
        raise JembenchError(f"--resume {resume}: not a jembench training checkpoint (no train_state); "
                            "only files written by jembench train can be resumed")
    return saved


def resolve_config(resume_cfg: Optional[dict[str, Any]], overrides: dict[str, Any]) -> dict[str, Any]:
    """defaults.TRAIN, updated by the resumed run's config, then by the options given (None: keep); checked."""
    config = dict(defaults.TRAIN)
    if resume_cfg is not None:
        config.update({k: v for k, v in resume_cfg.items() if k in config})
    for key, value in overrides.items():
        if value is None:
            continue
        if resume_cfg is not None and key in FIXED_ON_RESUME and value != config[key]:
            raise JembenchError(f"--resume: {key} is {config[key]!r} in the checkpoint, cannot change it to "
                                f"{value!r} (start a new run instead)")
        config[key] = value
    if config["norm"] not in NORMS:
        raise JembenchError(f"unknown --norm {config['norm']!r}; choose one of {', '.join(NORMS)}")
    if config["sampler"] not in ("sgld", "jem++"):
        raise JembenchError(f"unknown --sampler {config['sampler']!r}; choose sgld or jem++")
    if config["sampler_init"] not in ("buffer", "data"):
        raise JembenchError(f"unknown --sampler-init {config['sampler_init']!r}; choose buffer (persistent chains, "
                            "PCD) or data (CD-k: chains start from the batch's images)")
    if config["init"] not in ("uniform", "gaussian"):
        raise JembenchError(f"unknown --init {config['init']!r}; choose uniform or gaussian (JEM++'s informative)")
    if (config["depth"] - 4) % 6 or config["depth"] < 10:
        raise JembenchError(f"--depth {config['depth']}: a WRN depth is 6n + 4 with n >= 1 (10, 16, 28, ...)")
    if config["epochs"] < 1 or config["batch_size"] < 1 or config["lr"] <= 0:
        raise JembenchError("--epochs and --batch-size must be >= 1 and --lr > 0")
    return config


def resolve_out(out: Optional[str | Path], resume: Optional[str | Path], overwrite: bool, new_run_out: str) -> Path:
    """``--out``, by default the resumed file (or ``new_run_out``), refused if it cannot or may not be written."""
    default_out = resume if resume is not None else new_run_out
    out = Path(out if out is not None else default_out)
    if out.is_dir():
        raise JembenchError(f"--out {out} is a directory; give a file name, e.g. {out / 'jem.pt'}")
    if out.exists() and resume is None and not overwrite:
        raise JembenchError(f"{out} exists; pass --resume {out} to continue it, --overwrite to replace it, "
                            "or another --out")
    _check_writable(out)
    return out


def _check_writable(out: Path) -> None:
    """Refuse an --out that cannot be written now, not after the first epoch's work."""
    parent = out.parent
    blocker = next((p for p in (parent, *parent.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise JembenchError(f"--out {out}: {blocker} is a file, not a folder; choose another --out")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise JembenchError(f"--out {out}: cannot create folder {parent} ({exc.strerror or exc})") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise JembenchError(f"--out {out}: folder {parent} is not writable; choose another --out")


def load_splits(config: dict[str, Any], data_dir: Optional[str], download: bool) -> tuple[ImageSet, ImageSet]:
    """The labelled train and test splits of ``config["dataset"]``."""
    train_set = get_dataset(config["dataset"], "train", data_dir=data_dir, download=download)
    test_set = get_dataset(config["dataset"], "test", data_dir=data_dir, download=download)
    if train_set.split != "train" or test_set.split != "test":
        raise JembenchError(f"dataset {config['dataset']!r} has no separate train and test splits (it would be "
                            "tested on its training images); for npz:PATH store x_train, y_train, x_test, y_test")
    if train_set.labels is None or test_set.labels is None:
        raise JembenchError(f"dataset {config['dataset']!r} has no labels; training needs a labelled dataset")
    if not train_set.n_classes:  # npz without a 'classes' array: the classes its labels use
        n = int(max(train_set.labels.max(), test_set.labels.max())) + 1
        train_set, test_set = (dataclasses.replace(s, n_classes=n) for s in (train_set, test_set))
    return train_set, test_set
