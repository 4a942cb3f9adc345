"""Atomic file writes: a crash or a full disk never leaves a half-written file behind.

A leaf module (it imports nothing of segcli's but the error types), so every part of the
package can write through it.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

from segcli.errors import SegcliError, UserError


def atomic_write(path: Path, write: Callable[[BinaryIO], Any], durable: bool = True) -> None:
    """Write via a temporary file `.NAME.XXXX.tmp` in the same folder, fsync, then rename over `path`.

    `durable=False` skips the fsync: the file is still never seen half-written by any process, even
    after a kill -9, but a power cut may lose it (predict's masks: an fsync each would cost more than
    a small image's forward pass, and a lost mask is redone by the next run)."""
    path = Path(path)
    make_dirs(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise write_error(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)  # the previous file at `path`, if any, is untouched
        raise write_error(path, e) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes, durable: bool = True) -> None:
    atomic_write(path, lambda f: f.write(data), durable)


def temp_path(path: Path) -> Path:
    """A fresh temporary name beside `path`, as `atomic_write` names them (for writers that need a
    path rather than a file, e.g. a memory-mapped array), created empty; rename it over `path` when done."""
    make_dirs(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise write_error(path, e) from None
    os.close(fd)
    return Path(tmp)


def save_yaml(path: Path, values: dict[str, Any]) -> None:
    import yaml

    atomic_write_bytes(path, yaml.safe_dump(values, sort_keys=False).encode())


def write_error(path: Path, e: OSError) -> SegcliError:
    """A one-line error for a failed write: a bad path is the user's (exit 2), a full disk is not (1)."""
    reason = e.strerror or str(e)
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return SegcliError(f"{path}: cannot write ({reason}); free some disk space; earlier files are intact")
    if e.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT):
        return UserError(f"{path}: cannot write ({reason}); choose an output folder you can write to")
    return SegcliError(f"{path}: cannot write ({reason}); check free space and permissions")


def make_dirs(folder: Path) -> None:
    """mkdir -p with a one-line error (e.g. a regular file stands where a folder should be)."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(Path(folder), e) from None
