"""The inference options: one frozen object from which a Predictor is built once.

`predict`, `evaluate`, `serve`, `export --int8` (its verification) and the Python API all make masks
through `segcli.infer.predictor.load_predictor(path, InferenceOptions(...))`; nothing sets a
predictor's attributes afterwards (a per-request variant, as the server's, is a
`dataclasses.replace` copy). torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from segcli.errors import UserError


@dataclass(frozen=True)
class InferenceOptions:
    """How masks are made from a model (the options predict and evaluate share)."""

    device: str = "auto"  # .pt models only (ONNX Runtime runs on the CPU)
    precision: str = "auto"  # .pt models only
    tile: Optional[int] = None  # None: automatic (by the training patch and the image size); 0: never; N: N-pixel tiles
    overlap: float = 0.25  # tile overlap, a fraction of the tile
    tta: bool = False  # average over flips
    threshold: Optional[float] = None  # binary models; None: the model's own (0.5)
    batch_size: int = 4  # images (or tiles) per forward pass
    quality: bool = False  # run the quality estimator: error maps and the estimate
    baselines: bool = False  # with quality: entropy sums and maps too (evaluate's trust figures)
    bands: Optional[str] = None  # --bands: the bands overlays show ("3,2,1"), checked against the model

    @classmethod
    def from_flags(cls, tile: Optional[int] = None, no_tile: bool = False, **rest: object) -> "InferenceOptions":
        """From the command-line flags: `--tile N` and `--no-tile` become one `tile`, values checked."""
        if tile is not None and no_tile:
            raise UserError("--tile and --no-tile contradict each other; pass one")
        opts = cls(tile=0 if no_tile else tile, **rest)  # type: ignore[arg-type]
        opts.check()
        return opts

    def check(self) -> None:
        """The values alone (what needs the model, e.g. the smallest tile, is checked when it loads)."""
        if not 0.0 <= self.overlap <= 0.9:
            raise UserError(f"--overlap {self.overlap}: must be between 0 and 0.9 (fraction of a tile)")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise UserError(f"--threshold {self.threshold}: a foreground probability, from 0 to 1")
        if self.batch_size < 1:
            raise UserError("--batch-size must be at least 1")
        if self.tile is not None and self.tile < 0:
            raise UserError(f"--tile {self.tile}: a tile side in pixels, or --no-tile")
        if self.bands:
            from segcli.visualize import parse_bands

            parse_bands(self.bands)

    def settings(self) -> dict[str, object]:
        """What changes the masks (not where they are computed): recorded beside a resumable output."""
        return {"threshold": self.threshold, "tta": self.tta, "tile": self.tile, "overlap": self.overlap}
