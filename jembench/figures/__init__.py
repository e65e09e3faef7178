"""Figures (matplotlib, Agg backend): one module per topic; each function returns a Figure to save with
:func:`jembench.io.atomic_savefig`."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402


def new_figure(width: float = 5.0, height: float = 4.0, rows: int = 1, cols: int = 1, **kw):
    """``(fig, axes)`` with jembench's defaults; close it with :func:`close` after saving."""
    return plt.subplots(rows, cols, figsize=(width, height), **kw)


def close(fig) -> None:
    plt.close(fig)
