"""Property-based: random bytes and random shapes as images and masks never give anything but
success or a clean DataError/UserError, from the data loader and from `segcli predict`."""

from __future__ import annotations

import io
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from segcli.checkpoint import Checkpoint
from segcli.config import DataInfo, ModelConfig, TrainConfig
from segcli.data import prepare
from segcli.data.dataset import SegDataset, channel_stats
from segcli.data.scan import verify_decodable
from segcli.data.transforms import train_transforms
from segcli.errors import UserError
from segcli.models import build_generator
from tests.conftest import run_cli

EXT = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "BMP": ".bmp", "WEBP": ".webp"}
IMAGE_MODES = ["L", "RGB", "RGBA", "LA", "P", "1", "I;16", "I", "F", "CMYK"]
MASK_MODES = ["L", "P", "1", "I;16", "RGB", "RGBA", "F"]
FUZZ = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _array(rng: np.random.Generator, mode: str, h: int, w: int, values: int) -> np.ndarray:
    if mode in ("RGB", "RGBA", "CMYK"):
        return rng.integers(0, values, (h, w, len(mode)), dtype=np.uint8)
    if mode == "LA":
        return rng.integers(0, values, (h, w, 2), dtype=np.uint8)
    if mode == "I;16":
        return rng.integers(0, max(values, 2) ** 2, (h, w), dtype=np.uint16)
    if mode == "I":
        return rng.integers(-(2**20), 2**20, (h, w)).astype(np.int32)
    if mode == "F":
        return rng.normal(0, 1e3, (h, w)).astype(np.float32)
    return rng.integers(0, values, (h, w), dtype=np.uint8)


@st.composite
def picture(draw: st.DrawFn, modes: list[str], size: tuple[int, int] | None = None, values: int = 256) -> tuple[bytes, str]:
    """(file bytes, extension): random bytes, or a real image of random mode/shape/format, maybe truncated."""
    kind = draw(st.sampled_from(["image", "image", "image", "bytes", "truncated"]))
    fmt = draw(st.sampled_from(list(EXT)))
    if kind == "bytes":
        return draw(st.binary(max_size=400)), EXT[fmt]
    h, w = size or (draw(st.integers(1, 40)), draw(st.integers(1, 40)))
    mode = draw(st.sampled_from(modes))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    arr = _array(rng, mode, h, w, values)
    try:
        if mode == "LA":
            im = Image.fromarray(arr, "LA")
        elif mode in ("P", "1", "CMYK"):
            im = Image.fromarray(arr if mode != "1" else arr % 2 * 255, "L").convert(mode) if mode != "CMYK" \
                else Image.fromarray(arr, "CMYK")
        else:
            im = Image.fromarray(arr)
        buf = io.BytesIO()
        im.save(buf, fmt)
        data = buf.getvalue()
    except (OSError, ValueError, KeyError, TypeError):  # this format cannot hold this mode: use PNG
        fmt = "PNG"
        buf = io.BytesIO()
        Image.fromarray(_array(rng, "L", h, w, values)).save(buf, fmt)
        data = buf.getvalue()
    if kind == "truncated":
        data = data[: draw(st.integers(0, max(0, len(data) - 1)))]
    return data, EXT[fmt]


