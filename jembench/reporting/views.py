"""What the report's first sections show: the preset banner, the verdict table, the paired comparisons and the
evaluation set of each evaluation, as plain dicts for the template."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from .comparisons import ALPHA, Comparison
from .names import describe, direction
from .render import Run
from .tables import format_number
from .verdict import Verdict, status

MULTIPLE = ("{n} paired comparisons are listed; p-values are Holm-adjusted over all of them (family-wise error "
            "rate {alpha}), and a difference is called significant only when its adjusted p is below {alpha}. "
            "Accuracies (clean, and robust as the per-image worst case) use McNemar's exact test on the discordant "
            "images; NLL, Brier, ECE and AUROC a paired bootstrap ({resamples} resamples, the same for both "
            "checkpoints; AUROC stratified by set), p from its standard error. Intervals are 95% percentile "
            "intervals of the difference (first minus second). Only numbers measured under the same protocol on "
            "the same samples are compared; generation metrics are not (each model draws its own samples).")


def banner(runs: Sequence[Run]) -> list[str]:
    """The caveat of each preset a run used (e.g. quick: "not for publication"), once each."""
    out: dict[str, None] = {}
    for run in runs:
        preset = ((run.provenance or {}).get("config") or {}).get("preset")
        if isinstance(preset, dict) and preset.get("name"):
            text = f"Preset {preset['name']}: {preset.get('description') or ''}".strip().rstrip(":")
            if preset["name"] != "paper" or "not for publication" in text:
                out[f"{text} (run {run.label})" if len(runs) > 1 else text] = None
    return list(out)


def verdict_view(rows: Sequence[Verdict]) -> dict[str, Any]:
    labels = list(dict.fromkeys(k for v in rows for k in v.values))
    body = []
    for v in rows:
        cells = [{"value": format_number(v.values.get(k)), "best": k == v.best and _distinct(v),
                  "baseline": k == v.baseline} for k in labels]
        diffs = [f"{c.a} \u2212 {c.b}: {c.difference:+.4f} [{c.interval[0]:+.4f}, {c.interval[1]:+.4f}], "
                 f"p{_p_rel(c.p_holm)}" for c in v.comparisons]
        body.append({"claim": v.claim, "words": v.words, "cells": cells, "diffs": diffs, "status": status(v),
                     "significant": any(c.significant and c.difference != 0 for c in v.comparisons),
                     "sentence": v.sentence, "better": "higher" if v.higher_is_better else "lower"})
    return {"labels": labels, "rows": body}


def _distinct(v: Verdict) -> bool:
    return len({x for x in v.values.values() if x is not None}) > 1


def _p_rel(p: Optional[float]) -> str:
    text = format_p(p)
    return text if text.startswith("<") else f"={text}"


def format_p(p: Optional[float]) -> str:
    if p is None:
        return "-"
    return "<0.001" if p < 1e-3 else f"{p:.3f}"


def comparison_view(comparisons: Sequence[Comparison], titles: dict[tuple[str, str], str]) -> dict[str, Any]:
    rows = [{"table": titles.get((c.evaluator, c.protocol_key), c.evaluator), "words": describe(c.metric),
             "metric": c.metric, "a": c.a, "b": c.b, "value_a": format_number(c.value_a),
             "value_b": format_number(c.value_b), "difference": f"{c.difference:+.4f}",
             "interval": f"[{c.interval[0]:+.4f}, {c.interval[1]:+.4f}]", "p": format_p(c.p_value),
             "p_holm": format_p(c.p_holm), "test": c.test.split(" (")[0].split(",")[0], "n": c.n,
             "significant": c.significant and c.difference != 0,
             "better": _better_word(c)} for c in comparisons]
    resamples = comparisons[0].resamples if comparisons else 0
    return {"rows": rows, "note": MULTIPLE.format(n=len(rows), alpha=ALPHA, resamples=resamples)}


def _better_word(c: Comparison) -> str:
    sign = direction(c.metric)
    if c.difference == 0 or sign == 0:
        return ""
    return c.a if (c.difference > 0) == (sign > 0) else c.b
