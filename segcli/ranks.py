"""Which process am I: torchrun's environment, and the `predict --shard I/N` split.

torch-free on purpose: `segcli predict --model model.onnx --shard 1/4` must not import torch.
"""

from __future__ import annotations

import os
import re
from typing import Optional, Sequence, TypeVar

from segcli.errors import UserError

T = TypeVar("T")


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def world_from_env() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) as torchrun sets them; (0, 0, 1) for a plain process."""
    world = max(1, _env_int("WORLD_SIZE", 1))
    rank = _env_int("RANK", 0) if world > 1 else 0
    local = _env_int("LOCAL_RANK", rank) if world > 1 else 0
    return rank, local, world


def is_main_process() -> bool:
    """Rank 0 (or no torchrun at all): the one process that prints results and writes files."""
    return world_from_env()[0] == 0


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' with 0 <= I < N (0-based: `--shard 0/4` ... `--shard 3/4`)."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
        raise UserError(f"--shard '{text}': expected I/N with 0 <= I < N, e.g. --shard 0/4 ... --shard 3/4")
    return int(m.group(1)), int(m.group(2))


def shard_spec(text: Optional[str]) -> Optional[tuple[int, int]]:
    """The shard this process handles: --shard when given, else RANK/WORLD_SIZE under torchrun."""
    if text:
        return parse_shard(text)
    rank, _, world = world_from_env()
    return (rank, world) if world > 1 else None


def shard(items: Sequence[T], index: int, count: int) -> list[T]:
    """The index-th of `count` contiguous, near-equal parts of `items` sorted by name.

    Sorting makes the split stable: every process (or machine) given the same inputs in any
    order computes the same parts, so the parts are disjoint and together cover everything.
    """
    ordered = sorted(items, key=str)
    n = len(ordered)
    return ordered[index * n // count : (index + 1) * n // count]


def local_device(spec: str) -> str:
    """Under torchrun, `auto`/`cuda` becomes this process's own GPU, `cuda:LOCAL_RANK`."""
    rank, local, world = world_from_env()
    if world > 1 and (spec or "auto").lower() in ("auto", "cuda"):
        try:
            import torch  # only reached with a torch model or under torchrun

            if torch.cuda.is_available() and torch.cuda.device_count() > 0:
                return f"cuda:{local % torch.cuda.device_count()}"
        except ImportError:
            pass
    return spec
