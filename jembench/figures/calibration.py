"""Reliability diagram (Guo et al. 2017, Fig. 1): per-bin accuracy against confidence, with the gap to the
diagonal shaded, and the confidence histogram under it (samples per bin)."""

from __future__ import annotations

from typing import Optional

import torch

from . import new_figure


def reliability_diagram(table: dict[str, torch.Tensor], *, title: str = "", ece_value: Optional[float] = None):
    """``table`` from :func:`jembench.metrics.reliability_bins`; returns the Figure (two rows, shared x)."""
    fig, (top, bottom) = new_figure(5.0, 5.5, rows=2, cols=1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    lo, hi = table["lo"].numpy(), table["hi"].numpy()
    width, centre = hi - lo, (lo + hi) / 2
    count = table["count"].numpy()
    filled = count > 0
    acc, conf = table["accuracy"].numpy(), table["confidence"].numpy()
    top.bar(centre[filled], acc[filled], width=width[filled], edgecolor="black", color="#4c72b0", label="accuracy")
    top.bar(centre[filled], (conf - acc)[filled], bottom=acc[filled], width=width[filled], edgecolor="#c44e52",
            color="#c44e52", alpha=0.35, hatch="//", label="gap to mean confidence")
    top.plot([0, 1], [0, 1], "--", color="gray", lw=1, label="perfect calibration")
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(loc="upper left", fontsize=8)
    heading = title + (f"  ECE {100 * ece_value:.2f}%" if ece_value is not None else "")
    top.set_title(heading, fontsize=10)
    total = max(float(count.sum()), 1.0)
    bottom.bar(centre, count / total, width=width, edgecolor="black", color="#8c8c8c")
    n = table["count"].sum().clamp(min=1)
    mean_conf = float((table["confidence"] * table["count"]).sum() / n)
    mean_acc = float((table["accuracy"] * table["count"]).sum() / n)
    bottom.axvline(mean_conf, color="#c44e52", lw=1.5, label=f"mean confidence {mean_conf:.3f}")
    bottom.axvline(mean_acc, color="#4c72b0", lw=1.5, ls="--", label=f"accuracy {mean_acc:.3f}")
    bottom.legend(loc="upper left", fontsize=8)
    bottom.set_xlim(0, 1)
    bottom.set_xlabel(f"confidence (max softmax), {len(count)} bins")
    bottom.set_ylabel("fraction")
    fig.tight_layout()
    return fig
