"""Published numbers (JEM and JEM++ papers), kept as package data with their sources.

``published.json`` holds one entry per (model, metric): the value in jembench's units, the evaluator and
metric name it compares with, the protocol conditions under which it is comparable (``match``), and the
source. Reports show an entry, labelled "reported", only in a table whose evaluator, metric and protocol
match (:func:`matching`); reported numbers are never mixed into measured rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Mapping


@dataclass(frozen=True)
class ReportedNumber:
    model: str
    evaluator: str
    metric: str
    value: float
    source: str
    protocol: str = ""  # the published protocol, in words
    match: Mapping[str, Any] = field(default_factory=dict)  # protocol field -> required value

    def applies_to(self, evaluator: str, protocol: Mapping[str, Any]) -> bool:
        """True when this number was measured on the same evaluator, dataset and protocol conditions."""
        if evaluator != self.evaluator:
            return False
        flat = flatten(protocol)
        return all(_lookup(flat, key) == value for key, value in self.match.items())


@lru_cache(maxsize=1)
def published() -> tuple[ReportedNumber, ...]:
    """Every published number bundled with jembench."""
    doc = json.loads(resources.files(__name__).joinpath("published.json").read_text(encoding="utf-8"))
    return tuple(ReportedNumber(**{k: v for k, v in e.items()}) for e in doc["entries"])


def matching(evaluator: str, protocol: Mapping[str, Any], metrics: Any) -> list[ReportedNumber]:
    """Published numbers comparable with a table of ``evaluator`` under ``protocol`` with columns ``metrics``."""
    names = set(metrics)
    return [r for r in published() if r.metric in names and r.applies_to(evaluator, protocol)]


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


_MISSING = object()


def _lookup(flat: Mapping[str, Any], key: str) -> Any:
    """The value of ``key`` in a flattened protocol: exact, else the one key whose last component is ``key``."""
    if key in flat:
        return flat[key]
    hits = {v for k, v in flat.items() if k.rsplit(".", 1)[-1] == key and isinstance(v, (str, int, float, bool))}
    return hits.pop() if len(hits) == 1 else _MISSING
