"""The Typer app and its root options; the command modules register themselves on it.

torch is imported inside commands only, so `--help` and argument errors answer at once.
"""

from __future__ import annotations

import os
import time

# When the command began: a `train --time` budget counts from here, start-up included.
STARTED = time.monotonic()

# Plain (click-style) help: Typer's rich panels cost ~0.15 s of imports and layout per --help,
# and a shell tool must answer at once. TYPER_USE_RICH=1 brings them back.
os.environ.setdefault("TYPER_USE_RICH", "0")

import typer  # noqa: E402

from segcli.version import __version__  # noqa: E402

app = typer.Typer(
    name="segcli",
    help="Train and run adversarial (GAN) image-segmentation models.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

def _version(value: bool) -> None:
    if value:
        typer.echo(f"segcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only results on stdout; no progress."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Train and run adversarial (GAN) image-segmentation models."""
    from segcli import console  # --debug itself is read by segcli.cli.main, before any command runs

    console.QUIET = quiet
