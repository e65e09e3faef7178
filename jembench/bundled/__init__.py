"""The checkpoints shipped inside the package (package data, so a plain ``pip install .`` or a wheel has them),
named ``bundled:NAME`` wherever a checkpoint is taken: ``jembench run-all bundled:jem-digits
bundled:baseline-digits`` works from any directory; ``jembench inspect bundled:`` lists them. A source checkout's
``checkpoints/*.pt`` are links to these files. How each was trained: ``checkpoints/README.md``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import CheckpointError

PREFIX = "bundled:"
DIRECTORY = Path(__file__).resolve().parent
# name -> what it is (the file is NAME.pt in this folder)
CATALOG = {
    "jem-digits": "JEM (WRN-10-1, no norm) trained on digits with SGLD and a replay buffer; 96.1% test accuracy",
    "baseline-digits": "the same classifier trained without the p(x) term (--px-weight 0); 97.5% test accuracy",
    "digits-reference-classifier": "WRN-10-2 classifier (98.1%): gen's feature extractor for digits (digits-wrn)",
}


def is_bundled(spec: Any) -> bool:
    return isinstance(spec, str) and spec.startswith(PREFIX)


def resolve(spec: str | os.PathLike) -> Path:
    """The file a checkpoint argument names: ``bundled:NAME`` -> the shipped ``NAME.pt``; anything else as a path."""
    if not is_bundled(spec):
        return Path(spec)
    name = str(spec)[len(PREFIX):].removesuffix(".pt")
    if name not in CATALOG:
        raise CheckpointError(f"no bundled checkpoint {name!r}; bundled: {', '.join(PREFIX + n for n in CATALOG)} "
                              "(`jembench inspect bundled:` lists them)")
    path = DIRECTORY / f"{name}.pt"
    if not path.is_file():
        raise CheckpointError(f"{PREFIX}{name}: {path} is missing from this installation (reinstall jembench)")
    return path


def listing() -> list[dict[str, Any]]:
    """Every bundled checkpoint: its ``bundled:`` name, file, size and what it is."""
    return [{"name": PREFIX + name, "file": str(DIRECTORY / f"{name}.pt"),
             "bytes": (DIRECTORY / f"{name}.pt").stat().st_size if (DIRECTORY / f"{name}.pt").is_file() else None,
             "description": text} for name, text in CATALOG.items()]
