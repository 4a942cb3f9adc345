"""segcli: adversarial (GAN) image segmentation from the command line.

`segcli.load(path)` returns a model for notebooks (see segcli.api); it is imported on first
use so that `import segcli` (and `segcli --help`) stays light.
"""

from __future__ import annotations

from typing import Any

from segcli.version import __version__

__all__ = ["__version__", "load"]


def __getattr__(name: str) -> Any:
    if name in ("load", "Model"):
        from segcli import api

        return getattr(api, name)
    raise AttributeError(f"module 'segcli' has no attribute {name!r}")
