"""The HTML report: one self-contained file (inline CSS, figures as base64 data URIs, nothing fetched).

Rendered with jinja2 with autoescaping on, so every string that comes from a file or a user (checkpoint
names and paths, metadata, warnings, errors) is escaped.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import jinja2
from markupsafe import Markup, escape
from PIL import Image

from ..io import FONT_PX_KEY
from ..reported import flatten
from ..results import Evaluation
from .names import describe, direction, evaluation_set
from .tables import Catalog, ComparisonTable, PlainCatalog, checkpoint_label, column_groups, format_number

log = logging.getLogger("jembench")

IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
               ".svg": "image/svg+xml", ".webp": "image/webp"}
FOLD_AFTER_PARTS = 3  # a comparison table split into more parts than this shows its first metric family open


@dataclass
class Run:
    """One results.json: its evaluations, provenance, and the folder its artifact paths are relative to."""

    label: str
    base_dir: Path
    provenance: dict[str, Any]
    evaluations: list[Evaluation]
    path: Optional[Path] = None


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("jembench.reporting", "templates"), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["num"] = format_number
    env.filters["breakable"] = breakable
    return env


def render_html(runs: list[Run], tables: list[ComparisonTable], *, title: str = "jembench report",
                catalog: Optional[Catalog] = None, analysis: Optional[dict[str, Any]] = None) -> str:
    """The report as one HTML string; ``catalog`` (the evaluator registry) names and orders the sections and picks
    each checkpoint card's headline metrics; ``analysis`` adds the verdict, comparisons, comparison figures, banner
    and sanity notes (:func:`jembench.reporting.build_report` computes them)."""
    catalog = catalog or PlainCatalog()
    notes: list[str] = []
    context = {
        "title": title,
        "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "runs": [_run_view(r) for r in runs],
        "checkpoints": _checkpoint_cards(runs, {(t.evaluator, t.protocol_key): t.title for t in tables}, catalog),
        "tables": [_table_view(t) for t in tables],
        "figures": _figure_sections(runs, notes, catalog),
        "details": _detail_views(runs, catalog),
        "failures": [{"evaluator": e.evaluator, "checkpoint": checkpoint_label(e.checkpoint), "run": r.label,
                      "error": e.error or "failed (no message)"} for r in runs for e in r.evaluations
                     if e.status != "ok"],
        "warnings": [{"evaluator": e.evaluator, "checkpoint": checkpoint_label(e.checkpoint), "text": w}
                     for r in runs for e in r.evaluations for w in e.warnings],
        "report_notes": notes,
        "titles": {e.evaluator: catalog.title(e.evaluator) for r in runs for e in r.evaluations},
        "verdict": None, "comparisons": None, "overlays": [], "banner": [], "sanity": [],
        **(analysis or {}),
    }
    from ..version import __version__

    context["version"] = __version__
    return _environment().get_template("report.html.j2").render(**context)


def data_uri(path: Path) -> str:
    mime = IMAGE_TYPES[path.suffix.lower()]
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _run_view(run: Run) -> dict[str, Any]:
    prov = run.provenance or {}
    versions = prov.get("versions") or {}
    return {
        "label": run.label, "path": str(run.path) if run.path else "", "created": prov.get("created"),
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items() if v),
        "git_commit": (f"{prov['git_commit']} (with uncommitted changes)" if prov.get("git_dirty")
                       else prov.get("git_commit")),
        "cuda": (f"{prov['cuda']} ({'available' if prov.get('cuda_available') else 'not available'})"
                 if prov.get("cuda") else prov.get("cuda")), "device": prov.get("device"),
        "device_name": prov.get("device_name"), "seed": prov.get("seed"), "command": prov.get("command"),
        "wall_time": prov.get("wall_time_s") or {}, "resumed": prov.get("resumed") or [],
        "checkpoints": list({(str(e.checkpoint.get("sha256") or "-"), checkpoint_label(e.checkpoint),
                              str(e.checkpoint.get("path") or "")): None for e in run.evaluations}),
        "config": json.dumps(prov.get("config") or {}, indent=2, sort_keys=True, default=str),
    }


def _checkpoint_cards(runs: list[Run], titles: dict[tuple[str, str], str], catalog: Catalog) -> list[dict[str, Any]]:
    """One card per checkpoint (by sha256, else name): what it is, its headline numbers, each evaluation's status
    under its comparison table's title (``titles``: (evaluator, protocol key) -> title, e.g. "Robustness (K=1)")."""
    cards: dict[str, dict[str, Any]] = {}
    for run in runs:
        for ev in run.evaluations:
            ck = ev.checkpoint
            key = str(ck.get("sha256") or checkpoint_label(ck))
            card = cards.setdefault(key, {
                "name": checkpoint_label(ck), "sha256": ck.get("sha256") or "", "path": ck.get("path") or "",
                "facts": _checkpoint_facts(ck), "headline": [], "statuses": [], "sets": []})
            card["statuses"].append({"evaluator": ev.evaluator,
                                     "title": titles.get((ev.evaluator, ev.protocol_key), catalog.title(ev.evaluator)),
                                     "status": ev.status, "wall": ev.wall_time_s, "run": run.label,
                                     "n_warnings": len(ev.warnings), "on": evaluation_set(ev)})
            if ev.status == "ok":
                card["sets"] += [s for s in [evaluation_set(ev)] if s and s not in card["sets"]]
                card["headline"] += [{"name": m, "words": describe(m, ev.protocol), "value": ev.metrics[m],
                                      "evaluator": ev.evaluator, "on": evaluation_set(ev)}
                                     for m in catalog.headline(ev) if m not in {h["name"] for h in card["headline"]}]
    for card in cards.values():
        card["statuses"].sort(key=lambda s: catalog.rank(s["evaluator"]))
        card["headline"].sort(key=lambda h: catalog.rank(h["evaluator"]))
    return list(cards.values())


