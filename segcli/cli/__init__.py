"""The Typer app. Commands are thin: parse options, build a config, call the core.

torch is imported inside commands only, so `--help` and argument errors answer at once.
"""

from __future__ import annotations

import os
import sys

# Plain (click-style) help: Typer's rich panels cost ~0.15 s of imports and layout per --help,
# and a shell tool must answer at once. TYPER_USE_RICH=1 brings them back.
os.environ.setdefault("TYPER_USE_RICH", "0")

import typer  # noqa: E402

from segcli import __version__  # noqa: E402

app = typer.Typer(
    name="segcli",
    help="Train and run adversarial (GAN) image-segmentation models.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

DEBUG = False


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
    global DEBUG
    DEBUG = debug or bool(os.environ.get("SEGCLI_DEBUG"))
    from segcli import console

    console.QUIET = quiet


from segcli.cli import check as _check  # noqa: E402  (registers commands)
from segcli.cli import evaluate as _evaluate  # noqa: E402
from segcli.cli import export as _export  # noqa: E402
from segcli.cli import info as _info  # noqa: E402
from segcli.cli import predict as _predict  # noqa: E402
from segcli.cli import train as _train  # noqa: E402


def _fail(message: str, code: int) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: one line per error on stderr, exit 2 for bad input, 1 otherwise."""
    from segcli.cli._compat import Abort, ClickException, Exit
    from segcli.errors import SegcliError

    global DEBUG
    args = sys.argv[1:] if argv is None else argv
    DEBUG = "--debug" in args or bool(os.environ.get("SEGCLI_DEBUG"))
    try:
        app(args=args, prog_name="segcli", standalone_mode=False)
    except Exit as e:
        raise SystemExit(e.exit_code) from None
    except Abort:
        _fail("interrupted", 130)
    except ClickException as e:
        if DEBUG:
            raise
        if not e.format_message():  # bare `segcli`: the help was the message
            raise SystemExit(e.exit_code) from None
        hint = ""
        ctx = getattr(e, "ctx", None)
        if ctx is not None:
            hint = f" (see `{ctx.command_path} --help`)"
        _fail(e.format_message().replace("\n", " ") + hint, e.exit_code)
    except SegcliError as e:
        if DEBUG:
            raise
        _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        if DEBUG:
            raise
        _fail("interrupted", 130)
    except OSError as e:  # a path the core did not wrap: still one line naming the file
        if DEBUG:
            raise
        where = f"{e.filename}: " if e.filename else ""
        _fail(f"{where}{e.strerror or e}; check the path, free disk space and permissions", 1)
    except Exception as e:  # a bug or an environment problem: still one line unless --debug
        if DEBUG:
            raise
        _fail(f"{type(e).__name__}: {e} (run with --debug for the traceback)", 1)
