"""OOD figures: per-score histograms of in- vs out-of-distribution scores (the JEM paper's figure) and ROC curves.

Layouts are fixed (no tight bounding box): save with ``bbox_inches=None`` (:data:`SAVE_KW`), which halves the
drawing time of these many-panel figures.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
from sklearn.metrics import roc_curve

from . import new_figure

SAVE_KW = {"bbox_inches": None}


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 3)
    return math.ceil(n / cols), cols


def score_histograms(score: str, in_name: str, score_in: np.ndarray, score_out: Mapping[str, np.ndarray],
                     max_bins: int = 50):
    """One panel per OOD set: density histograms of ``score`` on the in-distribution set and on that OOD set,
    on common bins (sqrt(N) of them, 10 to ``max_bins``). Higher = more in-distribution."""
    rows, cols = _grid(len(score_out))
    fig, axes = new_figure(4.0 * cols, 3.0 * rows, rows, cols, squeeze=False)
    finite = lambda v: np.asarray(v)[np.isfinite(v)]  # noqa: E731 - non-finite scores are counted in warnings
    score_in = finite(score_in)
    for ax, (name, out) in zip(axes.flat, score_out.items()):
        out = finite(out)
        both = np.concatenate([score_in, out])
        edges = np.histogram_bin_edges(both, bins=int(np.clip(np.sqrt(both.size), 10, max_bins)))
        ax.hist(score_in, bins=edges, density=True, alpha=0.5, histtype="stepfilled", label=f"{in_name} (in)")
        ax.hist(out, bins=edges, density=True, alpha=0.5, histtype="stepfilled", label=f"{name} (out)")
        ax.set_title(f"{score}: {in_name} vs {name}", fontsize=10)
        ax.set_xlabel(f"{score} (higher = more in-distribution)", fontsize=9)
        ax.set_ylabel("density", fontsize=9)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(score_out):]:
        ax.axis("off")
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.6 / (3.0 * rows), top=1 - 0.3 / (3.0 * rows), hspace=0.5,
                        wspace=0.25)  # margins in inches / figure height
    return fig


def roc_curves(score: str, pairs: Mapping[str, tuple[np.ndarray, np.ndarray]], auroc: Mapping[str, float]):
    """ROC curves of ``score`` (in-distribution positive), one per OOD set: ``pairs[name] = (score_in, score_out)``
    (finite), AUROC in the legend."""
    fig, ax = new_figure(4.5, 4.0)
    for name, (score_in, out) in pairs.items():
        y = np.concatenate([np.ones(len(score_in)), np.zeros(len(out))])
        fpr, tpr, _ = roc_curve(y, np.concatenate([score_in, out]))
        ax.plot(fpr, tpr, label=f"{name} (AUROC {auroc[name]:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set_xlabel("FPR (OOD accepted)")
    ax.set_ylabel("TPR (in-distribution kept)")
    ax.set_title(f"ROC, score {score}", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.subplots_adjust(left=0.14, right=0.97, bottom=0.12, top=0.92)
    return fig
