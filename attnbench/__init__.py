"""attnbench: context modules for semantic segmentation, trained and costed side by side."""

__version__ = "0.1.0"
