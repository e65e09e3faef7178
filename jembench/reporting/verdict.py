"""The verdict: for each claim a hybrid model makes, which checkpoint is best, by how much, and whether it is more
than noise (the paired comparisons, :mod:`jembench.reporting.comparisons`).

A claim reads one headline metric of each comparison table of its evaluator: accuracy; ECE; mean AUROC over the
OOD sets for the scores log p(x) and max p(y|x) (else the first scores measured); robust accuracy (per-image worst
case) at the largest budget, undefended (K = 0) and with the most purification steps; FID (generation: each
model draws its own samples, so no paired test); the density evaluator's first headline metric where measured.
With a baseline (``baseline``, or the one plain classifier) every other checkpoint is compared against it, as the
JEM paper does; else the best against the runner-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from .comparisons import Comparison, Member, find_baseline, metric_value
from .names import describe, direction
from .tables import format_number

OOD_SCORES = ("logp", "msp")


@dataclass
class Verdict:
    """One row of the verdict: a claim measured by ``metric`` in one comparison table."""

    claim: str
    metric: str
    words: str
    evaluator: str
    protocol_key: str
    values: dict[str, Optional[float]]  # checkpoint label -> value
    best: Optional[str]
    higher_is_better: bool
    baseline: Optional[str] = None
    comparisons: list[Comparison] = field(default_factory=list)  # the tests behind the sentence
    sentence: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"claim": self.claim, "metric": self.metric, "measure": self.words, "evaluator": self.evaluator,
                "protocol_key": self.protocol_key, "values": self.values, "best": self.best,
                "higher_is_better": self.higher_is_better, "baseline": self.baseline, "sentence": self.sentence,
                "comparisons": [c.to_dict() for c in self.comparisons]}


def _robust_metrics(members: Sequence[Member]) -> list[str]:
    worst = [m for mem in members for m in mem.evaluation.metrics if m.startswith("robust_acc/") and
             m.endswith("/worst")]
    if not worst:
        return []
    return [max(dict.fromkeys(worst), key=lambda m: float(m.split("/")[2]))]


def claim_metrics(evaluator: str, members: Sequence[Member]) -> list[tuple[str, str]]:
    """``(claim, metric)`` pairs a table of ``evaluator`` answers."""
    ev = members[0].evaluation
    if evaluator == "clf":
        return [("Accuracy", "accuracy")]
    if evaluator == "calib":
        return [("Calibration", "ece")]
    if evaluator == "ood":
        scores = list(dict.fromkeys(m.split("/")[1] for m in ev.metrics if m.startswith("auroc/")))
        chosen = [s for s in OOD_SCORES if s in scores] or scores[:2]
        return [("OOD detection", f"auroc/{s}/mean") for s in chosen]
    if evaluator == "robust":
        k = ev.protocol.get("K")
        claim = "Robustness, undefended" if str(k) == "0" else "Robustness with purification"
        return [(claim, m) for m in _robust_metrics(members)]
    if evaluator == "gen":
        return [("Generation", m) for m in ev.metrics if m.startswith("fid/")][:1]
    if evaluator == "density":
        return [("Density", m) for m in ("ais/bits_per_dim", *ev.metrics) if m in ev.metrics and direction(m)][:1]
    return []


def _keep_robust(rows: list[Verdict]) -> list[Verdict]:
    """Purified robustness: only the tables with the most purification steps (per threat model)."""
    def k_of(v: Verdict) -> int:
        return int(v.metric.split("/")[3].removeprefix("K="))

    purified = [v for v in rows if v.claim == "Robustness with purification"]
    top = {}
    for v in purified:
        norm = v.metric.split("/")[1]
        top[norm] = max(top.get(norm, 0), k_of(v))
    return [v for v in rows if v.claim != "Robustness with purification" or k_of(v) == top[v.metric.split("/")[1]]]


def verdicts(groups: dict[tuple[str, str], list[Member]], comparisons: Sequence[Comparison], *,
             baseline: Optional[str] = None, order: Any = None) -> list[Verdict]:
    """One :class:`Verdict` per (claim, table); ``groups`` from :func:`comparisons.table_members`."""
    rows: list[Verdict] = []
    for (evaluator, key), members in groups.items():
        if len(members) < 2:
            continue
        base = find_baseline(members, baseline)
        for claim, metric in claim_metrics(evaluator, members):
            values = {m.label: metric_value(m.evaluation, metric) for m in members}
            sign = direction(metric) or 1
            present = {k: v for k, v in values.items() if v is not None}
            best = max(present, key=lambda k: sign * present[k]) if present else None
            tests = [c for c in comparisons if c.evaluator == evaluator and c.protocol_key == key and
                     c.metric == metric]
            row = Verdict(claim, metric, describe(metric, members[0].evaluation.protocol), evaluator, key, values,
                          best, sign > 0, base.label if base else None, tests)
            row.sentence = sentence(row)
            rows.append(row)
    rows = _keep_robust(rows)
    ranks = ["Accuracy", "Calibration", "OOD detection", "Robustness, undefended", "Robustness with purification",
             "Generation", "Density"]
    return sorted(rows, key=lambda v: ranks.index(v.claim) if v.claim in ranks else len(ranks))


def _fmt_test(c: Comparison) -> str:
    lo, hi = c.interval
    p = c.p_holm if c.p_holm is not None else c.p_value
    p_text = "< 0.001" if p < 1e-3 else f"= {p:.3f}"
    return f"difference {c.difference:+.4f} (95% interval [{lo:+.4f}, {hi:+.4f}], Holm-adjusted p {p_text}, n = {c.n})"


def _better(c: Comparison, higher: bool) -> bool:
    return (c.difference > 0) == higher


def sentence(v: Verdict) -> str:
    """The verdict in words."""
    if v.best is None:
        return f"{v.claim}: no values."
    value = format_number(v.values[v.best])
    lead = f"{v.claim} ({v.words}, {'higher' if v.higher_is_better else 'lower'} is better): "
    if v.baseline is not None:
        parts = []
        for name, val in v.values.items():
            if name == v.baseline:
                continue
            c = next((c for c in v.comparisons if c.a == name and c.b == v.baseline), None)
            head = f"{name} {format_number(val)} vs baseline {v.baseline} {format_number(v.values[v.baseline])}"
            if c is None:
                parts.append(f"{head}: not tested ({_untested(v)})")
            elif c.significant and c.difference != 0:
                parts.append(f"{head}: significantly {'better' if _better(c, v.higher_is_better) else 'worse'}, "
                             f"{_fmt_test(c)}")
            else:
                parts.append(f"{head}: no significant difference, {_fmt_test(c)}")
        return lead + "; ".join(parts) + "."
    others = sorted((k for k in v.values if k != v.best and v.values[k] is not None),
                    key=lambda k: -(1 if v.higher_is_better else -1) * v.values[k])
    if not others:
        return lead + f"{v.best} {value}."
    second = others[0]
    c = next((c for c in v.comparisons if {c.a, c.b} == {v.best, second}), None)
    head = f"{v.best} is best with {value} (next: {second} {format_number(v.values[second])})"
    if v.values[second] == v.values[v.best]:
        head = f"{v.best} and {second} tie at {value}"
    if c is None:
        return lead + f"{head}; not tested ({_untested(v)})."
    verdict = "significant" if c.significant and c.difference != 0 else "not significant"
    return lead + f"{head}; {verdict}, {_fmt_test(c)} ({c.a} minus {c.b})."


def _untested(v: Verdict) -> str:
    if v.evaluator == "gen":
        return "each model draws its own samples: no paired test"
    return ("per-sample arrays absent or not of the same samples; run-all saves them, evaluator commands with "
            "--save-raw")


def status(v: Verdict) -> str:
    """Short verdict cell: who is better and whether significantly."""
    if v.best is None:
        return "-"
    if not v.comparisons:
        return f"{v.best} best (not tested)"
    sig = [c for c in v.comparisons if c.significant and c.difference != 0]
    if v.baseline is not None:
        if not sig:
            return "no significant difference from the baseline"
        return "; ".join(f"{c.a} significantly {'better' if _better(c, v.higher_is_better) else 'worse'}"
                         for c in sig)
    return f"{v.best} best, {'significant' if sig else 'not significant'}"
