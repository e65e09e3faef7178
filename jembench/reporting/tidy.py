"""``jembench.load_results(PATH_OR_DIR)``: every measured number of one or more results.json files as one tidy table.

One row per (checkpoint, evaluator, metric, protocol key): ``checkpoint``, ``sha256``, ``run``, ``evaluator``,
``metric``, ``measure`` (the metric in words), ``protocol_key``, ``value``, ``interval`` ([lo, hi] or None), ``n``
(samples the number was computed on), ``protocol`` (the full protocol, a dict). Failed evaluations have no numbers
and no rows. ``jembench report --json`` prints the same rows as JSON records.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence

import pandas as pd

from ..results import Evaluation
from .names import describe
from .render import Run

COLUMNS = ["checkpoint", "sha256", "run", "evaluator", "metric", "measure", "protocol_key", "value", "interval", "n",
           "protocol"]


def sample_count(ev: Evaluation) -> Optional[int]:
    """How many samples an evaluation's numbers rest on: its ``n`` metric, else the protocol's ``n`` / ``n_in``."""
    for value in (ev.metrics.get("n"), ev.protocol.get("n"), ev.protocol.get("n_in")):
        if isinstance(value, (int, float)):
            return int(value)
    return None


def records(runs: Sequence[Run]) -> list[dict[str, Any]]:
    from .tables import checkpoint_label

    out = []
    for run in runs:
        for ev in run.evaluations:
            if ev.status != "ok":
                continue
            n = sample_count(ev)
            for metric, value in ev.metrics.items():
                iv = ev.intervals.get(metric)
                out.append({"checkpoint": checkpoint_label(ev.checkpoint), "sha256": ev.checkpoint.get("sha256"),
                            "run": run.label, "evaluator": ev.evaluator, "metric": metric,
                            "measure": describe(metric, ev.protocol), "protocol_key": ev.protocol_key,
                            "value": value, "interval": list(iv) if iv else None, "n": n, "protocol": ev.protocol})
    return out


def load_results(results: str | os.PathLike | Sequence[str | os.PathLike]) -> pd.DataFrame:
    """A tidy DataFrame of every measured number in ``results`` (results.json files or the folders holding them)."""
    from . import load_runs

    return pd.DataFrame.from_records(records(load_runs(results)), columns=COLUMNS)
