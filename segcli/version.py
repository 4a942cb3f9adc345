"""The package version (a leaf: checkpoints and exports record it)."""

__version__ = "0.1.0"
