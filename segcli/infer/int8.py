"""`segcli export --int8`: a statically quantised ONNX model, calibrated on images and verified on
labelled ones against the fp32 model before it is written.

1. The fp32 ONNX model is exported and checked against PyTorch as `segcli export` does (into a
   temporary folder).
2. Calibration: up to `CALIBRATION_IMAGES` images (`--calibrate DIR`, default the run's training
   images when they are still where the run found them) go through predict's own preprocessing and
   padding (a tile of them when predict would tile); ONNX Runtime records every tensor's range
   (MinMax) and `quantize_static` writes a QDQ graph: uint8 activations, int8 weights per output
   channel in a 7-bit range, every Conv, Concat, MaxPool, Add and Resize quantised (docs/deployment.md#int8 says
   why this choice and what the alternatives measured).
3. Verification (`--verify DATA`, default the run's validation images): the fp32 and the int8
   model predict every labelled image through the same Predictor; mask agreement and mIoU of
   both. A loss of mIoU above `--tolerance` (0.01) refuses the model: exit 1, nothing written.
4. The quality estimator is quantised the same way and kept int8 only when its estimates on the
   verification images stay within the tolerance of the fp32 estimator's; otherwise it stays fp32.

Everything the run measured goes into the card (`quantization`), so `segcli info` shows it.
"""

from __future__ import annotations

import json
import logging
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from segcli.data.discovery import Sample, discover, eval_samples, list_images
from segcli.data.io import read_image
from segcli.errors import SegcliError, UserError
from segcli.fileio import atomic_write_bytes
from segcli.infer.card import ModelCard, QualityCard
from segcli.infer.onnxrt import META_KEY
from segcli.infer.options import InferenceOptions
from segcli.infer.predictor import LoadedModel, Predictor, build_predictor

CALIBRATION_IMAGES = 32  # ranges settle after a few dozen images; more only costs time
CROP = 1024  # calibration inputs at most this side (a whole image, or a tile when predict would tile)
SETTINGS = {"format": "QDQ", "activations": "uint8 (asymmetric, per tensor)", "weights": "int8 (symmetric, per channel, 7-bit range)",
            "calibration_method": "MinMax", "ops": "Conv, Concat, MaxPool, Add, Resize (all but Sigmoid/Softmax)"}


@dataclass(frozen=True)
class Int8Config:
    """`segcli export --int8`'s options."""

    model: Path
    out: Optional[Path] = None  # default: <checkpoint stem>.int8.onnx beside it
    calibrate: Optional[Path] = None  # a folder of images; None: the run's training images
    verify: Optional[str] = None  # labelled data; None: the run's validation images
    tolerance: float = 0.01  # the largest mIoU loss accepted against the fp32 model


@dataclass(frozen=True)
class Int8Result:
    path: Path
    card: ModelCard
    estimator_path: Optional[Path] = None
    size_bytes: int = 0
    fp32_bytes: int = 0


def export_int8(cfg: Int8Config) -> Int8Result:
    """Quantise, verify, then write the model (and its estimator) atomically, or refuse (exit 1)."""
    from segcli.checkpoint import Checkpoint
    from segcli.infer.export import estimator_path, export_model

    if not (cfg.tolerance >= 0):
        raise UserError(f"--tolerance {cfg.tolerance}: an mIoU loss, a number >= 0")
    ckpt = Checkpoint.load(cfg.model)
    path = cfg.out if cfg.out is not None and cfg.out.suffix.lower() == ".onnx" else (
        (cfg.out or cfg.model.parent) / (cfg.model.stem + ".int8.onnx"))
    images = calibration_images(cfg.calibrate, ckpt.train)
    samples = verification_samples(cfg.verify, ckpt.train)
    with tempfile.TemporaryDirectory(prefix="segcli-int8-") as tmp:
        fp32 = export_model(cfg.model, "onnx", Path(tmp) / "fp32.onnx")
        fp32_pred = _predictor(fp32.path)
        feeds = calibration_feeds(fp32_pred, images)
        data = quantize(fp32.path, [{"image": x} for x in feeds], Path(tmp))
        int8_pred = _predictor(fp32.path, data, estimator=False)
        verified = verify(fp32_pred, int8_pred, samples, cfg.tolerance, path)
        quality, est_data = _estimator(fp32, fp32_pred, int8_pred, feeds, samples, cfg.tolerance, Path(tmp), path)
        card = fp32.card.exported("int8", quality, {
            **SETTINGS, "calibration": {"source": str(cfg.calibrate or ckpt.train.data), "images": len(images)},
            "verified": {"data": str(cfg.verify or ckpt.train.data), **verified}})
        model_bytes = _with_card(data, card)
        fp32_bytes = fp32.size_bytes
    if est_data is not None:  # the estimator first: a model file never names a missing estimator
        atomic_write_bytes(estimator_path(path), est_data)
    atomic_write_bytes(path, model_bytes)
    return Int8Result(path, card, estimator_path(path) if est_data is not None else None, len(model_bytes), fp32_bytes)


