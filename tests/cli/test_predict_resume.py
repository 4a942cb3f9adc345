"""predict over an output folder it wrote before: only the work left, never a half-written file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_cli, save_png

ROOT = Path(__file__).resolve().parents[2]


def _many(folder: Path, n: int, size: int = 24) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        save_png(folder / f"im{i:04d}.png", rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return folder


def _outputs(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name != ".segcli-predict")


def _lines(text: str) -> list[dict]:
    return [json.loads(ln) for ln in text.splitlines()]


def test_killed_run_resumed_does_only_the_work_left(trained_binary: Path, tmp_path: Path) -> None:
    """kill -9 half way, then the same command: every output present and readable, nothing redone."""
    images = _many(tmp_path / "imgs", 400)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "segcli", "predict", str(images), "-o", str(out), "--overlay", "-b", "1", "--json"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, cwd=trained_binary, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_dir() and len(list(out.glob("*_overlay.png"))) >= 40:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed half way"
    done_at_kill = {p.name[: -len("_overlay.png")] for p in out.glob("*_overlay.png")} & {p.stem for p in out.glob("im*.png")}
    assert 40 <= len(done_at_kill) < 400

    r = run_cli(["predict", images, "-o", out, "--overlay", "-b", "1", "--json"], cwd=trained_binary)
    assert r.code == 0, r.err
    lines = _lines(r.out)
    assert [d["input"] for d in lines] == [str(p) for p in sorted(images.iterdir())]  # every input, in order
    skipped = {Path(d["input"]).stem for d in lines if d["skipped"]}
    assert skipped == done_at_kill  # exactly the inputs whose outputs were all there: nothing done twice
    assert f"resuming: {len(skipped)} of 400" in r.err and f"{400 - len(skipped)} mask(s) written" in r.err
    names = _outputs(out)
    assert not [n for n in names if n.endswith(".tmp")]  # what the killed run left half-written is gone
    assert len(names) == 800
    for name in names:
        with Image.open(out / name) as im:
            im.load()  # every file complete and readable
    # skipped ones' fractions come from the journal, but for the few written and not yet journalled at the kill
    assert sum(d["fractions"] is None for d in lines) <= 8 and all(d["fractions"] for d in lines if not d["skipped"])

    again = run_cli(["predict", images, "-o", out, "--overlay", "-b", "1"], cwd=trained_binary)
    assert again.code == 0 and "0 mask(s) written" in again.err and "400 already there" in again.err


def test_another_model_or_settings_is_refused_and_overwrite_redoes(trained_binary: Path, fitted_binary: Path,
                                                                   binary_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    first = run_cli(["predict", binary_data / "images", "-o", out], cwd=trained_binary)
    assert first.code == 0, first.err
    other = fitted_binary / "runs" / "train" / "exp" / "weights" / "best.pt"
    for args in (["-m", other], ["--threshold", "0.3"], ["--tta"]):
        r = run_cli(["predict", binary_data / "images", "-o", out, *args], cwd=trained_binary)
        assert r.code == 2 and "--overwrite" in r.err and str(out) in r.err, (args, r.err)
        assert len(r.err.strip().splitlines()) == 1
    r = run_cli(["predict", binary_data / "images", "-o", out, "-m", other, "--overwrite", "--json"], cwd=trained_binary)
    assert r.code == 0, r.err
    assert not any(d["skipped"] for d in _lines(r.out)) and "10 mask(s) written" in r.err
    r = run_cli(["predict", binary_data / "images", "-o", out, "-m", other], cwd=trained_binary)
    assert r.code == 0 and "10 already there" in r.err  # the new model owns the folder now


def test_outputs_asked_for_decide_what_is_done(trained_binary: Path, binary_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    save_png(out / "img000.png", np.zeros((48, 48), np.uint8))  # in OUT before any segcli run: not ours
    r = run_cli(["predict", binary_data / "images", "-o", out, "--json"], cwd=trained_binary)
    assert r.code == 0 and not any(d["skipped"] for d in _lines(r.out)), r.err
    (out / "img003.png").unlink()
    (out / ".img007.png.x1y2z3.tmp").write_bytes(b"half a png")  # as a kill mid-write leaves it
    (out / "img007.png").unlink()
    r = run_cli(["predict", binary_data / "images", "-o", out, "--json"], cwd=trained_binary)
    assert r.code == 0, r.err
    fresh = {Path(d["input"]).name for d in _lines(r.out) if not d["skipped"]}
    assert fresh == {"img003.png", "img007.png"} and not list(out.glob("*.tmp"))
    r = run_cli(["predict", binary_data / "images", "-o", out, "--overlay", "--json"], cwd=trained_binary)
    assert r.code == 0 and not any(d["skipped"] for d in _lines(r.out))  # no overlays yet: all redone
    assert len(list(out.glob("*_overlay.png"))) == 10


def test_quality_ordering_and_review_on_a_resumed_run(fitted_binary: Path, binary_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "q"
    full = run_cli(["predict", binary_data / "images", "-o", out, "--quality", "--json"], cwd=fitted_binary)
    assert full.code == 0, full.err
    quality = {d["input"]: d["quality"] for d in _lines(full.out)}
    for stem in ("img001", "img006"):
        (out / f"{stem}_error.png").unlink()
    r = run_cli(["predict", binary_data / "images", "-o", out, "--sort-by", "quality", "--review", "3", "--json"],
                cwd=fitted_binary)
    assert r.code == 0, r.err
    lines = _lines(r.out)
    assert len(lines) == 10 and sum(not d["skipped"] for d in lines) == 2
    assert [d["quality"] for d in lines] == sorted(quality.values())  # worst first, skipped ones included
    assert {d["input"]: d["quality"] for d in lines} == pytest.approx(quality)
    review = json.loads((out / "review" / "review.json").read_text())
    assert [e["quality"] for e in review] == sorted(quality.values())[:3]


def test_shards_and_renamed_stems_resume(trained_binary: Path, binary_data: Path, tmp_path: Path) -> None:
    twin = tmp_path / "twin"
    for p in sorted((binary_data / "images").iterdir())[:3]:
        save_png(twin / p.name, np.array(Image.open(p)))
    out = tmp_path / "s"
    sources = [binary_data / "images", twin]
    first = [run_cli(["predict", *sources, "-o", out, "--shard", f"{i}/2", "--json"], cwd=trained_binary) for i in (0, 1)]
    assert all(r.code == 0 for r in first), [r.err for r in first]
    names = {d["input"]: d["output"] for r in first for d in _lines(r.out)}
    assert sum(n.endswith("_2.png") for n in names.values()) == 3  # the twins' stems renamed
    (out / Path(names[str(twin / "img001.png")]).name).unlink()
    again = [run_cli(["predict", *sources, "-o", out, "--shard", f"{i}/2", "--json"], cwd=trained_binary) for i in (0, 1)]
    lines = [d for r in again for d in _lines(r.out)]
    assert {d["input"]: d["output"] for d in lines} == names  # the same names
    assert [d["input"] for d in lines if not d["skipped"]] == [str(twin / "img001.png")]
    assert (out / ".segcli-predict" / "done-shard-0-of-2.jsonl").is_file()


def test_progress_on_a_terminal_shows_images_per_second_and_eta(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rich.console import Console

    import segcli.console as console

    buf = io.StringIO()
    monkeypatch.setattr(console, "_err", Console(file=buf, force_terminal=True, width=100))
    progress = console.PredictProgress(4)
    for _ in range(4):
        time.sleep(0.06)
        progress.advance()
    progress.progress.refresh()
    progress.close()
    text = buf.getvalue()
    assert "4/4" in text and "images/s" in text and "ETA" in text, text
    monkeypatch.setattr(console, "_err", Console(file=io.StringIO(), force_terminal=False))
    assert console.PredictProgress(4).progress is None  # not a terminal: no bar


def test_a_resumed_run_reports_its_skipped_inputs_as_it_goes(trained_binary: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Thousands of done inputs must not pile up in the writer's queue (it scans the queue on every
    submit: a queue as long as the inputs made a resumed 100k run quadratic)."""
    from segcli.infer import pipeline
    from segcli.infer.predict import SKIPPED_QUEUE

    images, out = _many(tmp_path / "imgs", 200, size=16), tmp_path / "out"
    cmd = ["predict", images, "-o", out, "--json"]
    first = run_cli(cmd, cwd=trained_binary)
    assert first.code == 0, first.err
    (out / "im0180.png").unlink()  # one input left to do, after a long run of done ones
    longest = [0]
    submit = pipeline.Writer.submit

    def watched(self: pipeline.Writer, job, tag) -> None:  # type: ignore[no-untyped-def]
        longest[0] = max(longest[0], len(self.pending))
        submit(self, job, tag)

    monkeypatch.setattr(pipeline.Writer, "submit", watched)
    r = run_cli(cmd, cwd=trained_binary)
    assert r.code == 0, r.err
    lines = _lines(r.out)
    assert len(lines) == 200 and sum(d["skipped"] for d in lines) == 199
    assert longest[0] <= SKIPPED_QUEUE < 180, f"{longest[0]} results waited in the writer's queue"
