"""The published figures of each data set (published.csv): single-scale mIoU, training
memory (GB) and inference fps per head, backbone, crop and schedule, with the source of
each row (repository path at a commit, or paper table). An empty cell is a figure the
source does not give. Nothing here is measured: the report and the cost table set the
user's figures beside these."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

PUBLISHED_CSV = Path(__file__).with_name("published.csv")


def load_published(path: Path = PUBLISHED_CSV) -> pd.DataFrame:
    """The published figures, numbers as floats (NaN where the source gives none)."""
    table = pd.read_csv(path, dtype={"crop": str, "source": str})
    for column in ("iterations", "mIoU", "mem_gb", "fps"):
        table[column] = pd.to_numeric(table[column], errors="raise")
    table["crop"] = table["crop"].fillna("")
    return table
