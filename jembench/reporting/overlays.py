"""Comparison figures: every checkpoint of one comparison table on one axis (or side by side on one scale).

- reliability diagrams side by side, one panel per checkpoint, shared axes (calibration tables);
- ROC curves per OOD set, one line per checkpoint, for the scores log p(x) and max p(y|x) (else the first two);
- robust accuracy (per-image worst case) against eps, one plot per threat model, one colour per checkpoint and
  one line style per JEM-K, the legend outside the data.

Drawn from the per-sample arrays (reliability, ROC) or the evaluations' rows (robustness) when the report is built,
and embedded as PNG data (nothing is written next to the report).
"""

from __future__ import annotations

import base64
import math
from typing import Any, Optional, Sequence

import numpy as np

from ..io import FONT_PX_KEY, figure_png
from .comparisons import Member, _load
from .names import SCORES, eps_words, k_words
from .verdict import OOD_SCORES

FONT = 9  # points: 13.75 px at the figures' 110 dpi


def _margins(fig: Any, rows: int, left: float = 0.65, right: float = 0.15, bottom: float = 0.55, top: float = 0.5,
             hspace: float = 0.55, wspace: float = 0.3) -> None:
    """Fixed margins in inches (no tight layout, no tight bounding box: half the drawing time of a grid figure)."""
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h,
                        hspace=hspace if rows > 1 else 0.2, wspace=wspace)


def _embed(fig: Any, title: str, alt: str, wide: bool, tight: bool = False) -> dict[str, Any]:
    """The figure as a PNG data URI (``tight``: cropped to its drawn content, for legends outside the axes)."""
    from ..figures import close

    png = figure_png(fig) if tight else figure_png(fig, bbox_inches=None)
    close(fig)
    from PIL import Image
    import io

    with Image.open(io.BytesIO(png)) as im:
        font_px = im.info.get(FONT_PX_KEY)
    return {"title": title, "alt": alt, "wide": wide, "font_px": font_px,
            "src": "data:image/png;base64," + base64.b64encode(png).decode("ascii")}


