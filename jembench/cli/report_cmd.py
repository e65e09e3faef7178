"""``jembench report``: merge results.json files of earlier runs into one comparison report."""

from __future__ import annotations

from pathlib import Path

import click

from .options import emit, json_option


@click.command("report")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("-o", "--output", "output", default="report.html", show_default=True, type=click.Path(dir_okay=False),
              help="The HTML file to write (self-contained: open it in any browser, offline).")
@click.option("--csv-dir", type=click.Path(file_okay=False), default=None,
              help="Also write one CSV per comparison table here.")
@click.option("--latex", "latex_dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Also write one booktabs LaTeX table per comparison table here (intervals as +-, best in bold).")
@click.option("--baseline", default=None, metavar="CKPT",
              help="Compare every other checkpoint against this one (its name or file); default: the one plain "
                   "classifier (px_weight 0), if any, else every pair.")
@click.option("--title", default="jembench report", show_default=True)
@json_option
def report_cmd(results, output, csv_dir, latex_dir, baseline, title, as_json):
    """Comparison report from RESULTS files (results.json, or the folders holding them); nothing is recomputed.

    The report opens with a verdict per claim (accuracy, calibration, OOD, robustness, generation): which
    checkpoint is best, by how much, and whether the paired difference is significant. Numbers measured under
    different protocols get different tables; published numbers appear as rows labelled "reported" where dataset
    and protocol match. Figures are embedded from each run's folder. --json prints every measured number as
    records (checkpoint, evaluator, metric, protocol_key, value, interval, n, protocol), as
    jembench.load_results does.

    \b
    Examples:
      jembench report reports/run-all/results.json -o report.html
      jembench report reports/jem/ reports/baseline/ -o compare.html --csv-dir compare-tables
      jembench report reports/demo --latex paper-tables --baseline baseline-digits
    """
    from ..evaluators.report import report
    from ..io import to_jsonable
    from ..reporting.tidy import records

    result = report(list(results), output, csv_dir=csv_dir, title=title, baseline=baseline, latex_dir=latex_dir)
    summary = "\n".join([f"{t.title} [{t.protocol_key}]: {len(t.rows)} rows" for t in result.tables]
                         + [v.sentence for v in result.verdicts])
    emit(to_jsonable(records(result.runs)), as_json, summary)
    click.echo(f"report written to {Path(output)}", err=True)
