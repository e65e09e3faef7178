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
@click.option("--title", default="jembench report", show_default=True)
@json_option
def report_cmd(results, output, csv_dir, title, as_json):
    """Comparison report from RESULTS files (results.json, or the folders holding them); nothing is recomputed.

    Numbers measured under different protocols get different tables; published numbers appear as rows labelled
    "reported" where dataset and protocol match. Figures are embedded from each run's folder.

    \b
    Examples:
      jembench report reports/run-all/results.json -o report.html
      jembench report reports/jem/ reports/baseline/ -o compare.html --csv-dir compare-tables
    """
    from ..evaluators.report import report

    result = report(list(results), output, csv_dir=csv_dir, title=title)
    summary = "\n".join(f"{t.title} [{t.protocol_key}]: {len(t.rows)} rows" for t in result.tables)
    emit(result.to_dict(), as_json, summary)
    click.echo(f"report written to {Path(output)}", err=True)
