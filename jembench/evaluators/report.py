"""``report``: merge results.json files of earlier runs into one comparison report (the API of ``jembench report``).

The reporting package renders; this module gives it the evaluator registry, which names, orders and summarises
each evaluator's sections.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

from ..reporting import Comparison, ReportResult, Run, build_report, load_runs
from .registry import REGISTRY


def build(runs: Sequence[Run], out: str | os.PathLike, *, csv_dir: Optional[str | os.PathLike] = None,
          title: str = "jembench report", baseline: Optional[str] = None,
          latex_dir: Optional[str | os.PathLike] = None,
          comparisons: Optional[list[Comparison]] = None) -> ReportResult:
    """:func:`jembench.reporting.build_report` with the registry's titles, order and headline metrics."""
    return build_report(runs, out, csv_dir=csv_dir, title=title, catalog=REGISTRY, baseline=baseline,
                        latex_dir=latex_dir, comparisons=comparisons)


def report(results: str | os.PathLike | Sequence[str | os.PathLike], out: str | os.PathLike = "report.html", *,
           csv_dir: Optional[str | os.PathLike] = None, title: str = "jembench report", baseline: Optional[str] = None,
           latex_dir: Optional[str | os.PathLike] = None) -> ReportResult:
    """Merge results.json files of earlier runs into one comparison report: tables, the verdict and paired
    comparisons (from the runs' per-sample arrays; no model is run). ``baseline`` names the checkpoint the others
    are compared against; ``latex_dir`` also writes one booktabs table per comparison table."""
    return build(load_runs(results), out, csv_dir=csv_dir, title=title, baseline=baseline, latex_dir=latex_dir)
