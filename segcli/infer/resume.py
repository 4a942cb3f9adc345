"""Resumable predict output folders: who wrote OUT, and which inputs are finished there.

`segcli predict SOURCES -o OUT` keeps a small state folder, `OUT/.segcli-predict/`:

- `run.json`, the manifest, written before the first output: the model that writes OUT (path and
  SHA-256 of the file) and the settings that change masks (threshold, TTA, tiling, overlap). A run
  over an OUT that another model or other settings wrote stops at once (exit 2) and names
  `--overwrite`, which redoes every input there. Files in an OUT without a manifest (written by
  something else) are redone and replaced, as before resuming existed.
- `done*.jsonl`, one journal per process (`done.jsonl`, or `done-shard-I-of-N.jsonl` under
  `--shard`): a line per finished input (its path, estimated quality, class fractions), appended
  after its outputs were written. Only what `--json`, `--sort-by quality` and `--review` report for
  inputs a resumed run skips comes from it.

An input is done when every output asked for (mask; overlay, probabilities, error map when asked)
exists in OUT with a non-zero size; with `--quality` its journal line must exist too (the estimate
is in it). Every output is written to a temporary name and renamed, so an output that exists is
complete; temporary files a killed run left behind are removed by the next run of the same inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, TextIO

from segcli.errors import UserError
from segcli.fileio import atomic_write_bytes, make_dirs, write_error
from segcli.version import __version__

STATE = ".segcli-predict"
MANIFEST = "run.json"


def overlay_path(mask: Path) -> Path:
    return mask.with_name(mask.stem + "_overlay.png")


def probs_path(mask: Path) -> Path:
    return mask.with_name(mask.stem + "_probs.npy")


def error_path(mask: Path) -> Path:
    return mask.with_name(mask.stem + "_error.png")


@dataclass(frozen=True)
class Outputs:
    """The files predict writes for each input, beside its mask."""

    overlay: bool = False
    probs: bool = False
    error_map: bool = False

    def paths(self, mask: Path) -> list[Path]:
        wanted = [(True, mask), (self.overlay, overlay_path(mask)), (self.probs, probs_path(mask)),
                  (self.error_map, error_path(mask))]
        return [p for asked, p in wanted if asked]


@dataclass(frozen=True)
class Record:
    """A finished input as its journal line has it."""

    quality: Optional[float]
    fractions: Optional[list[float]]


def file_digest(path: Path) -> str:
    """SHA-256 of a file (a model: tens of MB, a fraction of a second)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class OutputFolder:
    """OUT's state: `claim` (check or write the manifest), `split` (inputs done vs left),
    `record` (journal a finished input), `close`."""

    def __init__(self, out: Path, model: Path, settings: dict[str, Any], shard: Optional[tuple[int, int]] = None,
                 overwrite: bool = False) -> None:
        self.out, self.model, self.settings, self.overwrite = out, model, settings, overwrite
        self.state = out / STATE
        self.journal_name = f"done-shard-{shard[0]}-of-{shard[1]}.jsonl" if shard else "done.jsonl"
        self._journal: Optional[TextIO] = None
        self.fresh = overwrite  # nothing in OUT counts as done (no manifest yet, or --overwrite)
        self.left: Optional[set[Path]] = None  # after `split`: the inputs left to do
        self.done: dict[Path, Record] = {}  # after `split`: the inputs done, with their journal records

    def claim(self) -> None:
        """Check that OUT was written by this model with these settings (or is new), then record them."""
        want = {"model": str(self.model), "sha256": file_digest(self.model), "settings": self.settings}
        path = self.state / MANIFEST
        have = _read_json(path)
        if have is not None and not self.overwrite:
            changed = [k for k in self.settings if have.get("settings", {}).get(k) != self.settings[k]]
            if have.get("sha256") != want["sha256"] or changed:
                what = (f"model {have.get('model')}" if have.get("sha256") != want["sha256"]
                        else "settings " + ", ".join(f"{k} {have['settings'].get(k)}" for k in changed))
                raise UserError(f"{self.out}: holds masks made with another {what}; pass --overwrite to redo every "
                                "input there with this one, or choose another -o")
            return
        # no manifest: whatever OUT holds was not written by a resumable run of this model; redo it all
        self.fresh = True
        make_dirs(self.state)
        if self.overwrite:
            for old in self.state.glob("done*.jsonl"):
                old.unlink(missing_ok=True)
        atomic_write_bytes(path, json.dumps({**want, "segcli_version": __version__}, indent=1).encode())

    def split(self, inputs: list[Path], plan: dict[Path, Path], outputs: Outputs, need_record: bool = False,
              want_records: bool = False) -> tuple[set[Path], dict[Path, Record]]:
        """(the inputs left to do, the inputs done: those whose outputs all exist; with `need_record`,
        only those with a journal line), the journal's records read when `need_record` or
        `want_records`. Removes the left inputs' leftover temporary files."""
        present, temps = _listing(self.out)
        records = self.records() if (need_record or want_records) and not self.fresh else {}
        left: set[Path] = set()
        done: dict[Path, Record] = {}
        for p in inputs:
            paths = outputs.paths(plan[p])
            key = str(p)
            if not self.fresh and all(present.get(q.name, 0) > 0 for q in paths) and (
                    key in records or not need_record):
                done[p] = records.get(key, Record(None, None))
                continue
            left.add(p)
            for q in paths:
                for tmp in temps.get(q.name, ()):
                    (self.out / tmp).unlink(missing_ok=True)
        self.left, self.done = left, done
        return left, done

    def records(self) -> dict[str, Record]:
        """Every journal's lines (all shards'); a line cut short by a kill is ignored."""
        found: dict[str, Record] = {}
        for path in sorted(self.state.glob("done*.jsonl")):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    try:
                        d = json.loads(line)
                        found[d["input"]] = Record(d.get("quality"), d.get("fractions"))
                    except (ValueError, KeyError, TypeError):
                        continue
        return found

    def record(self, input: Path, quality: Optional[float], fractions: list[float]) -> None:
        """Journal a finished input (its outputs are on disk already)."""
        if self._journal is None:
            make_dirs(self.state)
            try:
                self._journal = open(self.state / self.journal_name, "a", encoding="utf-8")
            except OSError as e:
                raise write_error(self.state / self.journal_name, e) from None
        # one write per line, flushed: a kill loses at most the line being written
        self._journal.write(json.dumps({"input": str(input), "quality": quality, "fractions": fractions}) + "\n")
        self._journal.flush()

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None


def _read_json(path: Path) -> Optional[dict[str, Any]]:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        return d if isinstance(d, dict) else None
    except (OSError, ValueError):
        return None


def _listing(folder: Path) -> tuple[dict[str, int], dict[str, list[str]]]:
    """(file name -> size, target name -> leftover temporary files `.NAME.XXXX.tmp`) in one scan."""
    sizes: dict[str, int] = {}
    temps: dict[str, list[str]] = {}
    try:
        entries: Iterable[os.DirEntry[str]] = os.scandir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return sizes, temps
    with entries:  # type: ignore[attr-defined]
        for e in entries:
            if e.name.startswith(".") and e.name.endswith(".tmp"):
                target = e.name[1:].rsplit(".", 2)[0]
                temps.setdefault(target, []).append(e.name)
                continue
            try:
                sizes[e.name] = e.stat().st_size
            except OSError:
                continue
    return sizes, temps
