"""Run a `segcli export`ed ONNX model with no segcli and no torch: numpy + OpenCV (+ ONNX Runtime).

    python examples/deploy_onnx.py model.onnx image.png mask.png [--opencv]

Everything it needs comes from the model's `segcli` metadata entry; the same steps work in
C++ with cv::dnn::readNetFromONNX. Writes class indices (0..K-1) as an 8-bit PNG (binary: 0/255).
"""

from __future__ import annotations

import argparse
import json

import cv2
import numpy as np
import onnxruntime as ort


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("image")
    ap.add_argument("mask")
    ap.add_argument("--opencv", action="store_true", help="run in OpenCV DNN instead of ONNX Runtime")
    args = ap.parse_args()

    sess = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    meta = json.loads(sess.get_modelmeta().custom_metadata_map["segcli"])

    # Decode: 8- or 16-bit, gray or colour; OpenCV gives BGR, the model wants RGB (or gray).
    img = cv2.imread(args.image, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 4:
        img = img[:, :, :3]
    if img.shape[2] == 3:
        img = img[:, :, ::-1]
    if meta["in_channels"] == 3 and img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif meta["in_channels"] == 1 and img.shape[2] == 3:
        img = (img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).round()[:, :, None]
    scale = meta["pixel_scale"]["uint16" if img.dtype == np.uint16 else "uint8"]

    # Normalise, NCHW, pad bottom/right to the size multiple with 0 (= the mean).
    x = (img.astype(np.float32) / scale - np.float32(meta["mean"])) / np.float32(meta["std"])
    x = x.transpose(2, 0, 1)[None]
    h, w = x.shape[2:]
    m = meta["size_multiple"]
    x = np.pad(x, ((0, 0), (0, 0), (0, -h % m), (0, -w % m))).astype(np.float32)

    if args.opencv:
        net = cv2.dnn.readNetFromONNX(args.model)
        net.setInput(x)
        probs = net.forward()
    else:
        probs = sess.run([meta["output_name"]], {meta["input_name"]: x})[0]
    probs = probs[0, :, :h, :w]  # crop the padding back off

    if meta["binary"]:
        mask = np.where(probs[0] > meta["threshold"], 255, 0).astype(np.uint8)
    else:
        mask = probs.argmax(0).astype(np.uint8)
    cv2.imwrite(args.mask, mask)
    print(json.dumps({"classes": meta["class_names"], "size": [w, h]}))


if __name__ == "__main__":
    main()
