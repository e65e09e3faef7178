"""Robust accuracy against the attack budget eps, one colour per JEM-K setting."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from . import new_figure

SKIP = ("clean", "probe")


def accuracy_vs_eps(rows: Sequence[dict[str, Any]], *, norm: str, title: Optional[str] = None):
    """Per setting K: the per-image worst case over attacks (solid, 95% Wilson band) and each attack (dashed).

    ``rows`` are the robust evaluator's rows (keys ``K``, ``eps``, ``attack``, ``acc``, ``ci95``).
    """
    fig, ax = new_figure(6.0, 4.2)
    scale = 255.0 if norm == "linf" else 1.0
    settings = sorted({r["K"] for r in rows if r["attack"] not in SKIP})
    for i, k in enumerate(settings):
        color = f"C{i % 10}"
        mine = sorted((r for r in rows if r["K"] == k and r["attack"] not in SKIP), key=lambda r: r["eps"])
        name = "undefended (K=0)" if k == 0 else f"JEM-{k}"
        worst = [r for r in mine if r["attack"] == "worst"]
        xs = [r["eps"] * scale for r in worst]
        ax.plot(xs, [r["acc"] for r in worst], "-o", color=color, ms=3, lw=1.8, label=f"{name}: worst case")
        ax.fill_between(xs, [r["ci95"][0] for r in worst], [r["ci95"][1] for r in worst], color=color, alpha=0.15,
                        lw=0)
        attacks = sorted({r["attack"] for r in mine} - {"worst"})
        for j, attack in enumerate(attacks):
            pts = [r for r in mine if r["attack"] == attack]
            ax.plot([r["eps"] * scale for r in pts], [r["acc"] for r in pts], ls=("--", ":", "-.")[j % 3],
                    color=color, lw=0.9, alpha=0.8, label=f"{name}: {attack}")
    ax.set_xlabel("eps (x/255, L-inf, pixels in [0, 1])" if norm == "linf" else "eps (L2, pixels in [0, 1])")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)  # outside the data
    if title:
        ax.set_title(title, fontsize=9)
    return fig
