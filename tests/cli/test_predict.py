"""`segcli predict` end to end: every kind of source, the files it writes, tiling, TTA, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segcli.data.synthetic import make_pair
from tests.conftest import run_cli, save_png


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix == ".png")


def _listed(folder: Path) -> list[str]:
    """The files predict wrote in a folder (its state folder .segcli-predict/ aside)."""
    return sorted(p.name for p in folder.iterdir() if p.name != ".segcli-predict")


def _check_binary(mask_path: Path, image_path: Path) -> np.ndarray:
    mask = Image.open(mask_path)
    assert mask.mode == "L" and mask.size == Image.open(image_path).size
    arr = np.array(mask)
    assert set(np.unique(arr).tolist()) <= {0, 255}
    return arr


def test_folder_with_overlays_writes_every_mask(fitted_binary: Path, binary_data: Path) -> None:
    r = run_cli(["predict", binary_data / "images", "-o", "out_dir", "--overlay"], cwd=fitted_binary)
    assert r.code == 0, r.err
    images = _images(binary_data / "images")
    written = _listed(fitted_binary / "out_dir")
    assert written == sorted([f"{p.stem}.png" for p in images] + [f"{p.stem}_overlay.png" for p in images])
    for img in images:
        mask = _check_binary(fitted_binary / "out_dir" / f"{img.stem}.png", img)
        truth = np.array(Image.open(binary_data / "masks" / img.name))
        assert (mask == truth).mean() > 0.8  # a real mask, not one class everywhere
        ov = np.array(Image.open(fitted_binary / "out_dir" / f"{img.stem}_overlay.png"))
        src = np.array(Image.open(img))
        assert ov.shape == src.shape
        assert (ov[mask == 0] == src[mask == 0]).all()  # background untouched, foreground tinted
        assert (ov[mask == 255] != src[mask == 255]).any(axis=-1).mean() > 0.9


def test_single_file_to_named_mask(trained_binary: Path, binary_data: Path) -> None:
    img = _images(binary_data / "images")[3]
    r = run_cli(["predict", img, "-o", "sub/mask.png"], cwd=trained_binary)
    assert r.code == 0, r.err
    _check_binary(trained_binary / "sub" / "mask.png", img)
    assert sorted(p.name for p in (trained_binary / "sub").iterdir()) == ["mask.png"]


def test_quoted_glob_selects_matching_images(trained_binary: Path, binary_data: Path) -> None:
    pattern = str(binary_data / "images" / "img00[0-4].png")
    r = run_cli(["predict", pattern, "-o", "globbed"], cwd=trained_binary)
    assert r.code == 0, r.err
    assert _listed(trained_binary / "globbed") == [f"img00{i}.png" for i in range(5)]


def test_paths_on_stdin_with_json_lines(trained_binary: Path, binary_data: Path) -> None:
    chosen = _images(binary_data / "images")[5:8]
    stdin = "\n".join(str(p) for p in chosen) + "\n\n"
    r = run_cli(["predict", "-", "-o", "from_stdin", "--json"], cwd=trained_binary, stdin=stdin)
    assert r.code == 0, r.err
    lines = [json.loads(line) for line in r.out.splitlines()]
    assert [d["input"] for d in lines] == [str(p) for p in chosen]  # input order, one line each
    for d, img in zip(lines, chosen):
        _check_binary(Path(d["output"]) if Path(d["output"]).is_absolute() else trained_binary / d["output"], img)
        assert abs(sum(d["fractions"]) - 1) < 1e-4 and d["error"] is None


def test_mixed_sizes_and_channels_in_one_batched_call(trained_binary: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    sizes = [(48, 48), (31, 77), (48, 48), (64, 40), (48, 48), (17, 23)]
    for i, size in enumerate(sizes):
        image, _ = make_pair(rng, size, 2, 3 if i % 2 == 0 else 1)
        save_png(tmp_path / "mixed" / f"m{i}.png", image if i % 2 == 0 else image[..., 0])
    r = run_cli(["predict", tmp_path / "mixed", "-o", tmp_path / "masks", "--batch-size", "3"], cwd=trained_binary)
    assert r.code == 0, r.err
    for img in _images(tmp_path / "mixed"):
        _check_binary(tmp_path / "masks" / img.name, img)


def test_batch_size_does_not_change_masks(fitted_binary: Path, binary_data: Path, tmp_path: Path) -> None:
    for b in (1, 5):
        r = run_cli(["predict", binary_data / "images", "-o", tmp_path / f"b{b}", "-b", b, "--precision", "32"],
                    cwd=fitted_binary)
        assert r.code == 0, r.err
    for img in _images(binary_data / "images"):
        a, b = (np.array(Image.open(tmp_path / d / img.name)) for d in ("b1", "b5"))
        assert set(np.unique(a)) == {0, 255}  # a real mask: a mix-up of images in a batch would show
        assert (a == b).mean() > 0.999


def test_multiclass_palette_png_holds_class_indices(trained_multi: Path, multiclass_data: Path) -> None:
    r = run_cli(["predict", multiclass_data / "val" / "images", "-o", "pal", "--overlay"], cwd=trained_multi)
    assert r.code == 0, r.err
    from segcli.visualize import palette

    for img in _images(multiclass_data / "val" / "images"):
        mask = Image.open(trained_multi / "pal" / f"{img.stem}.png")
        assert mask.mode == "P" and mask.size == Image.open(img).size
        assert np.array(mask).max() < 4
        assert mask.getpalette()[: 4 * 3] == palette()[:4].ravel().tolist()  # fixed distinct colours


def test_classes_txt_colours_become_the_palette(trained_multi: Path, multiclass_data: Path, tmp_path: Path) -> None:
    """`name R G B` / `name #RRGGBB` lines in classes.txt give the mask palette and overlay colours."""
    import shutil

    data = tmp_path / "coloured"
    shutil.copytree(multiclass_data, data)
    (data / "classes.txt").write_text("background 0 0 0\nroad 128 64 128\nsky #4682b4\ntree\n")
    r = run_cli(["train", data, "--epochs", "1", "--base-channels", "4", "--depth", "2", "--img-size", "32",
                 "--precision", "32", "--name", "col"], cwd=tmp_path)
    assert r.code == 0, r.err
    img = _images(data / "val" / "images")[0]
    r = run_cli(["predict", img, "-o", "m.png", "--model", "runs/train/col"], cwd=tmp_path)
    assert r.code == 0, r.err
    pal = Image.open(tmp_path / "m.png").getpalette()[:12]
    from segcli.visualize import palette

    assert pal == [0, 0, 0, 128, 64, 128, 70, 130, 180, *palette()[3].tolist()]
    r = run_cli(["evaluate", data, "--json", "--model", "runs/train/col"], cwd=tmp_path)
    assert [c["name"] for c in json.loads(r.out)["per_class"]] == ["background", "road", "sky", "tree"]


def test_save_probs_and_threshold(fitted_binary: Path, binary_data: Path, tmp_path: Path) -> None:
    img = _images(binary_data / "images")[0]
    r = run_cli(["predict", img, "-o", tmp_path / "p" / "a.png", "--save-probs"], cwd=fitted_binary)
    assert r.code == 0, r.err
    probs = np.load(tmp_path / "p" / "a_probs.npy")
    mask = _check_binary(tmp_path / "p" / "a.png", img)
    assert probs.dtype == np.float16 and probs.shape == (1,) + mask.shape
    assert 0 <= probs.min() and probs.max() <= 1
    p = probs[0].astype(np.float32)
    fg = {}
    for t in (0.1, 0.5, 0.9):
        out = tmp_path / f"t{t}.png"
        r = run_cli(["predict", img, "-o", out, "--threshold", t], cwd=fitted_binary)
        assert r.code == 0, r.err
        m = np.array(Image.open(out)) == 255
        clear = np.abs(p - t) > 0.01  # float16 rounding aside
        assert (m == (p > t))[clear].all()
        fg[t] = m.mean()
    assert fg[0.1] >= fg[0.5] >= fg[0.9] and fg[0.1] > fg[0.9] and 0 < fg[0.5] < 1


def test_multiclass_probs_sum_to_one(fitted_multi: Path, multiclass_data: Path, tmp_path: Path) -> None:
    img = _images(multiclass_data / "val" / "images")[0]
    r = run_cli(["predict", img, "-o", tmp_path / "mc", "--save-probs"], cwd=fitted_multi)
    assert r.code == 0, r.err
    probs = np.load(tmp_path / "mc" / f"{img.stem}_probs.npy").astype(np.float32)
    mask = np.array(Image.open(tmp_path / "mc" / f"{img.stem}.png"))
    assert probs.shape == (4,) + mask.shape
    np.testing.assert_allclose(probs.sum(0), 1, atol=5e-3)
    top2 = np.sort(probs, 0)
    clear = top2[-1] - top2[-2] > 0.01
    assert (probs.argmax(0) == mask)[clear].all()
    assert len(np.unique(mask)) > 1


def _big_image(path: Path, size: tuple[int, int], seed: int = 3) -> Path:
    """A mosaic of 48-pixel synthetic scenes (the scale the test models learnt), cropped to `size`."""
    rng = np.random.default_rng(seed)
    rows, cols = -(-size[0] // 48), -(-size[1] // 48)
    grid = [[make_pair(rng, (48, 48), 2, 3)[0] for _ in range(cols)] for _ in range(rows)]
    mosaic = np.concatenate([np.concatenate(r, axis=1) for r in grid], axis=0)
    return save_png(path, np.ascontiguousarray(mosaic[: size[0], : size[1]]))


def test_tiled_and_untiled_agree_and_auto_tiles_large_images(fitted_binary: Path, tmp_path: Path) -> None:
    """The model trained on 32-pixel patches: a 200x170 image is 'much larger' and tiles by itself."""
    img = _big_image(tmp_path / "big.png", (170, 200))
    masks, probs = {}, {}
    for tag, extra in (("auto", []), ("tile64", ["--tile", "64"]), ("whole", ["--no-tile"]),
                       ("tile96", ["--tile", "96", "--overlap", "0.5"])):
        out = tmp_path / tag / "m.png"
        r = run_cli(["predict", img, "-o", out, "--precision", "32", "--save-probs", *extra], cwd=fitted_binary)
        assert r.code == 0, r.err
        masks[tag] = _check_binary(out, img)
        probs[tag] = np.load(tmp_path / tag / "m_probs.npy").astype(np.float32)
    assert 0.05 < (masks["whole"] == 255).mean() < 0.95  # a real mask, so agreement means something
    assert (masks["auto"] == masks["tile64"]).all()  # automatic = 2x the 32-pixel training patch
    for tag in ("tile64", "tile96"):
        agree = (masks[tag] == masks["whole"]).mean()
        print(f"{tag} vs whole image: {agree:.2%} of pixels agree")
        assert agree > 0.99, tag
        assert np.abs(probs[tag] - probs["whole"]).mean() < 0.02, tag


def test_tta_writes_valid_masks_close_to_plain(fitted_multi: Path, multiclass_data: Path, tmp_path: Path) -> None:
    img = _images(multiclass_data / "val" / "images")[1]
    for tag, extra in (("plain", []), ("tta", ["--tta"])):
        r = run_cli(["predict", img, "-o", tmp_path / f"{tag}.png", *extra], cwd=fitted_multi)
        assert r.code == 0, r.err
    a, b = np.array(Image.open(tmp_path / "plain.png")), np.array(Image.open(tmp_path / "tta.png"))
    assert a.shape == b.shape and b.max() < 4 and (a == b).mean() > 0.9 and len(np.unique(b)) > 1


def test_bad_inputs_among_good_ones(trained_binary: Path, binary_data: Path, tmp_path: Path) -> None:
    good = _images(binary_data / "images")[:3]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    missing = tmp_path / "missing.png"
    src = [good[0], broken, good[1], missing, good[2]]
    r = run_cli(["predict", *src, "-o", tmp_path / "out"], cwd=trained_binary)
    assert r.code == 2
    assert str(broken) in r.err and str(missing) in r.err and "Traceback" not in r.err
    for g in good:
        _check_binary(tmp_path / "out" / g.name, g)
    assert not (tmp_path / "out" / "broken.png").exists()


def test_output_never_overwrites_input(trained_binary: Path, binary_data: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(binary_data / "images", tmp_path / "imgs")
    before = (tmp_path / "imgs" / "img000.png").read_bytes()
    r = run_cli(["predict", tmp_path / "imgs", "-o", tmp_path / "imgs"], cwd=trained_binary)
    assert r.code == 2 and "overwrite" in r.err
    assert (tmp_path / "imgs" / "img000.png").read_bytes() == before


@pytest.mark.parametrize("args,needle", [(["--tile", "64", "--no-tile"], "--no-tile"), (["--threshold", "1.5"], "--threshold"),
                                         (["--overlap", "0.95"], "--overlap"), (["-b", "0"], "--batch-size")])
def test_bad_options_are_one_line_errors(trained_binary: Path, binary_data: Path, args: list[str], needle: str) -> None:
    r = run_cli(["predict", binary_data / "images", "-o", "x", *args], cwd=trained_binary)
    assert r.code == 2 and needle in r.err and "Traceback" not in r.err


def test_onnx_model_gets_tiling_too(fitted_binary: Path, tmp_path: Path) -> None:
    r = run_cli(["export", "--format", "onnx", "-o", tmp_path / "m.onnx"], cwd=fitted_binary)
    assert r.code == 0, r.err
    img = _big_image(tmp_path / "big.png", (150, 140), seed=5)
    for tag, model in (("pt", []), ("onnx", ["--model", tmp_path / "m.onnx"])):
        r = run_cli(["predict", img, "-o", tmp_path / f"{tag}.png", "--tile", "64", "--tta", "--precision", "32", *model],
                    cwd=fitted_binary)
        assert r.code == 0, r.err
    a, b = (np.array(Image.open(tmp_path / f"{t}.png")) for t in ("pt", "onnx"))
    assert (a == b).mean() > 0.999 and 0.05 < (a == 255).mean() < 0.95


def test_onnx_tiled_tta_predict_never_imports_torch(trained_binary: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    r = run_cli(["export", "--format", "onnx", "-o", tmp_path / "m.onnx"], cwd=trained_binary)
    assert r.code == 0, r.err
    img = _big_image(tmp_path / "big.png", (150, 140), seed=6)
    code = ("import sys\nfrom segcli.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\nprint('torch' in sys.modules)")
    args = ["predict", str(img), "--model", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "o.png"),
            "--tile", "64", "--tta", "--overlay", "--save-probs"]
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=trained_binary)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "False" and (tmp_path / "o_probs.npy").is_file()


def test_file_output_with_many_inputs_is_an_error(trained_binary: Path, binary_data: Path, tmp_path: Path) -> None:
    r = run_cli(["predict", binary_data / "images", "-o", tmp_path / "mask.png"], cwd=trained_binary)
    assert r.code == 2 and "pass a folder" in r.err and not (tmp_path / "mask.png").exists()
