"""segcli: adversarial (GAN) image segmentation from the command line.

`segcli.load(path)` returns a model for notebooks (see segcli.api); it is imported on first
use so that `import segcli` (and `segcli --help`) stays light.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# The checkpoint format this version writes; loading refuses newer ones.
CHECKPOINT_FORMAT = 1

__all__ = ["__version__", "CHECKPOINT_FORMAT", "load"]


def __getattr__(name: str) -> Any:
    if name in ("load", "Model"):
        from segcli import api

        return getattr(api, name)
    raise AttributeError(f"module 'segcli' has no attribute {name!r}")
