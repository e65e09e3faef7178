"""Comparison tables as LaTeX (booktabs) for a paper: one file per table, one row per measured checkpoint.

Each file holds one ``table`` environment with one ``tabular`` per column group of at most
:data:`jembench.reporting.tables.MAX_COLUMNS` metrics (as in the HTML); a value with an interval is written
``v $\\pm$ h`` with h half the width of its 95% interval, the best value of each column (where higher or lower is
better and the checkpoints differ) in bold. Needs ``\\usepackage{booktabs}``. Published ("reported") rows are left
out: they were not measured here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..io import atomic_write_text
from .names import direction
from .render import best_values
from .tables import ComparisonTable, column_groups, file_stems, format_number

SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
           "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def escape(text: str) -> str:
    return re.sub(r"[\\&%$#_{}~^]", lambda m: SPECIAL[m.group()], str(text))


def table_latex(t: ComparisonTable) -> str:
    best = best_values(t)
    measured = [r for r in t.rows if r.kind == "measured"]
    lines = ["\\begin{table}[t]", "\\centering", "\\small"]
    for group in column_groups(t.metrics):
        lines += [f"\\begin{{tabular}}{{l{'r' * len(group.metrics)}}}", "\\toprule"]
        if group.prefix:
            lines.append(f"& \\multicolumn{{{len(group.metrics)}}}{{c}}{{{escape(group.prefix)}}} \\\\")
        lines.append(" & ".join(["checkpoint", *(escape(h) for h in group.headers)]) + " \\\\")
        lines.append("\\midrule")
        for r in measured:
            cells = [escape(r.label)]
            for m in group.metrics:
                v = r.values.get(m)
                text = format_number(v)
                iv = r.intervals.get(m)
                if iv and v is not None:
                    text += f" $\\pm$ {format_number((iv[1] - iv[0]) / 2)}"
                bold = m in best and v == best[m] and direction(m) != 0
                cells.append(f"\\textbf{{{text}}}" if bold else text)
            lines.append(" & ".join(cells) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}", "\\par\\medskip"]
    caption = (f"{t.title} (protocol {t.protocol_key}). Best value per column in bold; $\\pm$: half the width of "
               "the 95\\% interval.")
    lines += [f"\\caption{{{escape_caption(caption)}}}", f"\\label{{tab:{escape(t.slug)}}}", "\\end{table}", ""]
    return "\n".join(lines)


def escape_caption(text: str) -> str:
    """Escape a caption except the math and the percent sign already written as LaTeX."""
    parts = re.split(r"(\$\\pm\$|\\%)", text)
    return "".join(p if p in ("$\\pm$", "\\%") else escape(p) for p in parts)


def write_latex(tables: list[ComparisonTable], folder: str | os.PathLike) -> list[Path]:
    """``folder/<table title>.tex`` for each table (names as the CSVs), written atomically."""
    paths = []
    for t, stem in zip(tables, file_stems(tables)):
        path = Path(folder) / f"{stem}.tex"
        atomic_write_text(path, table_latex(t))
        paths.append(path)
    return paths
