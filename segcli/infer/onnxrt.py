"""Running an exported ONNX model in ONNX Runtime: numpy only, torch never imported.

This is the whole inference-only path of `segcli predict/evaluate --model model.onnx`:
everything the model needs (channels, mean/std, size multiple, classes, training patch) comes from
the `segcli` entry of the file's metadata_props, written by `segcli export`: the model's card
(segcli.infer.card.ModelCard).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from segcli.errors import ModelFileError
from segcli.infer.card import ModelCard

META_KEY = "segcli"


def session(model: Path | bytes, name: str | Path = "") -> Any:
    """A CPU InferenceSession; a file ORT cannot load is a one-line ModelFileError."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # ORT logs graph-optimiser chatter as warnings
    src = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        where = name or model
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise ModelFileError(f"{where}: not a loadable ONNX model ({first}); re-export it with `segcli export`") from None


def session_metadata(sess: Any, path: str | Path) -> dict[str, Any]:
    meta = sess.get_modelmeta().custom_metadata_map
    if META_KEY not in meta:
        raise ModelFileError(f"{path}: ONNX model without segcli metadata; export it with `segcli export`")
    try:
        return json.loads(meta[META_KEY])
    except ValueError:
        raise ModelFileError(f"{path}: unreadable segcli metadata; re-export it with `segcli export`") from None


def read_card(sess: Any, path: str | Path) -> ModelCard:
    """The card of a loaded exported model."""
    return ModelCard.from_json(session_metadata(sess, path), str(path))


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The `segcli` metadata entry of an exported model, as a dict."""
    if not Path(path).is_file():
        raise ModelFileError(f"{path}: model file not found")
    return session_metadata(session(Path(path)), path)


class OnnxBackend:
    """A Predictor backend: normalised NCHW float32 (padded) in, probabilities float32 out."""

    def __init__(self, sess: Any) -> None:
        self.sess = sess
        inp = sess.get_inputs()[0]
        self.input_name = inp.name
        # segcli writes float32 inputs even for --half; a float16 input is still honoured.
        self.dtype = np.float16 if "float16" in inp.type else np.float32

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        out = self.sess.run(None, {self.input_name: batch.astype(self.dtype, copy=False)})[0]
        return out.astype(np.float32, copy=False)


class OnnxEstimator:
    """An exported quality estimator: (normalised padded batch, probabilities) in, (N, 1, H, W) error
    probabilities out."""

    def __init__(self, sess: Any) -> None:
        self.sess = sess
        self.names = [i.name for i in sess.get_inputs()]

    def __call__(self, batch: np.ndarray, probs: np.ndarray) -> np.ndarray:
        feed = dict(zip(self.names, (batch.astype(np.float32, copy=False), probs.astype(np.float32, copy=False))))
        return self.sess.run(None, feed)[0].astype(np.float32, copy=False)


def run_onnx(model: Path | bytes, x: np.ndarray, name: str | Path = "") -> np.ndarray:
    return OnnxBackend(session(model, name))(x)
