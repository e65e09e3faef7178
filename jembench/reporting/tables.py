"""Comparison tables: one per (evaluator, protocol), one row per checkpoint, one column per metric.

Evaluations share a table only when their ``protocol_key`` is equal, so numbers measured under different
protocols never share a column. Published numbers whose evaluator, metric and protocol conditions match a
table are added as separate rows labelled "reported" (:mod:`jembench.reported`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Protocol

import pandas as pd

from ..io import atomic_write_text, checkpoint_slugs, csv_cell
from ..reported import ReportedNumber, flatten, matching
from ..results import Evaluation

# protocol fields named first in a table title when they tell same-evaluator tables apart
SALIENT = {"dataset", "in_dataset", "threat_model", "K", "test_sigma", "bins", "n", "n_in", "name", "extractor"}
MAX_COLUMNS = 10  # metric columns per HTML table part: about what a 1280-pixel laptop screen shows unscrolled


class Catalog(Protocol):
    """What the report asks about evaluators; the evaluator registry answers (it lives a layer above, so it is
    passed in: ``build_report(..., catalog=REGISTRY)``)."""

    def title(self, name: str) -> str: ...
    def figures_title(self, name: str) -> str: ...
    def rank(self, name: str) -> int: ...
    def headline(self, ev: Evaluation) -> list[str]: ...


class PlainCatalog:
    """No registry at hand: evaluator names as titles, first-seen order, the first metric as the headline."""

    def title(self, name: str) -> str:
        return name

    def figures_title(self, name: str) -> str:
        return f"{name} figures"

    def rank(self, name: str) -> int:
        return 0

    def headline(self, ev: Evaluation) -> list[str]:
        return [m for m, v in ev.metrics.items() if v is not None][:1]


@dataclass
class Row:
    """One table row: a measured checkpoint or a published number."""

    label: str
    kind: str  # "measured" or "reported"
    values: dict[str, Optional[float]]
    intervals: dict[str, list[float]] = field(default_factory=dict)
    sha256: Optional[str] = None
    source: Optional[str] = None  # reported rows: where the numbers were published
    note: Optional[str] = None  # reported rows: the published protocol in words


@dataclass
class ComparisonTable:
    evaluator: str
    protocol_key: str
    protocol: dict[str, Any]
    metrics: list[str]
    rows: list[Row]
    base_title: str = ""  # the evaluator's title (Catalog.title)
    distinguishing: dict[str, Any] = field(default_factory=dict)  # protocol fields that differ from sibling tables

    @property
    def slug(self) -> str:
        return f"{self.evaluator}-{self.protocol_key}"

    @property
    def title(self) -> str:
        base = self.base_title or self.evaluator
        if not self.distinguishing:
            return base
        return base + " (" + ", ".join(f"{k}={_short(v)}" for k, v in self.distinguishing.items()) + ")"

    @property
    def has_reported(self) -> bool:
        return any(r.kind == "reported" for r in self.rows)

    def frame(self) -> pd.DataFrame:
        """The table as a DataFrame: identifying columns, then metrics, then 95% interval bounds."""
        records = []
        for r in self.rows:
            rec: dict[str, Any] = {"checkpoint": r.label, "kind": r.kind, "sha256": r.sha256, "source": r.source}
            rec.update({m: r.values.get(m) for m in self.metrics})
            for m in self.metrics:
                if m in r.intervals:
                    rec[f"{m} lo"], rec[f"{m} hi"] = r.intervals[m]
            records.append(rec)
        return pd.DataFrame.from_records(records)


def comparison_tables(evaluations: Iterable[tuple[Evaluation, str]],
                      catalog: Optional[Catalog] = None) -> list[ComparisonTable]:
    """Tables from ``(evaluation, run_label)`` pairs (the run label tells duplicate checkpoints apart), titled and
    ordered by ``catalog``.

    Failed evaluations have no numbers and are left out (the report lists them with their errors).
    """
    catalog = catalog or PlainCatalog()
    groups: dict[tuple[str, str], list[tuple[Evaluation, str]]] = {}
    for ev, run in evaluations:
        if ev.status == "ok" and ev.metrics:
            groups.setdefault((ev.evaluator, ev.protocol_key), []).append((ev, run))
    tables = []
    for (evaluator, key), members in groups.items():
        metrics: list[str] = []
        for ev, _ in members:
            metrics += [m for m in ev.metrics if m not in metrics]
        labels = _row_labels(members)
        rows = [Row(label, "measured", {m: ev.metrics.get(m) for m in metrics}, dict(ev.intervals),
                    sha256=ev.checkpoint.get("sha256")) for (ev, _), label in zip(members, labels)]
        rows += _reported_rows(matching(evaluator, members[0][0].protocol, metrics))
        tables.append(ComparisonTable(evaluator, key, members[0][0].protocol, metrics, rows, catalog.title(evaluator)))
    tables.sort(key=lambda t: catalog.rank(t.evaluator))  # stable: first-seen order within an evaluator
    _mark_distinguishing(tables)
    return tables


@dataclass
class ColumnGroup:
    """Adjacent metric columns shown as one HTML table part: ``prefix`` is their common leading path (the part's
    caption, "" when they share none) and ``headers`` the rest of each name."""

    prefix: str
    metrics: list[str]

    @property
    def headers(self) -> list[str]:
        cut = len(self.prefix) + 1 if self.prefix else 0
        return [m[cut:] or m for m in self.metrics]


def column_groups(metrics: list[str], max_columns: int = MAX_COLUMNS) -> list[ColumnGroup]:
    """Split a wide metric list into parts of at most ``max_columns`` columns along the '/' hierarchy of the names.

    Metrics are grouped by their first path component (``auroc``, ``aupr_in``, ...); a group still too wide is
    split by the next component (``auroc/logp``, ``auroc/msp``), and so on; adjacent small groups are joined again
    while they fit. The order of the metrics is kept, so a part reads left to right like the full table.
    """
    if len(metrics) <= max_columns:
        return [ColumnGroup(_common_prefix(metrics), list(metrics))]
    return [ColumnGroup(_common_prefix(g), g) for g in _join_small(_split(list(metrics), "", 0, max_columns),
                                                                    max_columns)]


def _split(metrics: list[str], parent: str, depth: int, max_columns: int) -> list[tuple[str, list[str]]]:
    """``(parent prefix, metrics)`` groups by the path component at ``depth``, recursing into groups too wide."""
    groups: dict[str, list[str]] = {}
    for m in metrics:
        parts = m.split("/")
        groups.setdefault("/".join(parts[:depth + 1]) if len(parts) > depth + 1 else m, []).append(m)
    out: list[tuple[str, list[str]]] = []
    for key, group in groups.items():
        too_wide = len(group) > max_columns and key not in group  # key is a shared prefix: split by the next part
        out += _split(group, key, depth + 1, max_columns) if too_wide else [(parent, group)]
    return out


def _join_small(groups: list[tuple[str, list[str]]], max_columns: int) -> list[list[str]]:
    """Join adjacent groups of the same parent while they fit in ``max_columns``."""
    out: list[tuple[str, list[str]]] = []
    for parent, g in groups:
        if out and out[-1][0] == parent and len(out[-1][1]) + len(g) <= max_columns:
            out[-1] = (parent, out[-1][1] + g)
        else:
            out.append((parent, list(g)))
    return [g for _, g in out]


def _common_prefix(metrics: list[str]) -> str:
    """The leading '/' components all ``metrics`` share, leaving each at least one component of its own."""
    split = [m.split("/") for m in metrics]
    if not split:
        return ""
    n = 0
    while all(len(s) > n + 1 for s in split) and len({s[n] for s in split}) == 1:
        n += 1
    return "/".join(split[0][:n])


def file_stems(tables: list[ComparisonTable]) -> list[str]:
    """One file name (without suffix) per table, from its title, unique within the list ("Robustness-K-1")."""
    return checkpoint_slugs([t.title for t in tables], max_len=80)


def write_csvs(tables: list[ComparisonTable], folder: str | Path) -> list[Path]:
    """One CSV per comparison table, ``folder/<table title>.csv`` (:func:`file_stems`), written atomically."""
    paths = []
    for t, stem in zip(tables, file_stems(tables)):
        path = Path(folder) / f"{stem}.csv"
        atomic_write_text(path, t.frame().map(csv_cell).to_csv(index=False))  # names are no formulas
        paths.append(path)
    return paths


def format_number(v: Any) -> str:
    """Four significant decimals for small numbers, fewer for large ones; '-' for missing."""
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        return str(v)
    a = abs(v)
    return f"{v:.1f}" if a >= 100 else f"{v:.2f}" if a >= 10 else f"{v:.4f}"


def checkpoint_label(checkpoint: dict[str, Any]) -> str:
    return str(checkpoint.get("name") or Path(str(checkpoint.get("path") or "?")).stem)


def _row_labels(members: list[tuple[Evaluation, str]]) -> list[str]:
    return unique_checkpoint_labels([ev.checkpoint for ev, _ in members], [run for _, run in members])


def unique_checkpoint_labels(checkpoints: list[dict[str, Any]], runs: Optional[list[str]] = None) -> list[str]:
    """Checkpoint names; where names collide, the first of short sha256, run label, or both that tells them apart.
    The report's rows and run-all's terminal summary are labelled with this."""
    names = [checkpoint_label(c) for c in checkpoints]
    if len(set(names)) == len(names):
        return names
    sha = [str(c.get("sha256") or "")[:8] for c in checkpoints]
    runs = runs or [""] * len(checkpoints)
    for extra in (sha, runs, [f"{a} · {b}" for a, b in zip(sha, runs)]):
        labels = [f"{n} · {x}" if names.count(n) > 1 else n for n, x in zip(names, extra)]
        if len(set(labels)) == len(labels):
            break
    return labels


def _reported_rows(numbers: list[ReportedNumber]) -> list[Row]:
    rows: dict[tuple[str, str], Row] = {}
    for n in numbers:
        row = rows.setdefault((n.model, n.source), Row(n.model, "reported", {}, source=n.source,
                                                       note=n.protocol))
        row.values[n.metric] = n.value
    return list(rows.values())


def _mark_distinguishing(tables: list[ComparisonTable]) -> None:
    """Name the protocol fields that tell tables of the same evaluator apart (shown in their titles)."""
    by_eval: dict[str, list[ComparisonTable]] = {}
    for t in tables:
        by_eval.setdefault(t.evaluator, []).append(t)
    for siblings in by_eval.values():
        if len(siblings) < 2:
            continue
        flats = [flatten(t.protocol) for t in siblings]
        keys = sorted(set().union(*flats))
        differing = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flats}) > 1
                     and not k.endswith("sha256")]
        chosen = [k for k in differing if k in SALIENT][:3]
        differing = [k for k in differing if k not in chosen]
        signature = lambda keys: {tuple(_short(f.get(k)) for k in keys) for f in flats}  # noqa: E731
        while differing and len(signature(chosen)) < len(flats) and len(chosen) < 5:
            best = max(differing, key=lambda k: (len(signature(chosen + [k])),
                                                 -max(len(_short(f.get(k))) for f in flats)))
            chosen.append(best)
            differing.remove(best)
        for t, f in zip(siblings, flats):
            t.distinguishing = {k.rsplit(".", 1)[-1]: f.get(k) for k in chosen} or {"protocol": t.protocol_key}


def _short(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v, default=str)
    return text if len(text) <= 28 else text[:25] + "..."
