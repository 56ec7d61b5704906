"""Reading image and label files with one-line errors that name the file and the layout.

Every data set of the suite reads its files through these two functions, so a missing
or corrupt file stops a run with `UserError("missing label <path>; expected ...")`
instead of a PIL traceback from inside a DataLoader worker.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UserError


def read_rgb(path: Path, layout: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file; `layout` says what was expected, for the error."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise UserError(f"missing image {path}; {layout}") from None
    except OSError as err:
        raise UserError(f"unreadable image {path} ({err}); {layout}") from None


def read_index_png(path: Path, layout: str) -> np.ndarray:
    """(H, W) uint8: the stored values of a one-channel (grey or palette) label PNG."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode not in ("L", "P"):
                raise UserError(
                    f"label {path} is a {image.mode} image, expected one channel of class ids "
                    f"(grey or palette PNG); {layout}"
                )
            return np.array(image, dtype=np.uint8)
    except FileNotFoundError:
        raise UserError(f"missing label {path}; {layout}") from None
    except OSError as err:
        raise UserError(f"unreadable label {path} ({err}); {layout}") from None


def check_same_size(image: np.ndarray, label: np.ndarray, image_path: Path) -> None:
    if image.shape[:2] != label.shape:
        raise UserError(
            f"image {image_path} is {image.shape[1]}x{image.shape[0]} but its label is "
            f"{label.shape[1]}x{label.shape[0]}"
        )
