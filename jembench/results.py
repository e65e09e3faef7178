"""results.json: the schema and the provenance block (atomic writes: :mod:`jembench.io`).

Schema ``jembench.results`` version 1::

    {"schema": "jembench.results", "schema_version": 1,
     "provenance": {jembench/torch/... versions, git commit, device, command, created},
     "evaluations": [Evaluation.to_dict(), ...]}

One :class:`Evaluation` per (evaluator, checkpoint, setting): ``metrics`` is a flat ``{name: number}``
(names like ``"auroc/logp/svhn"``), ``intervals`` holds ``{name: [lo, hi]}`` for the same names,
``rows`` is the evaluator's detailed table, ``protocol`` everything needed to reproduce the numbers, and
``provenance`` how the run went (timings, sampler bookkeeping, ``passes``: the step's network passes per image and
in total, :mod:`jembench.cost`): never compared, never a metric.
run-all adds ``comparisons``: paired comparisons between its checkpoints on the same samples
(:mod:`jembench.reporting.comparisons`).
Two evaluations share a comparison column only when their ``protocol_key`` is equal.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from . import distributed
from .errors import JembenchError
from .io import atomic_write_json, to_jsonable

SCHEMA = "jembench.results"
SCHEMA_VERSION = 1


@dataclass
class Evaluation:
    evaluator: str  # the registered evaluator's name ("clf", "calib", "ood", "robust", "gen")
    checkpoint: dict[str, Any]  # ModelInfo.to_dict() (name, path, sha256, family, ...)
    protocol: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, list[float]] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    artifacts: dict[str, str] = field(default_factory=dict)  # label -> path relative to results.json
    wall_time_s: Optional[float] = None
    status: str = "ok"  # "ok" or "failed"
    error: Optional[str] = None
    provenance: dict[str, Any] = field(default_factory=dict)  # how the run went: timings, pass counts, bookkeeping

    @property
    def protocol_key(self) -> str:
        return protocol_key(self.evaluator, self.protocol)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["protocol_key"] = self.protocol_key
        return to_jsonable(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Evaluation":
        d = {k: v for k, v in d.items() if k != "protocol_key"}
        return cls(**d)


@dataclass
class EvaluatorResult:
    """What every evaluator returns: its ``evaluations`` and the results document (``to_dict()``, the JSON the
    CLI writes to results.json and prints with ``--json``). Evaluators subclass it to add their own extras."""

    evaluations: list[Evaluation]
    document: dict[str, Any] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return self.document


def protocol_key(evaluator: str, protocol: dict[str, Any]) -> str:
    """Short hash of (evaluator, protocol): numbers with equal keys are comparable."""
    blob = json.dumps([evaluator, to_jsonable(protocol)], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _git(*args: str) -> Optional[str]:
    """Output of a git command in jembench's own checkout (None outside one)."""
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(device: Any = None, seed: Optional[int] = None,
               config: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Versions, machine and command: what a reader needs to trust and reproduce the numbers."""
    import importlib.metadata

    import numpy as np
    import torch

    from .version import __version__

    commit = _git("rev-parse", "HEAD") or None
    versions = {"jembench": __version__, "python": platform.python_version(), "torch": torch.__version__,
                "numpy": np.__version__}
    for dist in ("torchvision", "torch-fidelity", "torchattacks", "scikit-learn", "pandas"):
        try:  # package metadata: no import (torchvision alone pulls in torch._dynamo, seconds)
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    return to_jsonable({
        "versions": versions,
        "git_commit": commit,
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")) if commit else None,
        "cuda": torch.version.cuda,  # the CUDA version torch was built with (None for CPU builds)
        "cuda_available": torch.cuda.is_available(),
        "device": str(device) if device is not None else None,
        "device_name": (torch.cuda.get_device_name(torch.device(device)) if str(device).startswith("cuda")
                        else platform.processor() or platform.machine()),
        "platform": platform.platform(),
        "seed": seed,
        "distributed": distributed.describe(),
        "config": config or {},
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]) if sys.argv else None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })


def results_document(evaluations: list[Evaluation], prov: dict[str, Any],
                     comparisons: Optional[list[dict[str, Any]]] = None) -> dict[str, Any]:
    """The results.json document; ``comparisons`` (run-all: paired comparisons between its checkpoints, each with
    metric, a, b, difference, interval, p_value, test, n) is added when given."""
    doc = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "provenance": prov,
           "evaluations": [e.to_dict() for e in evaluations]}
    if comparisons is not None:
        doc["comparisons"] = to_jsonable(comparisons)
    return doc


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a results.json; one-line errors for missing, malformed or foreign files."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise JembenchError(f"results file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise JembenchError(f"{path} is not valid JSON ({exc}); was the run interrupted? rerun it") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise JembenchError(f"{path} is not a jembench results file (no schema {SCHEMA!r})")
    if doc.get("schema_version", 0) > SCHEMA_VERSION:
        raise JembenchError(f"{path} has schema version {doc['schema_version']}; this jembench reads up to "
                            f"{SCHEMA_VERSION}: upgrade jembench")
    return doc


def write_results(out_dir: str | os.PathLike, evaluations: list[Evaluation], prov: dict[str, Any],
                  comparisons: Optional[list[dict[str, Any]]] = None) -> Path:
    """Write ``out_dir/results.json`` atomically and return its path."""
    path = Path(out_dir) / "results.json"
    atomic_write_json(path, results_document(evaluations, prov, comparisons))
    return path
