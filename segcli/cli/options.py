"""Inference options shared by `predict` and `evaluate`, so both produce masks the same way."""

from __future__ import annotations

import typer

MODEL = typer.Option(None, "--model", "-m", help="Checkpoint (.pt) or exported .onnx; default: newest run's best.pt.")
BATCH_SIZE = typer.Option(4, "--batch-size", "-b", help="Images (or tiles) per forward pass.")
THRESHOLD = typer.Option(None, "--threshold", help="Foreground probability threshold (binary models); default: the model's (0.5).", show_default=False)
TILE = typer.Option(None, "--tile", metavar="SIZE",
                    help="Sliding-window inference with SIZE-pixel tiles (default: automatic for images "
                         "much larger than the training patch).")
NO_TILE = typer.Option(False, "--no-tile", help="Never tile: the whole image in one pass.")
OVERLAP = typer.Option(0.25, "--overlap", help="Tile overlap as a fraction of the tile (Gaussian-blended).")
TTA = typer.Option(False, "--tta", help="Test-time augmentation: average over flips (4x compute).")
DEVICE = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps")
PRECISION = typer.Option("auto", "--precision", help="auto | 32 | bf16 | 16")
QUALITY = typer.Option(False, "--quality", help="Label-free quality: an estimated mIoU (binary: Dice) per image and a per-pixel error map (<stem>_error.png), from the estimator stored in the model.")
