"""Sanity notes on the numbers' scales and sizes, shown above the tables.

- KID is shown on torch-fidelity's scale (the unbiased MMD^2 estimate with kernel (x.y / d + 1)^3, no factor);
  its size depends on the extractor's feature magnitudes, so it compares only within one extractor.
- IS that cannot separate models whose FID or precision / recall differ by far (IS within its spread or 5%,
  FID differing by 2x or more, or precision / recall by 0.2 or more).
- Real-image IS about 1 (< 1.5): the extractor's logits are degenerate (near-uniform or near-constant), so IS
  measures nothing.
- A metric computed on fewer than ``MIN_N`` samples.
FID from N below the extractor's feature dimension is warned about by the generation evaluator itself.
"""

from __future__ import annotations

import itertools
from typing import Any, Sequence

from .names import describe
from .tables import ComparisonTable

MIN_N = 100
IS_CLOSE = 0.05
FID_RATIO = 2.0
PRC_GAP = 0.2
REAL_IS_MIN = 1.5

KID_NOTE = ("KID is shown as torch-fidelity reports it: the unbiased MMD\u00b2 estimate between sample and reference "
            "features with the polynomial kernel (x\u00b7y/d + 1)\u00b3, mean over subsets, no scale factor (papers "
            "often quote KID \u00d7 10\u00b3). Its size follows the feature magnitudes of the extractor named in the "
            "column (a small classifier's penultimate features are not Inception's), so compare it only within one "
            "extractor and one N.")


def _n_values(t: ComparisonTable) -> list[int]:
    p = t.protocol
    ns = [p.get(k) for k in ("n", "n_in")] + [s.get("n") for s in p.get("out_sets") or [] if isinstance(s, dict)]
    return [int(n) for n in ns if isinstance(n, (int, float))]


def notes(tables: Sequence[ComparisonTable]) -> list[str]:
    out: list[str] = []
    if any(m.startswith("kid/") for t in tables for m in t.metrics):
        out.append(KID_NOTE)
    for t in tables:
        ns = _n_values(t)
        if ns and min(ns) < MIN_N:
            out.append(f"{t.title}: computed on {min(ns)} samples (fewer than {MIN_N}): intervals are wide and "
                       "differences between checkpoints are hard to resolve; use a larger N for anything you report.")
        if t.evaluator == "gen":
            out += _gen_notes(t)
    return out


def _gen_notes(t: ComparisonTable) -> list[str]:
    out = []
    measured = [r for r in t.rows if r.kind == "measured"]
    for m in t.metrics:
        if m.startswith("is_real/"):
            for r in measured:
                v = r.values.get(m)
                if v is not None and v < REAL_IS_MIN:
                    out.append(f"{t.title}: {describe(m)} is {v:.2f} (about 1) for {r.label}: the extractor's logits "
                               "are degenerate on real images, so IS here measures nothing; use another extractor.")
    for m in (m for m in t.metrics if m.startswith("is/")):
        ext = m.split("/", 1)[1]
        for a, b in itertools.combinations(measured, 2):
            if _is_close(a.values, b.values, m, ext) and (reason := _far(a.values, b.values, ext)):
                out.append(f"{t.title}: IS cannot separate {a.label} ({a.values[m]:.2f}) and {b.label} "
                           f"({b.values[m]:.2f}) although {reason}: IS only measures how confidently and evenly the "
                           "extractor classifies the samples, not whether they look like the data.")
    return out


def _is_close(a: dict[str, Any], b: dict[str, Any], m: str, ext: str) -> bool:
    va, vb = a.get(m), b.get(m)
    if va is None or vb is None:
        return False
    spread = max(a.get(f"is_std/{ext}") or 0.0, b.get(f"is_std/{ext}") or 0.0)
    return abs(va - vb) <= max(spread, IS_CLOSE * max(abs(va), abs(vb)))


def _far(a: dict[str, Any], b: dict[str, Any], ext: str) -> str:
    for m in a:
        if not m.startswith(f"fid/{ext}/") or a.get(m) is None or b.get(m) is None:
            continue
        lo, hi = sorted((a[m], b[m]))
        if lo > 0 and hi / lo >= FID_RATIO:
            return f"their FID differs {hi / lo:.1f}-fold ({a[m]:.1f} vs {b[m]:.1f})"
    for key in ("precision", "recall"):
        for m in a:
            if m.startswith(f"{key}/{ext}/") and a.get(m) is not None and b.get(m) is not None \
                    and abs(a[m] - b[m]) >= PRC_GAP:
                return f"their {key} differs by {abs(a[m] - b[m]):.2f} ({a[m]:.2f} vs {b[m]:.2f})"
    return ""