def calibration_images(folder: Optional[Path], train: Any) -> list[Path]:
    """`--calibrate DIR`'s images, else the run's training images while they are where it found them;
    up to CALIBRATION_IMAGES, evenly spread."""
    if folder is not None:
        found = list_images(folder / "images" if (folder / "images").is_dir() else folder) if folder.is_dir() else []
        if not found:
            raise UserError(f"--calibrate {folder}: no images there; pass a folder of images like the ones to predict")
    else:
        try:
            found = [s.image for s in discover(train.data, train.val_split, train.seed).train]
        except (SegcliError, OSError, ValueError):
            found = []
        if not found or not all(p.is_file() for p in found):
            raise UserError(f"{train.data or 'the training data'}: the run's training images are no longer where it "
                            "found them; pass --calibrate DIR (a folder of images like the ones to predict)")
    step = max(1, len(found) // CALIBRATION_IMAGES)
    return found[::step][:CALIBRATION_IMAGES]


def verification_samples(data: Optional[str], train: Any) -> list[Sample]:
    """`--verify DATA`'s labelled pairs (as `segcli evaluate DATA` takes them), else the run's
    validation images while they are where it found them."""
    if data is not None:
        return eval_samples(data)
    try:
        found = discover(train.data, train.val_split, train.seed).val
    except (SegcliError, OSError, ValueError):
        found = []
    if not found or not all(s.image.is_file() and s.mask is not None and s.mask.is_file() for s in found):
        raise UserError(f"{train.data or 'the training data'}: the run's validation images are no longer where it "
                        "found them; pass --verify DATA (labelled images, as `segcli evaluate DATA` takes them)")
    return found


def _predictor(path: Path, data: Optional[bytes] = None, estimator: bool = True) -> Predictor:
    from segcli.infer.onnxrt import OnnxBackend, read_card, session
    from segcli.infer.predictor import onnx_model

    if data is None:
        return build_predictor(onnx_model(path), InferenceOptions(), str(path))
    sess = session(data, path)
    model = LoadedModel(OnnxBackend(sess), read_card(sess, path))
    return build_predictor(model, InferenceOptions(), str(path))


def calibration_feeds(pred: Predictor, images: list[Path]) -> list[np.ndarray]:
    """What the model sees when predict runs on these images: normalised, padded NCHW float32 arrays
    (a crop of at most CROP pixels a side, or of a tile's size when predict would tile)."""
    feeds = []
    for p in images:
        image = read_image(p)
        h, w = image.shape[:2]
        side = pred.tile_for(h, w) or CROP
        y, x = max(0, (h - side) // 2), max(0, (w - side) // 2)
        x_ = pred.preprocess(image[y : y + side, x : x + side])
        ph, pw = pred.output.padding(*x_.shape[1:])
        feeds.append(np.pad(x_, ((0, 0), (0, ph), (0, pw)))[None])
    return feeds


@contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """ONNX Runtime's quantisation tools log advice and progress on the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize(fp32: Path, feeds: list[dict[str, np.ndarray]], tmp: Path, name: str = "model") -> bytes:
    """The QDQ int8 graph of an fp32 ONNX file, calibrated on `feeds` (input name -> array)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(feeds)

        def get_next(self) -> Optional[dict[str, np.ndarray]]:
            return next(self.it, None)

    pre, out = tmp / f"{name}.pre.onnx", tmp / f"{name}.int8.onnx"
    with _quiet_quantizer():
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        # reduce_range: 7-bit weights, so that x86 CPUs without VNNI (AVX2's vpmaddubsw adds two
        # uint8 x int8 products in int16) never saturate; measured: same speed, masks closer to fp32
        quantize_static(str(pre), str(out), Feeds(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out.read_bytes()


def verify(fp32: Predictor, int8: Predictor, samples: list[Sample], tolerance: float, path: Path) -> dict[str, Any]:
    """Both models on the labelled samples through predict's path: mIoU of each and the share of equal
    mask pixels; a SegcliError (exit 1, nothing written) when int8 loses more than `tolerance` mIoU."""
    from segcli.infer.evaluate import run_evaluate

    masks: dict[str, np.ndarray] = {}
    same, total = 0, 0

    def keep(sample: Sample, labels: np.ndarray) -> None:
        masks[str(sample.image)] = labels

    def compare(sample: Sample, labels: np.ndarray) -> None:
        nonlocal same, total
        same += int((masks.pop(str(sample.image)) == labels).sum())
        total += labels.size

    ref = run_evaluate(fp32, samples, on_sample=keep)
    got = run_evaluate(int8, samples, on_sample=compare)
    m32, m8 = float(ref["mIoU"] or 0.0), float(got["mIoU"] or 0.0)
    figures = {"images": len(samples), "mIoU_fp32": round(m32, 4), "mIoU_int8": round(m8, 4),
               "loss": round(m32 - m8, 4), "agreement": round(same / max(total, 1), 6), "tolerance": tolerance}
    if m32 - m8 > tolerance:
        raise SegcliError(f"{path}: int8 model loses {m32 - m8:.4f} mIoU against fp32 ({m8:.4f} vs {m32:.4f} on "
                          f"{len(samples)} images; {same / max(total, 1):.2%} of pixels agree), above --tolerance "
                          f"{tolerance:g}; not written (calibrate on images more like these, or keep the fp32 model)")
    return figures


def _estimator(fp32: Any, fp32_pred: Predictor, int8_pred: Predictor, feeds: list[np.ndarray], samples: list[Sample],
               tolerance: float, tmp: Path, path: Path) -> tuple[Optional[QualityCard], Optional[bytes]]:
    """The estimator beside the int8 model: int8 when its estimates stay within `tolerance` of the fp32
    estimator's on the verification images (both fed the int8 model's probabilities), else fp32."""
    from segcli.infer.export import estimator_path
    from segcli.infer.onnxrt import OnnxEstimator, session

    if fp32.estimator_path is None or fp32_pred.estimator is None:
        return None, None
    pairs = [{"image": x, "probabilities": int8_pred.backend(x)} for x in feeds]
    est8 = quantize(fp32.estimator_path, pairs, tmp, "estimator")
    with_fp32 = replace(int8_pred, estimator=fp32_pred.estimator, calibration=fp32_pred.calibration, quality=True)
    with_int8 = replace(with_fp32, estimator=OnnxEstimator(session(est8, estimator_path(path))))
    diff = max((abs((a.quality or 0.0) - (b.quality or 0.0)) for a, b in
                ((with_fp32.predict(read_image(s.image)), with_int8.predict(read_image(s.image))) for s in samples)),
               default=0.0)
    keep_int8 = diff <= tolerance
    data = est8 if keep_int8 else fp32.estimator_path.read_bytes()
    q = fp32.card.quality
    card = QualityCard(estimator_path(path).name, q.target, q.calibration, "int8" if keep_int8 else "float32")
    return card, _estimator_metadata(data, path, round(diff, 4))


def _estimator_metadata(data: bytes, model: Path, diff: float) -> bytes:
    """The estimator file's own metadata, naming the int8 model it belongs to."""
    import onnx

    proto = onnx.load_from_string(data)
    for item in proto.metadata_props:
        if item.key == META_KEY:
            meta = json.loads(item.value)
            meta.update(model_file=model.name, int8_estimate_difference=diff)
            item.value = json.dumps(meta, allow_nan=False)
    return proto.SerializeToString()


def _with_card(data: bytes, card: ModelCard) -> bytes:
    """The quantised graph with the card as its metadata (replacing the fp32 model's)."""
    import onnx

    proto = onnx.load_from_string(data)
    del proto.metadata_props[:]
    item = proto.metadata_props.add()
    item.key, item.value = META_KEY, json.dumps(card.to_json(), allow_nan=False)
    proto.producer_name = "segcli"
    onnx.checker.check_model(proto)
    return proto.SerializeToString()
