"""Every kind of bad input gives exit 2 and one `error:` line naming the file, with no traceback."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from segcli.data.synthetic import make_dataset
from tests.conftest import TINY, CliResult, run_cli, save_png


def one_error(r: CliResult, *needles: str, code: int = 2) -> str:
    """The single `error:` line of a failed command, checked for the exit code and the needles."""
    assert r.code == code, (r.code, r.err)
    assert "Traceback" not in r.err and "Traceback" not in r.out
    lines = [ln for ln in r.err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, r.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 binary pairs, 32x32: copied and damaged by each case."""
    return make_dataset(tmp_path_factory.mktemp("base"), count=8, size=(32, 32), classes=2)


@pytest.fixture(scope="module")
def base_multi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("base_multi"), count=8, size=(32, 32), classes=4, classes_file=True)


def _truncate(p: Path, keep: float = 0.5) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: int(len(data) * keep)])


# Each case damages a copy of a good dataset `d` and returns the file the error must name.
def _missing_masks(d: Path) -> list[str]:
    for n in ("img002", "img005"):
        (d / "masks" / f"{n}.png").unlink()
    return ["img002.png", "img005.png", "images without masks"]


def _missing_image(d: Path) -> list[str]:
    (d / "images" / "img006.png").unlink()
    return ["img006.png", "masks without images"]


def _text_as_image(d: Path) -> list[str]:
    (d / "images" / "img007.png").write_text("not an image")
    return ["img007.png"]


def _truncated_png(d: Path) -> list[str]:
    _truncate(d / "images" / "img007.png")
    return ["img007.png"]


def _truncated_mask(d: Path) -> list[str]:
    _truncate(d / "masks" / "img004.png", 0.6)
    return ["img004.png"]


def _random_bytes_mask(d: Path) -> list[str]:
    (d / "masks" / "img003.png").write_bytes(np.random.default_rng(0).bytes(300))
    return ["img003.png"]


def _mask_size(d: Path) -> list[str]:
    save_png(d / "masks" / "img005.png", np.zeros((16, 32), np.uint8))
    return ["img005.png", "size"]


def _rgb_mask(d: Path) -> list[str]:
    arr = np.zeros((32, 32, 3), np.uint8)
    arr[:8, :8] = (255, 0, 0)
    save_png(d / "masks" / "img001.png", arr)
    return ["img001.png", "colour"]


def _classes_vs_binary_masks(d: Path) -> list[str]:
    (d / "classes.txt").write_text("background\ncell\nnucleus\n")
    return ["classes.txt", "3 classes"]


def _classes_not_utf8(d: Path) -> list[str]:
    (d / "classes.txt").write_bytes(b"\xff\xfe\x00b\x00g")
    return ["classes.txt", "UTF-8"]


def _classes_blank_line(d: Path) -> list[str]:
    (d / "classes.txt").write_text("background\n\nforeground\n")
    return ["classes.txt"]


def _no_images_dir(d: Path) -> list[str]:
    shutil.rmtree(d / "images")
    shutil.rmtree(d / "masks")
    return [str(d)]


def _empty_images(d: Path) -> list[str]:
    for p in list((d / "images").iterdir()) + list((d / "masks").iterdir()):
        p.unlink()
    return ["images", "no images"]


def _no_masks_dir(d: Path) -> list[str]:
    shutil.rmtree(d / "masks")
    return ["masks", "not found"]


def _split_without_val(d: Path) -> list[str]:
    (d / "train").mkdir()
    shutil.move(str(d / "images"), d / "train" / "images")
    shutil.move(str(d / "masks"), d / "train" / "masks")
    return ["val"]


