"""The one place that creates rich consoles and progress displays.

Progress goes to stderr. On a terminal it is a live bar with running losses; otherwise
(batch jobs, CI logs) it is one plain line per epoch. NO_COLOR turns off all styling.
"""

from __future__ import annotations

import math
import os
from typing import Any, Optional

from rich.console import Console
from rich.markup import escape
from rich.table import Table

_err: Optional[Console] = None
_out: Optional[Console] = None
QUIET = False


def _make(stderr: bool) -> Console:
    # NO_COLOR (no-color.org): rich alone drops colours but keeps bold; plain text is what people mean
    plain = bool(os.environ.get("NO_COLOR"))
    return Console(stderr=stderr, highlight=False, soft_wrap=True, **({"color_system": None} if plain else {}))


def err() -> Console:
    global _err
    if _err is None:
        _err = _make(stderr=True)
    return _err


def out() -> Console:
    global _out
    if _out is None:
        _out = _make(stderr=False)
    return _out


def info(message: str) -> None:
    if not QUIET:
        err().print(message)


def fmt(v: Any, digits: int = 4) -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.{digits}f}"
    return "-" if v is None else str(v)


class TrainProgress:
    """Engine callbacks rendered on stderr."""

    def __init__(self) -> None:
        self.console = err()
        self.live = self.console.is_terminal and not QUIET
        self.progress = None
        self.task = None
        self.epochs = 0

    def on_start(self, meta: dict[str, Any]) -> None:
        inf = meta["info"]
        kind = "binary" if inf.binary else f"{inf.num_classes} classes"
        resumed = f", resuming after epoch {meta['start_epoch']}" if meta["start_epoch"] else ""
        info(f"[bold]segcli train[/]: {meta['train']} train / {meta['val']} val images, {kind}, "
             f"{inf.in_channels} {'channel(s)' if inf.in_channels in (1, 3) else 'bands'}, patch {meta['img_size']}; "
             f"device {meta['device']}, "
             f"precision {meta['precision']}{resumed}")
        info(f"run folder: {meta['run_dir']}")
        if meta.get("init"):
            info(f"starting from {meta['init']['from']} ({', '.join(meta['init']['loaded'])})")
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[losses]}"), console=self.console, transient=True,
            )
            self.progress.start()

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self.epochs = epochs
        if self.progress is not None:
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task(f"epoch {epoch}/{epochs}", total=steps, losses="")

    def on_step(self, step: int, losses: dict[str, float]) -> None:
        if self.progress is not None and self.task is not None:
            text = " ".join(f"{k}={v:.3f}" for k, v in losses.items() if k in ("g_loss", "d_loss"))
            self.progress.update(self.task, completed=step, losses=text)

    def on_epoch_end(self, row: dict[str, Any]) -> None:
        line = (f"epoch {row['epoch']}/{self.epochs}  g_loss {fmt(row['g_loss'])}  d_loss {fmt(row['d_loss'])}  "
                f"val mIoU {fmt(row['val_mIoU'])}  Dice {fmt(row['val_Dice'])}  {row['seconds']:.1f}s")
        if self.progress is not None:
            self.progress.console.print(line)
        else:
            info(line)

    def on_validation(self, epoch: int, samples: Any) -> None: ...

    def on_finish(self, result: Any) -> None: ...

    def on_note(self, text: str) -> None:
        line = f"[yellow]note[/]: {escape(text)}"
        if self.progress is not None:
            self.progress.console.print(line)
        else:
            info(line)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def summary_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for k, v in rows:
        table.add_row(k, v)
    return table


class PredictProgress:
    """`segcli predict` on a terminal: a bar with images/s and the time left (nothing otherwise)."""

    def __init__(self, total: int) -> None:
        self.progress: Any = None
        if not (err().is_terminal and not QUIET) or total == 0:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        rate = TextColumn("{task.fields[rate]}")
        self.progress = Progress(TextColumn("predict"), BarColumn(), MofNCompleteColumn(), rate, TextColumn("ETA"),
                                 TimeRemainingColumn(), console=err(), transient=True)
        self.task = self.progress.add_task("predict", total=total, rate="")
        self.progress.start()

    def advance(self) -> None:
        """One more input predicted (or found unreadable)."""
        if self.progress is None:
            return
        speed = self.progress.tasks[0].speed
        self.progress.update(self.task, advance=1, rate=f"{speed:.1f} images/s" if speed else "")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
