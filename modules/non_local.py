"""PLACEHOLDER, being written by a helper: replace this whole file."""

from .identity import Identity as NonLocal

__all__ = ["NonLocal"]
