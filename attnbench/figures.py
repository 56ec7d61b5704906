"""Headless matplotlib and the one way a figure is written (PNG, atomically).

Import `plt` from here: the Agg backend is chosen before pyplot is first imported.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # reports are built on servers without a display

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

DPI = 110


def save_figure(fig: Figure, path: Path) -> Path:
    """Write `fig` as PNG through a temporary file, so a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path


__all__ = ["DPI", "plt", "save_figure"]
