"""The command line. Commands are thin: parse options, build a config, call the core.

`segcli.cli.app` holds the Typer app; each command module registers one command on it.
"""

from __future__ import annotations

import os
import sys

from segcli.cli.app import app

DEBUG = False

from segcli.cli import check as _check  # noqa: E402,F401  (registers commands)
from segcli.cli import convert as _convert  # noqa: E402
from segcli.cli import evaluate as _evaluate  # noqa: E402
from segcli.cli import export as _export  # noqa: E402
from segcli.cli import info as _info  # noqa: E402
from segcli.cli import predict as _predict  # noqa: E402
from segcli.cli import select as _select  # noqa: E402
from segcli.cli import serve as _serve  # noqa: E402
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