def _checkpoint_facts(ck: dict[str, Any]) -> list[tuple[str, str]]:
    arch = ck.get("architecture")
    if arch == "wrn" and ck.get("depth"):
        arch = f"WRN-{ck.get('depth')}-{ck.get('width')} (norm {ck.get('norm')})"
    facts = [("family", ck.get("family")), ("architecture", arch), ("trained on", ck.get("dataset")),
             ("classes", ck.get("n_classes")), ("head", ck.get("head")), ("format", ck.get("source_format"))]
    facts += [("note", str(n)) for n in ck.get("notes") or []]
    return [(k, str(v)) for k, v in facts if v not in (None, "")]


def _table_view(t: ComparisonTable) -> dict[str, Any]:
    """A comparison table as HTML parts of at most MAX_COLUMNS metric columns (each part one row per checkpoint);
    in a table of many parts only those of the first metric family are open, the rest fold under one summary."""
    parts = []
    for group in column_groups(t.metrics):
        rows = []
        best = best_values(t)
        for r in t.rows:
            cells = []
            for m in group.metrics:
                iv = r.intervals.get(m)
                cells.append({"value": format_number(r.values.get(m)), "best": r.kind == "measured" and
                              m in best and r.values.get(m) == best[m],
                              "interval": f"[{format_number(iv[0])}, {format_number(iv[1])}]" if iv else ""})
            rows.append({"label": r.label, "kind": r.kind, "cells": cells})
        parts.append({"prefix": group.prefix, "headers": group.headers, "metrics": group.metrics, "rows": rows,
                      "words": [describe(m, t.protocol) for m in group.metrics]})
    family = t.metrics[0].split("/")[0] if t.metrics else ""
    n_open = len(parts) if len(parts) <= FOLD_AFTER_PARTS else max(
        1, sum(1 for _ in itertools.takewhile(lambda p: p["metrics"][0].split("/")[0] == family, parts)))
    folded_families = list(dict.fromkeys(m.split("/")[0] for p in parts[n_open:] for m in p["metrics"]))
    return {"title": t.title, "slug": t.slug, "key": t.protocol_key, "metrics": t.metrics,
            "parts": parts[:n_open], "folded": parts[n_open:], "folded_families": folded_families,
            "sources": [{"label": r.label, "source": r.source, "note": r.note} for r in t.rows if r.kind == "reported"],
            "protocol": _protocol_items(t.protocol), "has_reported": t.has_reported}


