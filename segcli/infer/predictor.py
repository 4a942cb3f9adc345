"""Inference: numpy in, numpy out, over a torch checkpoint or an exported ONNX model.

Both backends take a normalised NCHW float32 batch whose H and W are multiples of the
model's size multiple and return probabilities as the model's OutputSpec defines them:
1 channel (foreground) for a binary model, K channels (softmax) otherwise. torch is
imported only for .pt models.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from segcli.config import DataInfo
from segcli.data.io import normalize, to_channels
from segcli.errors import ModelFileError, UserError
from segcli.infer.card import ModelCard, QualityCard
from segcli.infer.options import InferenceOptions
from segcli.models.output import OutputSpec
from segcli.quality import Calibration, QualityStats, error_image, no_estimator, pixel_maps, uncalibrated

Backend = Callable[[np.ndarray], np.ndarray]
# (normalised padded batch, its probabilities) -> (N, 1, H, W) error probabilities
Estimator = Callable[[np.ndarray, np.ndarray], np.ndarray]
# Allocates a float16 array of the given shape for probabilities (in memory or a .npy memmap).
ProbsAlloc = Callable[[tuple[int, ...]], np.ndarray]


@dataclass
class Segmentation:
    """One image's result: labels (HxW uint8), and when asked, float16 probabilities (C'xHxW); with
    `quality`: the error map (HxW uint8, 255 = most likely wrong), the per-image sums it came with
    (segcli.quality.QualityStats) and the calibrated estimate; with `baselines`, also the entropy map."""

    labels: np.ndarray
    probs: Optional[np.ndarray] = None
    error: Optional[np.ndarray] = None
    stats: Optional[QualityStats] = None
    quality: Optional[float] = None
    entropy: Optional[np.ndarray] = None


@dataclass(frozen=True)
class Predictor:
    """How to turn a decoded image into probabilities and labels, whatever the backend.

    Tiling, test-time augmentation and thresholding live here, above the backend, so an
    ONNX model gets them exactly as a torch checkpoint does. With `quality`, the estimator runs
    on every forward pass's (padded input, probabilities) and its error map travels as one more
    channel: blended across tiles and averaged over TTA flips exactly like the probabilities.

    Built once (`load_predictor(path, InferenceOptions)`) and never changed: a variant (the
    server's per-request threshold) is a `dataclasses.replace` copy sharing the backend.
    """

    backend: Backend
    info: DataInfo
    output: OutputSpec
    card: Optional[ModelCard] = None  # what the model file says about itself
    threshold: float = 0.5
    tta: bool = False
    tile: Optional[int] = None  # None = automatic, 0 = never, N = N-pixel tiles
    overlap: float = 0.25
    batch_size: int = 4
    train_size: Optional[int] = None  # the training patch side, when the model says
    estimator: Optional[Estimator] = None  # the quality estimator, when the model holds one
    calibration: Optional[Calibration] = None
    quality: bool = False  # run the estimator: error maps and the calibrated quality estimate
    baselines: bool = False  # with quality: entropy sums and maps too (evaluate's baselines)
    source: str = "model"  # where the model came from (messages)
    no_estimator: str = ""  # why `quality` is unavailable, when the model file says more than "none"

    @property
    def size_multiple(self) -> int:
        return self.output.size_multiple

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """Decoded HxWxC image to a normalised CxHxW float32 array."""
        return normalize(to_channels(image, self.info.in_channels), self.info.mean, self.info.std)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        h, w = x.shape[-2:]
        ph, pw = self.output.padding(h, w)
        if ph or pw:  # zero after normalisation = the mean intensity, as the model pads
            x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)))
        out = self.backend(x)
        if self.quality and self.estimator is not None:
            out = np.concatenate([out, self.estimator(x, out)], axis=1)
        return out[:, :, :h, :w] if (ph or pw) else out

    def probs(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        """Preprocessed same-size CxHxW arrays to probabilities at their own size (with `quality`,
        one more channel: the error probability).

        With `tta`, the mean over the image and its horizontal, vertical and double flips
        (nnU-Net's mirroring): 4x the compute for smoother, more reliable probabilities.
        """
        x = np.stack(batch)
        out = self._forward(x)
        if self.tta:
            out = out.astype(np.float32, copy=True)
            for axes in ((3,), (2,), (2, 3)):
                flipped = np.ascontiguousarray(np.flip(x, axes))
                out += np.flip(self._forward(flipped), axes)
            out /= 4.0
        return list(out)

    def labels(self, probs: np.ndarray) -> np.ndarray:
        """Probabilities (C'xHxW, or C'+1 with the error channel) to class labels (HxW uint8)."""
        return self.output.labels_from_probs(probs[: self.output.channels], self.threshold)

    def tile_for(self, h: int, w: int) -> int:
        """Tile side for an HxW image (0: whole image in one pass)."""
        from segcli.infer.tiling import choose_tile

        return choose_tile(h, w, self.tile, self.train_size, self.size_multiple)

    def _finish(self, seg: Segmentation) -> Segmentation:
        if seg.stats is not None and self.calibration is not None:
            seg.quality = round(self.calibration.estimate(seg.stats.features()), 4)
        return seg

    def _rows(self, seg: Segmentation, y0: int, y1: int, rows: np.ndarray) -> None:
        """Labels (and error map, sums, entropy) of rows y0:y1 from their probabilities."""
        c = self.output.channels
        lab = seg.labels[y0:y1] = self.labels(rows)
        if not self.quality or rows.shape[0] <= c:
            return
        err = rows[c]
        assert seg.error is not None and seg.stats is not None
        seg.error[y0:y1] = error_image(err)
        seg.stats.add(rows[:c], lab, err, self.baselines)
        if seg.entropy is not None:
            seg.entropy[y0:y1] = pixel_maps(rows[:c], self.output.binary, entropy=True)["entropy"]

    def _empty(self, h: int, w: int) -> Segmentation:
        seg = Segmentation(np.empty((h, w), np.uint8))
        if self.quality and self.estimator is not None:
            seg.error = np.empty((h, w), np.uint8)
            seg.stats = QualityStats(2 if self.output.binary else self.output.num_classes, self.output.binary)
            if self.baselines:
                seg.entropy = np.empty((h, w), np.float16)
        return seg

    def segment(self, image: np.ndarray, probs_out: Optional[ProbsAlloc] = None) -> Segmentation:
        """One decoded image to its Segmentation (probabilities kept only when `probs_out` is given).

        `probs_out` allocates the float16 array (e.g. a memory-mapped .npy file) so a huge image's
        probabilities never sit in RAM.
        """
        h, w = image.shape[:2]
        tile = self.tile_for(h, w)
        seg = self._empty(h, w)
        c = self.output.channels
        if not tile:
            p = self.probs([self.preprocess(image)])[0]
            self._rows(seg, 0, h, p)
            if probs_out:
                seg.probs = _store(p[:c], probs_out)
            return self._finish(seg)
        from segcli.infer.tiling import sliding_window

        def sink(y0: int, y1: int, rows: np.ndarray) -> None:
            self._rows(seg, y0, y1, rows)
            if probs_out is not None:
                if seg.probs is None:
                    seg.probs = probs_out((c, h, w))
                seg.probs[:, y0:y1] = rows[:c]

        def tiles(crops: list[np.ndarray]) -> list[np.ndarray]:
            return self.probs([self.preprocess(c) for c in crops])

        sliding_window(image, tiles, tile, sink, self.overlap, self.batch_size)
        return self._finish(seg)

    def segment_batch(self, images: list[np.ndarray], keep_probs: bool = False) -> list[Segmentation]:
        """Same-size images that need no tiling, in one forward pass."""
        out = []
        for image, p in zip(images, self.probs([self.preprocess(im) for im in images])):
            seg = self._empty(*image.shape[:2])
            self._rows(seg, 0, image.shape[0], p)
            if keep_probs:
                seg.probs = p[: self.output.channels].astype(np.float16)
            out.append(self._finish(seg))
        return out

    def predict(self, image: np.ndarray) -> Segmentation:
        """One decoded image to its Segmentation, float16 probabilities (C'xHxW) included."""
        return self.segment(image, _in_memory)

    def require_quality(self) -> None:
        """A one-line UserError unless this model can estimate quality."""
        if self.estimator is None:
            raise UserError(self.no_estimator or no_estimator(self.source))


def _in_memory(shape: tuple[int, ...]) -> np.ndarray:
    return np.empty(shape, np.float16)


def _store(p: np.ndarray, alloc: ProbsAlloc) -> np.ndarray:
    out = alloc(p.shape)
    out[...] = p
    return out


@dataclass(frozen=True)
class LoadedModel:
    """A model file opened for inference: its backend, its card and its quality estimator (if any)."""

    backend: Backend
    card: ModelCard
    estimator: Optional[Estimator] = None
    calibration: Optional[Calibration] = None
    no_estimator: str = ""


def load_predictor(path: str | Path, options: Optional[InferenceOptions] = None) -> Predictor:
    """The Predictor for a segcli checkpoint (.pt) or an exported ONNX model (.onnx), built once with
    `options` (the defaults when None)."""
    options = options or InferenceOptions()
    options.check()
    path = Path(path)
    model = onnx_model(path) if path.suffix.lower() == ".onnx" else torch_model(path, options)
    return build_predictor(model, options, str(path))


def build_predictor(model: LoadedModel, options: InferenceOptions, source: str) -> Predictor:
    """A Predictor from an opened model and the options, checked against the model."""
    card = model.card
    info = card.info
    if options.bands:
        from segcli.visualize import parse_bands

        info = replace(info, bands=parse_bands(options.bands, info.in_channels))
    if options.tile and options.tile < 2 * card.output.size_multiple:
        raise UserError(f"--tile {options.tile}: must be at least {2 * card.output.size_multiple} pixels for this model")
    pred = Predictor(
        model.backend, info, card.output, card, threshold=card.threshold if options.threshold is None else
        options.threshold, tta=options.tta, tile=options.tile, overlap=options.overlap, batch_size=options.batch_size,
        train_size=card.train_size, estimator=model.estimator, calibration=model.calibration,
        quality=options.quality, baselines=options.quality and options.baselines, source=source,
        no_estimator=model.no_estimator)
    if options.quality:
        pred.require_quality()
    return pred


def torch_model(path: Path, options: InferenceOptions) -> LoadedModel:
    """A checkpoint's generator (and estimator) on the options' device and precision."""
    from segcli.checkpoint import Checkpoint

    from segcli.infer.torchrt import TorchBackend, TorchEstimator

    ckpt = Checkpoint.load(path)
    backend = TorchBackend(ckpt.build_generator(), options.device, options.precision)
    card = ModelCard.from_checkpoint(ckpt, path.name)
    if not ckpt.has_estimator:
        return LoadedModel(backend, card)
    return LoadedModel(backend, card, TorchEstimator(ckpt.build_estimator(), backend), ckpt.quality_calibration())


def onnx_model(path: Path, data: Optional[bytes] = None) -> LoadedModel:
    """An exported model in ONNX Runtime (no torch import), from its file or its bytes (`data`, as
    `export --int8` verifies a model before writing it); the estimator from the file its card names."""
    from segcli.infer.onnxrt import OnnxBackend, read_card, session

    if data is None and not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    sess = session(data if data is not None else path, path)
    card = read_card(sess, path)
    return LoadedModel(OnnxBackend(sess), card, *_onnx_estimator(card, path))


def _onnx_estimator(card: ModelCard, path: Path) -> tuple[Optional[Estimator], Optional[Calibration], str]:
    """(the exported estimator named in the card, from the file beside the model, its calibration,
    why there is none)."""
    from segcli.infer.onnxrt import OnnxEstimator, session

    q: Optional[QualityCard] = card.quality
    if q is None:
        return None, None, no_estimator(str(path))
    sibling = path.with_name(q.estimator)
    if not sibling.is_file():
        return None, None, (f"{path}: its quality estimator {sibling.name} is missing; keep it beside the model "
                            "(segcli export writes both)")
    try:
        cal = Calibration.from_dict(q.calibration) if q.calibration else uncalibrated(card.output.binary)
    except (KeyError, TypeError, ValueError):
        raise ModelFileError(f"{path}: malformed quality calibration in its metadata; re-export it") from None
    return OnnxEstimator(session(sibling)), cal, ""


def resolve_model(model: Optional[str]) -> Path:
    """--model: a file, a run folder (its best.pt), or None for the newest run's best weights."""
    from segcli.runs import default_model

    if model is None:
        return default_model()
    p = Path(model)
    if p.is_dir() and (p / "weights").is_dir():
        p = p / "weights" / "best.pt"
    if not p.is_file():
        raise ModelFileError(f"{p}: model file not found")
    return p
