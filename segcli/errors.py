"""Error types that map onto the contract's exit codes.

The core raises these; the CLI turns them into one line on stderr and an exit code.
"""

from __future__ import annotations


class SegcliError(Exception):
    """A failure that is not the user's fault: exit code 1."""

    exit_code = 1


class UserError(SegcliError):
    """Bad usage or bad input (a file, an option value): exit code 2.

    The message names the file or option and says how to fix it.
    """

    exit_code = 2


class DataError(UserError):
    """A dataset file is missing, unreadable or inconsistent."""


class ModelFileError(UserError):
    """A model file is not a segcli checkpoint or cannot be used."""


class TrainingDiverged(SegcliError):
    """Losses or weights became NaN/inf; the last good checkpoint is kept."""


class Interrupted(SegcliError):
    """Ctrl-C: the run stopped at a resumable point (exit 130, the shell's code for SIGINT)."""

    exit_code = 130
