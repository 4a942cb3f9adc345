"""Sliding-window inference and the Predictor's TTA, with numpy stand-ins for the model."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segcli.config import DataInfo
from segcli.infer.predictor import Predictor
from segcli.models import OutputSpec
from segcli.infer.tiling import choose_tile, gaussian_1d, sliding_window, tile_starts


@given(length=st.integers(1, 500), tile=st.integers(8, 128), overlap=st.floats(0, 0.9))
@settings(max_examples=200, deadline=None)
def test_tile_starts_cover_without_overhang(length: int, tile: int, overlap: float) -> None:
    t = min(tile, length)
    step = max(1, int(t * (1 - overlap)))
    starts = tile_starts(length, t, step)
    assert starts[0] == 0 and starts[-1] + t == length
    assert all(0 < b - a <= step for a, b in zip(starts, starts[1:]))


@given(h=st.integers(1, 90), w=st.integers(1, 90), tile=st.integers(4, 40), overlap=st.sampled_from([0, 0.25, 0.5]),
       batch=st.integers(1, 5))
@settings(max_examples=60, deadline=None)
def test_pointwise_model_is_reconstructed_exactly(h: int, w: int, tile: int, overlap: float, batch: int) -> None:
    """Blending weights are normalised: a per-pixel 'model' gives the same answer tiled, everywhere."""
    rng = np.random.default_rng(h * 1000 + w)
    image = rng.random((h, w, 2)).astype(np.float32)
    out = np.full((2, h, w), np.nan, np.float32)
    rows: list[tuple[int, int]] = []

    def sink(y0: int, y1: int, probs: np.ndarray) -> None:
        rows.append((y0, y1))
        out[:, y0:y1] = probs

    sliding_window(image, lambda crops: [c.transpose(2, 0, 1) for c in crops], tile, sink, overlap, batch)
    np.testing.assert_allclose(out, image.transpose(2, 0, 1), rtol=1e-5, atol=1e-6)
    # rows arrive top to bottom, each exactly once
    assert rows[0][0] == 0 and rows[-1][1] == h and all(a[1] == b[0] for a, b in zip(rows, rows[1:]))


def test_gaussian_weights_favour_tile_centres() -> None:
    g = gaussian_1d(64)
    assert g.argmax() in (31, 32) and g.min() >= 1e-3 and g[0] < 0.01


def test_automatic_tiling_only_for_much_larger_images() -> None:
    assert choose_tile(512, 512, None, 256, 16) == 0  # 2x the training size: whole image
    assert choose_tile(8000, 8000, None, 256, 16) == 512
    assert choose_tile(3000, 3000, None, None, 16) == 512  # unknown training size: memory decides
    assert choose_tile(100, 100, 0, 32, 16) == 0 and choose_tile(100, 100, 50, 32, 16) == 64


def _predictor(fn, binary: bool = False, **kw) -> Predictor:
    info = DataInfo(num_classes=1 if binary else 3, binary=binary, in_channels=1, mean=[0.0], std=[1.0])
    return Predictor(fn, info, OutputSpec(binary, 2 if binary else 3, 4), **kw)


def test_tta_averages_the_four_flips() -> None:
    """A backend that is not flip-equivariant: TTA output = mean over flips, flipped back."""
    ramp = np.arange(8 * 8, dtype=np.float32).reshape(8, 8) / 64  # the model sees 6x8 padded to 8x8

    def backend(x: np.ndarray) -> np.ndarray:  # probability depends on position, not on the image
        p = np.broadcast_to(ramp[: x.shape[2], : x.shape[3]], (x.shape[0], 1) + x.shape[2:])
        return np.concatenate([p, 1 - p], 1).astype(np.float32)

    image = np.zeros((6, 8, 1), np.uint8)
    plain = _predictor(backend).probs([_predictor(backend).preprocess(image)])[0]
    tta = _predictor(backend, tta=True).probs([_predictor(backend).preprocess(image)])[0]
    r = ramp[:6]
    expected = (r + r[:, ::-1] + r[::-1] + r[::-1, ::-1]) / 4
    np.testing.assert_allclose(plain[0], r, atol=1e-6)
    np.testing.assert_allclose(tta[0], expected, atol=1e-6)


def test_segment_tiled_matches_whole_for_a_local_model_and_keeps_probs() -> None:
    """A model with a 3x3 receptive field: tiles with overlap agree with the whole image."""

    def backend(x: np.ndarray) -> np.ndarray:
        pad = np.pad(x[:, 0], ((0, 0), (1, 1), (1, 1)), mode="edge")
        mean = sum(pad[:, i : i + x.shape[2], j : j + x.shape[3]] for i in range(3) for j in range(3)) / 9
        p = 1 / (1 + np.exp(-8 * (mean - 0.5)))
        return p[:, None].astype(np.float32)

    rng = np.random.default_rng(0)
    image = (rng.random((152, 132, 1)) * 255).astype(np.uint8)  # no padding: borders alike
    whole = _predictor(backend, binary=True, tile=0)
    tiled = _predictor(backend, binary=True, tile=48, overlap=0.5, batch_size=3)
    sw, st = whole.predict(image), tiled.predict(image)
    lw, pw, lt, pt = sw.labels, sw.probs, st.labels, st.probs
    assert pt.dtype == np.float16 and pt.shape == (1, 152, 132)
    assert (lw == lt).mean() > 0.99
    assert np.abs(pw.astype(np.float32) - pt.astype(np.float32)).max() < 0.05


@pytest.mark.parametrize("tile", [0, 40])
def test_segment_without_probs_keeps_none(tile: int) -> None:
    pred = _predictor(lambda x: np.full((x.shape[0], 1) + x.shape[2:], 0.7, np.float32), binary=True, tile=tile)
    seg = pred.segment(np.zeros((90, 70, 1), np.uint8))
    labels, probs = seg.labels, seg.probs
    assert probs is None and seg.error is None and seg.quality is None and labels.shape == (90, 70) and labels.all()


def test_streaming_holds_one_band_of_tile_rows_not_the_image() -> None:
    """Finished rows leave as soon as no later tile touches them: memory is a band of about one
    tile's height, whatever the image's height (an 8000x8000 image must not need a full-size buffer)."""
    import tracemalloc

    h, w, tile, channels = 4096, 64, 64, 4
    image = np.zeros((h, w, 1), np.float32)
    calls: list[tuple[int, int]] = []

    def tiles(crops: list[np.ndarray]) -> list[np.ndarray]:
        return [np.full((channels,) + c.shape[:2], 0.5, np.float32) for c in crops]

    def sink(y0: int, y1: int, rows: np.ndarray) -> None:
        assert rows.shape == (channels, y1 - y0, w)
        calls.append((y0, y1))

    tracemalloc.start()
    sliding_window(image, tiles, tile, sink, overlap=0.25, batch_size=4)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    full = channels * h * w * 4  # a full-resolution float32 probability buffer: 4 MiB
    assert peak < full / 8, (peak, full)
    assert len(calls) > h // tile and max(b - a for a, b in calls) <= tile  # many small bands, in order
    assert calls[0][0] == 0 and calls[-1][1] == h and all(a[1] == b[0] for a, b in zip(calls, calls[1:]))