def _write(folder: Path, stem: str, item: tuple[bytes, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}{item[1]}"
    path.write_bytes(item[0])
    return path


@st.composite
def clean_pair(draw: st.DrawFn) -> tuple[tuple[bytes, str], tuple[bytes, str]]:
    """A valid pair of random size, mode and format: the loader must accept it."""
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    mode, fmt = draw(st.sampled_from(["L", "RGB", "I;16"])), draw(st.sampled_from(["PNG", "TIFF", "BMP"]))
    if mode == "I;16" and fmt == "BMP":
        fmt = "PNG"
    image, mask = io.BytesIO(), io.BytesIO()
    Image.fromarray(_array(rng, mode, h, w, 256)).save(image, fmt)
    Image.fromarray(rng.integers(0, 2, (h, w), dtype=np.uint8) * 255).save(mask, "PNG")
    return (image.getvalue(), EXT[fmt]), (mask.getvalue(), ".png")


@st.composite
def dataset(draw: st.DrawFn) -> list[tuple[tuple[bytes, str], tuple[bytes, str] | None]]:
    """2-4 pairs: valid ones, or images with masks usually of the image's size and few values,
    sometimes anything at all."""
    if draw(st.integers(0, 3)) == 0:
        return [draw(clean_pair()) for _ in range(draw(st.integers(2, 4)))]
    pairs = []
    for _ in range(draw(st.integers(2, 4))):
        image = draw(picture(IMAGE_MODES))
        shape = None
        try:
            with Image.open(io.BytesIO(image[0])) as im:
                shape = im.size[::-1]
        except Exception:
            pass
        same = shape is not None and draw(st.booleans())
        mask = draw(st.none() | picture(MASK_MODES, shape if same else None, draw(st.sampled_from([2, 4, 256]))))
        pairs.append((image, mask))
    return pairs


def _accepted(root: Path, prep, trained: list) -> None:
    """A dataset the checks let through: nothing may fail from here on, not even cleanly.

    Every sample loads (whole and augmented); the first few also train an epoch and predict.
    """
    from dataclasses import replace

    samples = prep.splits.train + prep.splits.val
    ds = SegDataset(samples, prep.info, None)
    mean, std = channel_stats(ds)
    ds.info = info = replace(prep.info, mean=mean, std=std)
    for i in range(len(ds)):
        img, labels = ds[i]  # whole and normalised, as validation loads them
        assert img.shape[0] == info.in_channels and img.shape[1:] == labels.shape
        assert bool(((labels < info.num_classes) | (labels == 255)).all())
    ds.transform = train_transforms(16, info.mean, info.std, info.in_channels, True)
    assert ds[0][0].shape[1:] == (16, 16)
    if len(trained) >= 3:
        return
    import segcli
    from segcli.train.engine import train

    cfg = TrainConfig(data=str(root), epochs=1, val_split=0.5, batch_size=2, precision="32",
                      project=str(root / "runs"), name="fuzz")
    result = train(cfg, ModelConfig(base_channels=4, depth=2, disc_channels=4))
    model = segcli.load(result.run_dir, precision="32")
    for i, s in enumerate(samples):
        assert model.predict(s.image).shape == ds.load(i)[1].shape
    trained.append(root)


def test_loader_only_succeeds_or_fails_cleanly() -> None:
    accepted: list[Path] = []
    trained: list[Path] = []

    @FUZZ
    @given(pairs=dataset())
    def check(pairs) -> None:
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL/numpy may warn about odd files; warnings are not failures
            root = Path(tmp)
            for i, (image, mask) in enumerate(pairs):
                _write(root / "images", f"s{i}", image)
                if mask is not None:
                    _write(root / "masks", f"s{i}", mask)
            try:
                prep = prepare(str(root), 0.5, 0, None)
                verify_decodable(prep.splits.train + prep.splits.val)  # what training does when it doesn't preload
            except UserError:
                return  # the clean refusal (DataError is a UserError)
            accepted.append(root)
            _accepted(root, prep, trained)

    check()
    # the accepting branch ran, training and prediction included: not only refusals were tested
    assert len(accepted) >= 3 and len(trained) == 3, (len(accepted), len(trained))


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Untrained tiny checkpoints (weights don't matter here): gray binary and RGB 3-class."""
    folder = tmp_path_factory.mktemp("fuzz_models")
    out = {}
    for name, info in (("gray", DataInfo(2, [], 1, [0.5], [0.25], None, True)),
                       ("rgb", DataInfo(3, [], 3, [0.5] * 3, [0.25] * 3, 255, False))):
        mcfg = ModelConfig(encoder="unet", base_channels=4, depth=2)
        gen = build_generator(mcfg, info)
        Checkpoint(TrainConfig(), mcfg, info, gen.output, gen.state_dict()).save(folder / f"{name}.pt")
        out[name] = folder / f"{name}.pt"
    return out


@settings(FUZZ, max_examples=25, suppress_health_check=list(HealthCheck))
@given(item=picture(IMAGE_MODES), model=st.sampled_from(["gray", "rgb"]))
def test_predict_only_succeeds_or_fails_cleanly(item, model: str, tiny_models: dict[str, Path]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = _write(Path(tmp), "x", item)
        out = Path(tmp) / "out"
        r = run_cli(["predict", src, "--model", tiny_models[model], "-o", out, "--precision", "32", "--device", "cpu"])
        assert r.code in (0, 2), r.err
        assert "Traceback" not in r.err and "Warning" not in r.err  # nothing but the one-line error
        if r.code == 0:
            mask = Image.open(out / "x.png")
            with Image.open(src) as im:
                from PIL import ImageOps

                assert mask.size == ImageOps.exif_transpose(im).size
        else:
            assert "x" + item[1] in r.err  # the error names the file
