"""Figures (matplotlib, Agg backend): one module per topic; each function returns a Figure, made into PNG bytes
by :func:`png_file` (a job of :func:`jembench.background.render`, which writes them)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402


def new_figure(width: float = 5.0, height: float = 4.0, rows: int = 1, cols: int = 1, **kw):
    """``(fig, axes)`` with jembench's defaults; close it with :func:`close` after saving."""
    return plt.subplots(rows, cols, figsize=(width, height), **kw)


def close(fig) -> None:
    plt.close(fig)


def png_file(fig, path, **kwargs) -> dict:
    """``{path: the figure as PNG bytes}`` (:func:`jembench.io.figure_png`, ``kwargs`` to savefig), the figure
    closed: what a figure job of :func:`jembench.background.render` returns."""
    from pathlib import Path

    from ..io import figure_png

    try:
        return {Path(path): figure_png(fig, **kwargs)}
    finally:
        close(fig)
