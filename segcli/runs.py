"""Run folders: runs/train/exp, exp2, ...; and finding the newest run's weights."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from segcli.errors import UserError


def new_run_dir(project: str | Path, name: str, exist_ok: bool) -> Path:
    """`project/name`, or the next free `name2`, `name3`, ... unless exist_ok."""
    base = Path(project)
    path = base / name
    if exist_ok or not path.exists():
        return path
    n = 2
    while (base / f"{name}{n}").exists():
        n += 1
    return base / f"{name}{n}"


def latest_run(project: str | Path = "runs/train") -> Optional[Path]:
    """The most recently modified run folder holding weights/last.pt."""
    base = Path(project)
    if not base.is_dir():
        return None
    runs = [p for p in base.iterdir() if (p / "weights" / "last.pt").is_file()]
    return max(runs, key=lambda p: (p / "weights" / "last.pt").stat().st_mtime) if runs else None


def default_model(project: str | Path = "runs/train") -> Path:
    run = latest_run(project)
    if run is None:
        raise UserError(f"no trained model under {project}/; pass --model PATH or train one with `segcli train DATA`")
    return model_file(run)


def model_file(run: Path) -> Path:
    """A run folder's model: weights/best.pt, else (before its first best) weights/last.pt."""
    best = run / "weights" / "best.pt"
    return best if best.is_file() else run / "weights" / "last.pt"


def parse_duration(text: str) -> float:
    """'90s', '6m', '2h', '1.5h' or plain seconds to seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text.lower())
    if not m or float(m.group(1)) <= 0:
        raise UserError(f"--time '{text}': expected a duration like 90s, 6m or 2h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
