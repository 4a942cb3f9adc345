"""`segcli select` end to end: the list, the JSON, the head-start folder (PNG and COCO), diversity
over copies, the labelled images skipped, .onnx models, unreadable pool images, the entropy
fallback, random draws and bad options."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_cli


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.strip().splitlines()]


def _pool(src: Path, dst: Path, n: int = 0) -> Path:
    """A folder of the images under src (the first n; 0: all)."""
    dst.mkdir(parents=True, exist_ok=True)
    for p in sorted(src.iterdir())[: n or None]:
        shutil.copyfile(p, dst / p.name)
    return dst


def test_select_writes_the_list_images_and_suggested_masks(fitted_multi: Path, multiclass_data: Path,
                                                          tmp_path: Path) -> None:
    pool = _pool(multiclass_data / "train" / "images", tmp_path / "pool")
    nxt = tmp_path / "next"
    r = run_cli(["select", pool, "--count", "5", "-o", nxt], cwd=fitted_multi)
    assert r.code == 0, r.err
    listed = r.out.strip().splitlines()
    assert len(listed) == len(set(listed)) == 5 and all(Path(p).parent == pool for p in listed)
    assert (nxt / "list.txt").read_text().splitlines() == listed
    assert "picked 5 of 8 pool image(s) by estimated mIoU" in r.err
    for p in map(Path, listed):
        assert (nxt / "images" / p.name).read_bytes() == p.read_bytes()
        want = tmp_path / "want" / p.name
        assert run_cli(["predict", p, "-o", want], cwd=fitted_multi).code == 0
        assert (nxt / "masks" / p.name).read_bytes() == want.read_bytes()  # the mask predict writes
        assert Image.open(nxt / "error_maps" / p.name).size == Image.open(p).size
    saved = json.loads((nxt / "selection.json").read_text())
    assert [e["image"] for e in saved["picked"]] == listed and saved["pool"] == 8 and saved["strategy"] == "quality"
    # the folder is a dataset segcli reads (after a person corrects the masks)
    assert run_cli(["check", nxt], cwd=fitted_multi).code == 0


def test_json_gives_each_estimate_and_why(fitted_multi: Path, multiclass_data: Path, tmp_path: Path) -> None:
    pool = _pool(multiclass_data / "train" / "images", tmp_path / "pool")
    r = run_cli(["select", pool, "-n", "3", "--json", "--no-diversity"], cwd=fitted_multi)
    assert r.code == 0, r.err
    picks = _lines(r.out)
    q = run_cli(["predict", pool, "--quality", "--json", "-o", tmp_path / "q"], cwd=fitted_multi)
    estimates = sorted(line["quality"] for line in _lines(q.out))
    assert [p["estimate"] for p in picks] == pytest.approx(estimates[:3], abs=2e-3)  # the 3 lowest
    assert [p["pool_rank"] for p in picks] == [1, 2, 3] and [p["rank"] for p in picks] == [1, 2, 3]
    assert "estimated mIoU" in picks[0]["why"] and "lowest of 8" in picks[0]["why"]
    apart = _lines(run_cli(["select", pool, "-n", "3", "--json", "--spread", "apart"], cwd=fitted_multi).out)
    assert apart[0]["image"] == picks[0]["image"] and apart[1]["distance"] > 0 and "unlike" in apart[1]["why"]
    spread = _lines(run_cli(["select", pool, "-n", "3", "--json"], cwd=fitted_multi).out)
    assert spread[0]["image"] == picks[0]["image"]  # the pool's worst is the worst of its part
    assert all("similar pool image(s): its share of the pool" in p["why"] for p in spread) and spread[1]["distance"] > 0


def test_spread_gives_each_kind_its_share_of_the_pool(fitted_multi: Path, multiclass_data: Path, tmp_path: Path) -> None:
    sources = sorted((multiclass_data / "train" / "images").iterdir())[:2]
    pool = tmp_path / "frames"
    pool.mkdir()
    for i in range(12):  # a common kind of image (9 frames) and a rare one (3 frames)
        shutil.copyfile(sources[0] if i < 9 else sources[1], pool / f"f{i:02d}.png")
    picks = run_cli(["select", pool, "-n", "4"], cwd=fitted_multi)
    assert picks.code == 0, picks.err
    rare = [p for p in picks.out.split() if Path(p).name >= "f09"]
    assert len(rare) == 1, picks.out  # 9:3 = 3:1
    assert "the most promising of 9 similar pool image(s)" in run_cli(["select", pool, "-n", "4", "--json"],
                                                                      cwd=fitted_multi).out


@pytest.mark.parametrize("spread", ["pool", "apart"])
def test_diversity_skips_copies_of_a_picked_image(fitted_multi: Path, multiclass_data: Path, tmp_path: Path,
                                                  spread: str) -> None:
    sources = sorted((multiclass_data / "train" / "images").iterdir())[:3]
    pool = tmp_path / "frames"
    pool.mkdir()
    for i in range(12):  # three "videos" of four identical frames each, interleaved
        shutil.copyfile(sources[i % 3], pool / f"f{i:02d}.png")
    origin = {f"f{i:02d}.png": i % 3 for i in range(12)}
    plain = run_cli(["select", pool, "-n", "3", "--no-diversity", "--json"], cwd=fitted_multi)
    diverse = run_cli(["select", pool, "-n", "3", "--json", "--spread", spread], cwd=fitted_multi)
    assert plain.code == 0 and diverse.code == 0, plain.err + diverse.err
    assert len({origin[Path(p["image"]).name] for p in _lines(plain.out)}) == 1  # three copies of the worst
    assert {origin[Path(p["image"]).name] for p in _lines(diverse.out)} == {0, 1, 2}
    everything = run_cli(["select", pool, "-n", "20", "--spread", spread], cwd=fitted_multi)
    assert sorted(everything.out.split()) == sorted(str(p) for p in pool.iterdir())  # each once


def test_labelled_images_are_skipped(fitted_multi: Path, multiclass_data: Path, tmp_path: Path) -> None:
    pool = _pool(multiclass_data / "train" / "images", tmp_path / "pool")
    labelled = tmp_path / "labelled"
    _pool(pool, labelled / "images", 5)  # five pool images already have masks (flat layout)
    _pool(multiclass_data / "train" / "masks", labelled / "masks", 5)
    done = {p.name for p in (labelled / "images").iterdir()}
    r = run_cli(["select", pool, "-n", "5", "--labeled", labelled], cwd=fitted_multi)
    assert r.code == 0, r.err
    picked = {Path(p).name for p in r.out.split()}
    assert len(picked) == 3 and not picked & done  # only 3 were left
    assert "5 already labelled" in r.err
    every = run_cli(["select", *[labelled / "images" / n for n in sorted(done)], "-n", "1", "--labeled", labelled],
                    cwd=fitted_multi)
    assert every.code == 2 and "nothing to select" in every.err


def test_onnx_model_picks_as_the_checkpoint(fitted_binary: Path, binary_data: Path, tmp_path: Path) -> None:
    r = run_cli(["export", "-o", tmp_path / "m.onnx"], cwd=fitted_binary)
    assert r.code == 0, r.err
    out = {}
    for model in (tmp_path / "m.onnx", next(fitted_binary.glob("runs/train/*/weights/best.pt"))):
        r = run_cli(["select", binary_data / "images", "-n", "4", "--json", "--model", model, "--precision", "32",
                     "-o", tmp_path / model.suffix[1:]], cwd=fitted_binary)
        assert r.code == 0, r.err
        out[model.suffix] = _lines(r.out)
        assert "Dice" in out[model.suffix][0]["why"]  # binary models estimate the foreground Dice
    assert [p["estimate"] for p in out[".onnx"]] == pytest.approx([p["estimate"] for p in out[".pt"]], abs=2e-3)
    assert len(list((tmp_path / "onnx" / "masks").iterdir())) == 4
    script = ("import sys; sys.modules['torch'] = None  # an inference-only install: any `import torch` fails\n"
              "from segcli.cli import main; main(sys.argv[1:])")
    root = str(Path(__file__).resolve().parents[2])
    r = subprocess.run([sys.executable, "-c", script, "select", str(binary_data / "images"), "-n", "2", "--model",
                        str(tmp_path / "m.onnx"), "-o", str(tmp_path / "nt"), "--format", "coco"],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": root})
    assert r.returncode == 0 and len(r.stdout.split()) == 2, r.stderr


def test_unreadable_pool_images_are_named_and_skipped(fitted_multi: Path, multiclass_data: Path,
                                                      tmp_path: Path) -> None:
    pool = _pool(multiclass_data / "train" / "images", tmp_path / "pool", 4)
    broken = pool / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    r = run_cli(["select", pool, "-n", "3", "--json", "-o", tmp_path / "next"], cwd=fitted_multi)
    assert r.code == 2 and str(broken) in r.err and "Traceback" not in r.err
    assert "could not be read" in r.err.strip().splitlines()[-1]
    picks = _lines(r.out)
    assert len(picks) == 3 and all("broken" not in p["image"] for p in picks)
    assert "of 4 pool image(s)" in r.err and len(list((tmp_path / "next" / "masks").iterdir())) == 3
    assert json.loads((tmp_path / "next" / "selection.json").read_text())["unreadable"][0]["image"] == str(broken)


def test_a_model_without_estimator_falls_back_to_entropy(fitted_multi: Path, multiclass_data: Path,
                                                         tmp_path: Path) -> None:
    import torch

    state = torch.load(next(fitted_multi.glob("runs/train/*/weights/best.pt")), weights_only=True)
    for key in ("estimator", "estimator_config", "opt_e", "calibration"):
        state.pop(key, None)
    torch.save(state, tmp_path / "old.pt")
    pool = multiclass_data / "train" / "images"
    r = run_cli(["select", pool, "-n", "2", "--json", "--model", tmp_path / "old.pt"])
    assert r.code == 0, r.err
    notes = [line for line in r.err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "ranking by entropy" in notes[0]
    picks = _lines(r.out)
    assert all(p["estimate"] is None and 0 < p["entropy"] <= 1 for p in picks)
    direct = _lines(run_cli(["select", pool, "-n", "2", "--json", "--strategy", "entropy", "--no-diversity"],
                            cwd=fitted_multi).out)
    assert direct[0]["entropy"] >= direct[1]["entropy"] and "highest of 8" in direct[0]["why"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools under NumPy 2
def test_coco_head_start_reads_back_as_the_masks(fitted_multi: Path, multiclass_data: Path, tmp_path: Path) -> None:
    from segcli.data import discover
    from segcli.data.io import read_mask

    pool = multiclass_data / "train" / "images"
    r = run_cli(["select", pool, "-n", "3", "--format", "coco", "-o", tmp_path / "coco"], cwd=fitted_multi)
    assert r.code == 0, r.err
    assert not (tmp_path / "coco" / "masks").exists()
    splits = discover(tmp_path / "coco", 0.0, 0)
    assert splits.classes == ["background", "shape1", "shape2", "shape3"]
    samples = [*splits.train, *splits.val]
    assert sorted(s.image.name for s in samples) == sorted(Path(p).name for p in r.out.split())
    for s in samples:
        want = tmp_path / "want" / s.image.name
        assert run_cli(["predict", s.image, "-o", want], cwd=fitted_multi).code == 0
        truth = np.array(Image.open(want))
        assert np.array_equal(read_mask(s.mask), truth) and len(np.unique(truth)) > 1


def test_random_is_seeded_and_needs_no_model(multiclass_data: Path, tmp_path: Path) -> None:
    pool = multiclass_data / "train" / "images"
    runs = [run_cli(["select", pool, "-n", "4", "--strategy", "random", "--seed", s], cwd=tmp_path)
            for s in ("1", "1", "2")]
    assert all(r.code == 0 for r in runs), runs[0].err
    assert runs[0].out == runs[1].out and runs[0].out != runs[2].out and len(set(runs[0].out.split())) == 4


def test_bad_options(fitted_multi: Path, multiclass_data: Path, tmp_path: Path) -> None:
    pool = multiclass_data / "train" / "images"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    for args, message in ((["-n", "0"], "--count 0"), (["-n", "2", "--strategy", "best"], "--strategy best"),
                          (["-n", "2", "--format", "coco"], "pass -o"), (["-n", "2", "--format", "voc", "-o", "x"], "--format voc"),
                          (["-n", "2", "-o", tmp_path / "full"], "not empty"),
                          (["-n", "2", "--labeled", tmp_path / "none"], "not found")):
        r = run_cli(["select", pool, *args], cwd=fitted_multi)
        assert r.code == 2 and message in r.err and r.err.count("\n") == 1, (args, r.err)