def reliability_overlay(members: Sequence[Member]) -> Optional[dict[str, Any]]:
    import torch

    from ..figures import new_figure
    from ..metrics.calibration import reliability_bins

    data = [(m, _load(m, "raw")) for m in members]
    data = [(m, z) for m, z in data if z is not None]
    if len(data) < 2:
        return None
    bins = int(members[0].evaluation.protocol.get("bins") or 15)
    cols = min(len(data), 4)
    rows = math.ceil(len(data) / cols)
    fig, axes = new_figure(3.2 * cols, 3.4 * rows, rows, cols, squeeze=False, sharex=True, sharey=True)
    for ax, (m, z) in zip(axes.flat, data):
        t = reliability_bins(torch.as_tensor(z["probs"]), torch.as_tensor(z["labels"]).long(), bins)
        filled = t["count"].numpy() > 0
        centre, width = ((t["lo"] + t["hi"]) / 2).numpy(), (t["hi"] - t["lo"]).numpy()
        ax.bar(centre[filled], t["accuracy"].numpy()[filled], width=width[filled], color="#4c72b0",
               edgecolor="black", label="accuracy")
        gap = (t["confidence"] - t["accuracy"]).numpy()
        ax.bar(centre[filled], gap[filled], bottom=t["accuracy"].numpy()[filled], width=width[filled],
               color="#c44e52", alpha=0.35, label="gap to confidence")
        ax.plot([0, 1], [0, 1], "--", color="gray", lw=1)
        ece = m.evaluation.metrics.get("ece")
        ax.set_title(f"{m.label}" + (f"\nECE {100 * ece:.2f}%" if ece is not None else ""), fontsize=FONT + 1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence", fontsize=FONT)
        ax.tick_params(labelsize=FONT)
    for ax in list(axes.flat)[len(data):]:
        ax.axis("off")
    axes[0, 0].set_ylabel("accuracy", fontsize=FONT)
    axes[0, 0].legend(fontsize=FONT, loc="upper left")
    _margins(fig, rows, top=0.55)
    return _embed(fig, f"Reliability diagrams ({bins} bins), side by side", "reliability comparison",
                  wide=len(data) > 2)


def roc_overlays(members: Sequence[Member]) -> list[dict[str, Any]]:
    from sklearn.metrics import roc_curve

    from ..figures import new_figure

    data = [(m, _load(m, "raw_scores")) for m in members]
    data = [(m, z) for m, z in data if z is not None]
    if len(data) < 2:
        return []
    sets = [str(s) for s in data[0][1]["out_names"]]
    scores = [str(s) for s in data[0][1]["scores"]]
    in_name = members[0].evaluation.protocol.get("in_dataset", "in")
    out = []
    for score in [s for s in OOD_SCORES if s in scores] or scores[:2]:
        cols = min(len(sets), 3)
        rows = math.ceil(len(sets) / cols)
        fig, axes = new_figure(3.6 * cols, 3.4 * rows + 0.6, rows, cols, squeeze=False)
        for j, (ax, name) in enumerate(zip(axes.flat, sets)):
            for i, (m, z) in enumerate(data):
                s_in, s_out = z[f"{score}.in"], z[f"{score}.out{j}"]
                keep_in, keep_out = s_in[np.isfinite(s_in)], s_out[np.isfinite(s_out)]
                y = np.concatenate([np.ones(keep_in.size), np.zeros(keep_out.size)])
                fpr, tpr, _ = roc_curve(y, np.concatenate([keep_in, keep_out]))
                auroc = m.evaluation.metrics.get(f"auroc/{score}/{name}")
                ax.plot(fpr, tpr, color=f"C{i % 10}", lw=1.6,
                        label=f"{m.label}" + (f" ({auroc:.3f})" if auroc is not None else ""))
            ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
            ax.set_title(f"{in_name} vs {name}", fontsize=FONT + 1)
            ax.set_xlabel("FPR (OOD accepted)", fontsize=FONT)
            ax.set_ylabel("TPR (in kept)", fontsize=FONT)
            ax.tick_params(labelsize=FONT)
            ax.legend(fontsize=FONT, loc="lower right", title="AUROC", title_fontsize=FONT)
        for ax in list(axes.flat)[len(sets):]:
            ax.axis("off")
        _margins(fig, rows, top=0.35, hspace=0.45, wspace=0.35)
        out.append(_embed(fig, f"ROC curves, score {SCORES.get(score, score)}, checkpoints overlaid",
                          f"roc comparison {score}", wide=cols > 1))
    return out


def robustness_overlays(groups: dict[tuple[str, str], list[Member]]) -> list[dict[str, Any]]:
    """One plot per threat model over every robust table with two or more checkpoints."""
    from ..figures import new_figure

    by_norm: dict[str, list[Member]] = {}
    for (evaluator, _), members in groups.items():
        if evaluator == "robust" and len(members) > 1:
            by_norm.setdefault(str(members[0].evaluation.protocol.get("threat_model")), []).extend(members)
    out = []
    for norm, members in by_norm.items():
        curves = {id(m): sorted((r for r in m.evaluation.rows if r.get("attack") == "worst" and
                                 isinstance(r.get("eps"), (int, float)) and isinstance(r.get("acc"), (int, float))),
                                key=lambda r: r["eps"]) for m in members}
        members = [m for m in members if curves[id(m)]]
        if len(members) < 2:
            continue
        labels = list(dict.fromkeys(m.label for m in members))
        ks = sorted({int(m.evaluation.protocol.get("K") or 0) for m in members})
        fig, ax = new_figure(6.0, 4.0)
        scale = 255.0 if norm == "linf" else 1.0
        for m in members:
            k = int(m.evaluation.protocol.get("K") or 0)
            pts = curves[id(m)]
            ax.plot([r["eps"] * scale for r in pts], [r["acc"] for r in pts], marker="o", ms=3, lw=1.6,
                    color=f"C{labels.index(m.label) % 10}", ls=("-", "--", ":", "-.")[ks.index(k) % 4],
                    label=f"{m.label}, {k_words(k)}")
        ax.set_xlabel("eps (x/255, pixels in [0, 1])" if norm == "linf" else "eps (L2, pixels in [0, 1])",
                      fontsize=FONT)
        ax.set_ylabel("robust accuracy (worst case)", fontsize=FONT)
        ax.set_ylim(-0.02, 1.02)
        ax.tick_params(labelsize=FONT)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=FONT, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
        top = eps_words(norm, max(r["eps"] for m in members for r in curves[id(m)]))
        out.append(_embed(fig, f"Robust accuracy, {norm} (up to {top}), checkpoints overlaid",
                          f"robustness comparison {norm}", wide=True, tight=True))
    return out


def comparison_figures(groups: dict[tuple[str, str], list[Member]]) -> list[dict[str, Any]]:
    """Every comparison figure the tables allow, in report order (calibration, OOD, robustness)."""
    figs: list[dict[str, Any]] = []
    for (evaluator, _), members in groups.items():
        if len(members) < 2:
            continue
        if evaluator == "calib":
            fig = reliability_overlay(members)
            figs += [fig] if fig else []
        elif evaluator == "ood":
            figs += roc_overlays(members)
    return figs + robustness_overlays(groups)
