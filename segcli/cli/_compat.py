"""Click types across Typer versions: newer Typer vendors click as typer._click."""

from __future__ import annotations

import typer

try:
    from typer._click.core import ParameterSource
    from typer._click.exceptions import ClickException
except ImportError:  # Typer that still uses click itself
    from click import ClickException
    from click.core import ParameterSource

Exit = typer.Exit
Abort = typer.Abort

__all__ = ["Abort", "ClickException", "Exit", "ParameterSource"]
