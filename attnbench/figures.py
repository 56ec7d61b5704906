"""Headless matplotlib and the one way a figure is written (PNG, atomically).

Import `plt` from here: the Agg backend is chosen before pyplot is first imported.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # reports are built on servers without a display

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from .files import atomic_path

DPI = 110


def save_figure(fig: Figure, path: Path) -> Path:
    """Write `fig` as PNG, atomically (a reader never sees half a file), and close it."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


__all__ = ["DPI", "plt", "save_figure"]
