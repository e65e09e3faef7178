"""Reports from results files: comparison tables (pandas, CSV) and one self-contained HTML page.

``build_report(load_runs(["a/results.json", "b/results.json"]), "report.html", catalog=...)`` merges earlier runs
without recomputing anything; artifact paths are resolved relative to each results.json. The public
``jembench.report`` (:mod:`jembench.evaluators.report`) does this with the evaluator registry as the catalog.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from ..errors import JembenchError
from ..results import Evaluation, read_results
from ..io import atomic_write_text, to_jsonable
from .comparisons import Comparison, compare_runs, table_members
from .latex import write_latex
from .overlays import comparison_figures
from .render import Run, render_html
from .sanity import notes
from .tables import Catalog, ComparisonTable, PlainCatalog, comparison_tables, write_csvs
from .verdict import Verdict, verdicts
from .views import banner, comparison_view, verdict_view

__all__ = ["Catalog", "Comparison", "ComparisonTable", "PlainCatalog", "ReportResult", "Run", "Verdict", "build_report",
           "compare_runs", "comparison_tables", "load_run", "load_runs", "render_html"]


@dataclass
class ReportResult:
    html: Path
    tables: list[ComparisonTable]
    runs: list[Run]
    csvs: list[Path] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    latex: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable({"html": str(self.html), "csv": [str(p) for p in self.csvs],
                "latex": [str(p) for p in self.latex], "runs": [str(r.path) for r in self.runs],
                "verdict": [v.to_dict() for v in self.verdicts],
                "comparisons": [c.to_dict() for c in self.comparisons],
                "tables": [{"evaluator": t.evaluator, "protocol_key": t.protocol_key, "title": t.title,
                            "rows": t.frame().to_dict(orient="records")} for t in self.tables]})


def load_run(path: str | os.PathLike, label: Optional[str] = None) -> Run:
    """Read one results.json (or the folder holding it) as a :class:`Run`."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    doc = read_results(path)
    try:
        evaluations = [Evaluation.from_dict(e) for e in doc.get("evaluations", [])]
    except TypeError as exc:
        raise JembenchError(f"{path}: an evaluation does not follow the results schema ({exc})") from None
    return Run(label or path.parent.name or str(path), path.parent, doc.get("provenance") or {}, evaluations, path)


def build_report(runs: Sequence[Run], out: str | os.PathLike, *, csv_dir: Optional[str | os.PathLike] = None,
                 title: str = "jembench report", catalog: Optional[Catalog] = None, baseline: Optional[str] = None,
                 latex_dir: Optional[str | os.PathLike] = None,
                 comparisons: Optional[list[Comparison]] = None) -> ReportResult:
    """Tables, paired comparisons, verdict and HTML for ``runs``; the HTML (with ``csv_dir`` one CSV per table, with
    ``latex_dir`` one booktabs table per table) written atomically. ``catalog`` (the evaluator registry,
    :func:`jembench.report` passes it) titles and orders the sections; ``baseline`` names the checkpoint every
    other is compared against (default: the one plain classifier, if any); ``comparisons`` reuses ones already
    computed (:func:`compare_runs`)."""
    runs = _unique_labels(list(runs))
    tables = comparison_tables(((ev, run.label) for run in runs for ev in run.evaluations), catalog)
    groups = table_members(runs)
    if comparisons is None:
        comparisons = compare_runs(runs, baseline=baseline)
    rows = verdicts(groups, comparisons, baseline=baseline)
    titles = {(t.evaluator, t.protocol_key): t.title for t in tables}
    analysis = {"verdict": verdict_view(rows), "verdict_sentences": [v.sentence for v in rows],
                "comparisons": comparison_view(comparisons, titles), "overlays": comparison_figures(groups),
                "banner": banner(runs), "sanity": notes(tables)}
    out = Path(out)
    atomic_write_text(out, render_html(runs, tables, title=title, catalog=catalog, analysis=analysis))
    csvs = write_csvs(tables, csv_dir) if csv_dir is not None else []
    latex = write_latex(tables, latex_dir) if latex_dir is not None else []
    return ReportResult(out, tables, runs, csvs, comparisons, rows, latex)


def load_runs(results: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Run]:
    """Each results.json (or the folder holding it) as a :class:`Run`; one-line error when none is given."""
    paths = [results] if isinstance(results, (str, os.PathLike)) else list(results)
    if not paths:
        raise JembenchError("no results file given: pass one or more results.json files (or their folders)")
    return [load_run(p) for p in paths]


def _unique_labels(runs: list[Run]) -> list[Run]:
    seen: dict[str, int] = {}
    for run in runs:
        n = seen.get(run.label, 0)
        seen[run.label] = n + 1
        if n:
            run.label = f"{run.label} ({n + 1})"
    return runs