def best_values(t: ComparisonTable) -> dict[str, float]:
    """Per metric with a better direction: the best measured value, when the measured rows do not all tie."""
    out = {}
    for m in t.metrics:
        sign = direction(m)
        values = [r.values.get(m) for r in t.rows if r.kind == "measured" and r.values.get(m) is not None]
        if sign and len(set(values)) > 1:
            out[m] = max(values) if sign > 0 else min(values)
    return out


def _protocol_items(protocol: dict[str, Any]) -> list[tuple[str, str]]:
    return [(k, v if isinstance(v, str) else json.dumps(v, default=str)) for k, v in flatten(protocol).items()]


def _figure_sections(runs: list[Run], notes: list[str], catalog: Catalog) -> list[dict[str, Any]]:
    """Images from every evaluation's artifacts, embedded; other artifacts listed by path; missing ones noted. Only
    files inside the run's results folder (links resolved) are read: a results.json naming ``/home/me/x.png`` or
    ``../../x.png`` gets a "missing" note, never that file inlined into a report that may be shared."""
    sections: dict[str, dict[str, Any]] = {}
    shown: set[Path] = set()  # one file listed by several evaluations (e.g. per K) is shown once
    for run in runs:
        for ev in run.evaluations:
            for label, rel in ev.artifacts.items():
                path = Path(rel) if Path(rel).is_absolute() else run.base_dir / rel
                if path.resolve() in shown:
                    continue
                shown.add(path.resolve())
                sec = sections.setdefault(ev.evaluator, {
                    "evaluator": ev.evaluator, "title": catalog.figures_title(ev.evaluator),
                    "images": [], "files": []})
                item = {"checkpoint": checkpoint_label(ev.checkpoint), "label": label, "path": str(rel)}
                if not path.resolve().is_relative_to(run.base_dir.resolve()):  # after links: no private file leaks
                    notes.append(f"artifact {label!r} of {ev.evaluator} / {item['checkpoint']} is missing: {rel} is "
                                 f"outside the results folder {run.base_dir}, so it is not read")
                    log.warning("%s", notes[-1])
                elif not path.is_file():
                    notes.append(f"artifact {label!r} of {ev.evaluator} / {item['checkpoint']} is missing: {path}")
                elif path.suffix.lower() in IMAGE_TYPES:
                    sec["images"].append({**item, "src": data_uri(path), **_image_info(path)})
                else:
                    sec["files"].append(item)
    for sec in sections.values():
        sec["images"].sort(key=lambda f: f["label"])  # the same figure of each checkpoint side by side
        if not sec["images"]:
            sec["title"] = catalog.title(sec["evaluator"]) + ": files"
    return sorted(sections.values(), key=lambda s: catalog.rank(s["evaluator"]))


def _image_info(path: Path) -> dict[str, Any]:
    """``wide``: much wider than tall (histogram panels span two grid columns); ``font_px``: the smallest text's
    size in image pixels when the figure recorded it (:func:`jembench.io.figure_png`)."""
    try:
        with Image.open(path) as im:
            return {"wide": im.width > 1.5 * im.height, "font_px": im.info.get(FONT_PX_KEY)}
    except Exception:  # noqa: BLE001 - an unreadable size only changes the layout
        return {"wide": False, "font_px": None}


def breakable(name: str) -> Markup:
    """A metric name, escaped, that may wrap after '/' and '_' (table headers stay narrow)."""
    return Markup(re.sub(r"([/_])", r"\1<wbr>", str(escape(name))))


def _detail_views(runs: list[Run], catalog: Catalog) -> list[dict[str, Any]]:
    """Each evaluation's detailed rows (per-class accuracy, per-eps results, ...) as a collapsible table."""
    out = []
    for run in runs:
        for ev in run.evaluations:
            if not ev.rows:
                continue
            columns: list[str] = []
            for row in ev.rows:
                columns += [c for c in row if c not in columns]
            out.append({"evaluator": ev.evaluator, "title": catalog.title(ev.evaluator),
                        "checkpoint": checkpoint_label(ev.checkpoint), "key": ev.protocol_key, "columns": columns,
                        "rows": [[_cell(row.get(c)) for c in columns] for row in ev.rows]})
    out.sort(key=lambda d: catalog.rank(d["evaluator"]))
    return out


def _cell(v: Any) -> str:
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str)
    return format_number(v)