DAMAGE: dict[str, Callable[[Path], list[str]]] = {
    "images without masks": _missing_masks,
    "masks without images": _missing_image,
    "non-image file": _text_as_image,
    "truncated image": _truncated_png,
    "truncated mask": _truncated_mask,
    "random-bytes mask": _random_bytes_mask,
    "mask size differs": _mask_size,
    "RGB colour mask": _rgb_mask,
    "classes.txt vs binary masks": _classes_vs_binary_masks,
    "classes.txt not UTF-8": _classes_not_utf8,
    "classes.txt blank line": _classes_blank_line,
    "no images/ folder": _no_images_dir,
    "empty images/": _empty_images,
    "no masks/ folder": _no_masks_dir,
    "split without val/": _split_without_val,
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_bad_dataset_is_one_clean_line(case: str, base: Path, tmp_path: Path) -> None:
    d = tmp_path / "data"
    shutil.copytree(base, d)
    needles = DAMAGE[case](d)
    r = run_cli(["train", d, "--epochs", "1", *TINY], cwd=tmp_path)
    one_error(r, *needles)
    assert not (tmp_path / "runs").exists()  # refused before any run folder was made


def test_missing_dataset_folder(tmp_path: Path) -> None:
    one_error(run_cli(["train", tmp_path / "nowhere", *TINY], cwd=tmp_path), "nowhere", "not found")
    (tmp_path / "file.txt").write_text("x")
    one_error(run_cli(["train", tmp_path / "file.txt", *TINY], cwd=tmp_path), "file.txt", "not a folder")
    one_error(run_cli(["train", *TINY], cwd=tmp_path), "DATA")


def test_mask_value_outside_classes(base_multi: Path, tmp_path: Path) -> None:
    d = tmp_path / "data"
    shutil.copytree(base_multi, d)
    bad = d / "masks" / "img006.png"
    arr = np.array(Image.open(bad))
    arr[3, 3] = 7
    save_png(bad, arr)
    one_error(run_cli(["train", d, "--epochs", "1", *TINY], cwd=tmp_path), "img006.png", "classes.txt", "--ignore-index 7")


@pytest.mark.parametrize("fmt, cache", [("png", True), ("jpg", False), ("tif", False), ("bmp", True)])
def test_damaged_image_late_in_list_fails_before_training(fmt: str, cache: bool, tmp_path: Path) -> None:
    """The last of 24 images is truncated: the run must refuse before its first epoch."""
    d = make_dataset(tmp_path / "data", count=24, size=(48, 48), classes=2)
    last = d / "images" / "img023.png"
    target = last.with_suffix(f".{fmt}")
    if fmt != "png":
        Image.open(last).save(target)
        last.unlink()
    _truncate(target, 0.7)
    args = ["train", d, "--epochs", "1", *TINY] + ([] if cache else ["--no-cache"])
    one_error(run_cli(args, cwd=tmp_path), target.name)
    assert not (tmp_path / "runs").exists()  # no epoch ran, no run folder


@pytest.mark.parametrize("option, value, needle", [
    ("--lr", "-1", "--lr"), ("--lr", "nan", "--lr"), ("--lr-d", "-1", "--lr-d"),
    ("--batch-size", "-1", "--batch-size"), ("--epochs", "-2", "--epochs"),
    ("--img-size", "7", "--img-size"), ("--img-size", "-32", "--img-size"),
    ("--depth", "0", "--depth"), ("--depth", "12", "--depth"), ("--base-channels", "0", "--base-channels"),
    ("--base-channels", "2000", "--base-channels"), ("--val-split", "1.5", "--val-split"),
    ("--precision", "8", "--precision"), ("--workers", "-2", "--workers"), ("--patience", "-2", "--patience"),
    ("--adv-weight", "-0.5", "--adv-weight"), ("--adv-warmup", "-2", "--adv-warmup"),
    ("--ignore-index", "-1", "--ignore-index"), ("--gan", "wgan", "--gan"), ("--encoder", "vit", "encoder"),
    ("--discriminator", "huge", "discriminator"), ("--unlabeled", "no_such_dir", "--unlabeled"), ("--time", "0", "--time"), ("--device", "tpu", "--device"),
])
def test_invalid_option_values(option: str, value: str, needle: str, base: Path, tmp_path: Path) -> None:
    # after TINY, so the bad value is the one in force
    r = run_cli(["train", base, "--epochs", "1", *TINY, option, value], cwd=tmp_path)
    one_error(r, needle, value)
    assert not (tmp_path / "runs").exists()


def test_bad_config_files(base: Path, tmp_path: Path) -> None:
    one_error(run_cli(["train", base, "--config", "nope.yaml"], cwd=tmp_path), "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    one_error(run_cli(["train", base, "--config", "list.yaml"], cwd=tmp_path), "list.yaml")
    (tmp_path / "broken.yaml").write_text("epochs: [1\n")
    one_error(run_cli(["train", base, "--config", "broken.yaml"], cwd=tmp_path), "broken.yaml")
    (tmp_path / "neg.yaml").write_text("epochs: 1\nadv_weight: -3\n")
    one_error(run_cli(["train", base, "--config", "neg.yaml", *TINY], cwd=tmp_path), "--adv-weight")
    one_error(run_cli(["train", base, "--batch-size", "many"], cwd=tmp_path), "--batch-size")


# --- model files -----------------------------------------------------------------------------

def _bad_models(folder: Path, good: Path) -> dict[str, tuple[Path, str]]:
    """name -> (model file, what the message must say)."""
    folder.mkdir(exist_ok=True)
    out: dict[str, tuple[Path, str]] = {}
    (folder / "text.pt").write_text("hello")
    out["text file"] = (folder / "text.pt", "not a segcli checkpoint")
    (folder / "random.pt").write_bytes(np.random.default_rng(1).bytes(2000))
    out["random bytes"] = (folder / "random.pt", "not a segcli checkpoint")
    (folder / "empty.pt").write_bytes(b"")
    out["empty file"] = (folder / "empty.pt", "not a segcli checkpoint")
    torch.save(torch.zeros(3), folder / "tensor.pt")
    out["bare tensor"] = (folder / "tensor.pt", "not a segcli checkpoint")
    torch.save({"state_dict": {"w": torch.zeros(1)}}, folder / "foreign.pt")
    out["other framework"] = (folder / "foreign.pt", "not a segcli checkpoint")
    ckpt = torch.load(good, weights_only=True)
    torch.save({**ckpt, "format": 99, "segcli_version": "9.0"}, folder / "newer.pt")
    out["newer format"] = (folder / "newer.pt", "newer segcli")
    torch.save({**ckpt, "generator": {"head.weight": torch.zeros(2)}}, folder / "damaged.pt")
    out["damaged weights"] = (folder / "damaged.pt", "not a usable segcli model")
    data = good.read_bytes()
    (folder / "cut.pt").write_bytes(data[: len(data) // 2])
    out["truncated checkpoint"] = (folder / "cut.pt", "not a segcli checkpoint")
    (folder / "bad.onnx").write_bytes(b"garbage")
    out["garbage onnx"] = (folder / "bad.onnx", "ONNX")
    out["missing"] = (folder / "absent.pt", "not found")
    return out


@pytest.fixture(scope="module")
def bad_models(trained_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    return _bad_models(tmp_path_factory.mktemp("models"), trained_binary / "runs/train/exp/weights/best.pt")


@pytest.mark.parametrize("case", ["text file", "random bytes", "empty file", "bare tensor", "other framework",
                                  "newer format", "damaged weights", "truncated checkpoint", "garbage onnx", "missing"])
@pytest.mark.parametrize("command", ["predict", "evaluate", "export"])
def test_bad_model_file(case: str, command: str, bad_models: dict, binary_data: Path, tmp_path: Path) -> None:
    model, needle = bad_models[case]
    if command == "export" and model.suffix == ".onnx":
        pytest.skip("export reads checkpoints only")
    args = {
        "predict": ["predict", binary_data / "images" / "img000.png", "--model", model, "-o", "m.png"],
        "evaluate": ["evaluate", binary_data, "--model", model],
        "export": ["export", "--model", model, "-o", "x.onnx"],
    }[command]
    one_error(run_cli(args, cwd=tmp_path), model.name, needle)
    assert not list(tmp_path.iterdir())  # nothing written


def test_resume_bad_targets(trained_binary: Path, bad_models: dict, tmp_path: Path) -> None:
    one_error(run_cli(["train", "--resume", bad_models["newer format"][0]], cwd=tmp_path), "newer.pt")
    best = trained_binary / "runs/train/exp/weights/best.pt"
    one_error(run_cli(["train", "--resume", best], cwd=tmp_path), "best.pt", "last.pt")
    (tmp_path / "runs/train/dead/weights").mkdir(parents=True)  # killed before epoch 1 ended
    one_error(run_cli(["train", "--resume", "runs/train/dead"], cwd=tmp_path), "last.pt", "start the run again")
    one_error(run_cli(["train", "--resume"], cwd=tmp_path / "runs/train/dead"), "nothing to resume")


# --- outputs ---------------------------------------------------------------------------------

def test_output_never_overwrites_an_input(trained_binary: Path, binary_data: Path, tmp_path: Path) -> None:
    d = tmp_path / "imgs"
    shutil.copytree(binary_data / "images", d)
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    img = d / "img003.png"
    one_error(run_cli(["predict", img, "-o", img], cwd=trained_binary), "img003.png", "overwrite an input")
    one_error(run_cli(["predict", d, "-o", d], cwd=trained_binary), "overwrite an input")
    best = trained_binary / "runs/train/exp/weights/best.pt"
    one_error(run_cli(["export", "--model", best, "--format", "torchscript", "-o", best], cwd=tmp_path),
              "best.pt", "overwrite")
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    torch.load(best, weights_only=True)  # still a checkpoint


def test_predict_missing_and_empty_inputs(trained_binary: Path, tmp_path: Path) -> None:
    one_error(run_cli(["predict", tmp_path, "--threshold", "7"], cwd=trained_binary), "--threshold")
    one_error(run_cli(["predict", tmp_path, "--batch-size", "0"], cwd=trained_binary), "--batch-size")
    one_error(run_cli(["predict", tmp_path / "ghost.png", "-o", tmp_path / "o"], cwd=trained_binary), "ghost.png", "not found")
    (tmp_path / "empty").mkdir()
    one_error(run_cli(["predict", tmp_path / "empty", "-o", tmp_path / "o"], cwd=trained_binary), "empty", "no images")
    one_error(run_cli(["predict", str(tmp_path / "*.png"), "-o", tmp_path / "o"], cwd=trained_binary), "matches no images")
    one_error(run_cli(["predict", "-", "-o", tmp_path / "o"], cwd=trained_binary, stdin=""), "standard input")


def test_unwritable_output_paths(binary_data: Path, trained_binary: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("a regular file where a folder should be")
    one_error(run_cli(["train", binary_data, "--epochs", "1", *TINY, "--project", blocker / "runs"], cwd=tmp_path),
              str(blocker / "runs"))
    img = binary_data / "images" / "img000.png"
    r = run_cli(["predict", img, "-o", blocker / "out"], cwd=trained_binary)
    one_error(r, str(blocker), code=r.code)
    assert r.code in (1, 2)
    assert blocker.read_text().startswith("a regular file")
