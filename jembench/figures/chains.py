"""Energy trace of a sampler run: the median energy across chains per recorded step, the 25-75% and 5-95%
bands, the diagnostics window shaded, and the diagnostic numbers written beside it (shown next to the samples)."""

from __future__ import annotations

from typing import Any, Optional

from . import new_figure

NUMBERS = (("chain/rhat", "R-hat", "{:.3f}"), ("chain/ess_bulk", "bulk ESS", "{:.0f}"),
           ("chain/acceptance", "acceptance", "{:.2f}"), ("chain/class_flip_fraction", "class flips", "{:.1%}"),
           ("chain/energy_median_last", "median E (last)", "{:.4g}"), ("chain/drift_shift", "drift Q4-Q3", "{:+.3g}"))


def numbers_text(metrics: dict[str, float], details: dict[str, Any]) -> str:
    """The diagnostics as short lines (the legend of the trace figure)."""
    lines = [f"{label} {fmt.format(metrics[key])}" for key, label, fmt in NUMBERS if key in metrics]
    drift = details.get("drift")
    if drift is not None:
        lines.append("still drifting" if drift["drifting"] else "no drift detected")
    lines.append(f"{details.get('chains', 0)} chains")
    return "\n".join(lines)


def energy_trace(summary: dict[str, list[float]], metrics: dict[str, float], details: dict[str, Any], *,
                 axis: str = "sampler step", title: str = "", window: Optional[list[int]] = None):
    """``summary`` from :func:`jembench.sampling.diagnostics.summary`; returns the Figure."""
    fig, ax = new_figure(6.4, 3.4)
    x = summary["step"]
    ax.fill_between(x, summary["q05"], summary["q95"], color="#4c72b0", alpha=0.15, lw=0, label="5-95%")
    ax.fill_between(x, summary["q25"], summary["q75"], color="#4c72b0", alpha=0.35, lw=0, label="25-75%")
    ax.plot(x, summary["q50"], color="#4c72b0", lw=1.5, label="median")
    if window:
        ax.axvspan(window[0], window[1], color="gray", alpha=0.08, label="diagnostics window")
    ax.set_xlabel(axis)
    ax.set_ylabel("energy E(x) = -log p~(x)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", fontsize=7)
    ax.text(1.02, 1.0, numbers_text(metrics, details), transform=ax.transAxes, va="top", fontsize=8,
            family="monospace")
    fig.tight_layout()
    return fig
