"""Pictures: the class palette, colourised masks and overlays (numpy in, numpy out), and the
run plots (loss/metric curves, validation samples, confusion matrix; matplotlib, imported lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from segcli.errors import UserError

_BASE = [
    (0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128),
    (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0),
    (255, 215, 180), (0, 0, 128), (128, 128, 128),
]


def palette(colors: Optional[Sequence[Sequence[int]]] = None) -> np.ndarray:
    """(256, 3) uint8: the given class colours first (from classes.txt), then distinct
    defaults, then a deterministic spread; 255 (ignore) is white."""
    pal = np.zeros((256, 3), np.uint8)
    pal[: len(_BASE)] = _BASE
    rng = np.random.default_rng(0)
    pal[len(_BASE) :] = rng.integers(40, 256, (256 - len(_BASE), 3))
    pal[255] = (255, 255, 255)  # ignore
    if colors:
        pal[: len(colors)] = np.asarray(colors, np.uint8).reshape(-1, 3)
    return pal


def colorize(labels: np.ndarray, binary: bool, colors: Optional[Sequence[Sequence[int]]] = None) -> np.ndarray:
    """HxW labels to HxWx3 colours; binary foreground is white."""
    if binary:
        out = np.zeros(labels.shape + (3,), np.uint8)
        out[labels == 1] = 255
        out[labels == 255] = (128, 128, 128)
        return out
    return palette(colors)[labels]


def default_bands(channels: int) -> list[int]:
    """The bands shown when none are chosen: the image itself (gray or RGB), band 1 of a 2-band
    image, bands 1-3 of a larger stack."""
    return [1] if channels < 3 else [1, 2, 3]


def parse_bands(text: str, channels: Optional[int] = None) -> list[int]:
    """`--bands 3,2,1` -> [3, 2, 1]: one band (gray) or three (red, green, blue), numbered from 1
    as GDAL and QGIS number them; checked against the images' band count when known."""
    try:
        bands = [int(t) for t in str(text).replace(" ", "").split(",") if t]
    except ValueError:
        bands = []
    if len(bands) not in (1, 3) or min(bands) < 1:
        raise UserError(f"--bands {text}: one band (gray) or three (red, green, blue), numbered from 1, "
                        "e.g. --bands 3,2,1")
    if channels is not None and max(bands) > channels:
        raise UserError(f"--bands {text}: the images have {channels} band(s)")
    return bands


class Display:
    """How an image becomes 8-bit RGB for viewing: the chosen bands, then its value scale.

    Gray and RGB images of 8 or 16 bits are shown as they are (16-bit / 257). Multi-band stacks
    and float images have no display range of their own: each shown band is stretched between
    its 2nd and 98th percentile over the whole image (QGIS's default), so every tile or row band
    of one image is scaled alike.
    """

    def __init__(self, image: np.ndarray, bands: Sequence[int] = ()) -> None:
        c = image.shape[2]
        self.index = [b - 1 for b in (bands or default_bands(c)) if b <= c] or [0]
        self.stretch = c not in (1, 3) or image.dtype.kind == "f"
        self.u16 = image.dtype == np.uint16
        self.lo = self.hi = np.zeros(len(self.index), np.float32)
        if self.stretch:
            step = max(1, int((image.shape[0] * image.shape[1] / 250_000) ** 0.5))
            sample = image[::step, ::step][..., self.index].reshape(-1, len(self.index)).astype(np.float32)
            self.lo, self.hi = np.percentile(sample, [2, 98], axis=0).astype(np.float32)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Rows of the image as HxWx3 float32 in 0..255."""
        x = image if self.index == list(range(image.shape[2])) else image[..., self.index]
        x = x.astype(np.float32)
        if self.stretch:
            x = (x - self.lo) / np.maximum(self.hi - self.lo, 1e-12) * 255.0
        elif self.u16:
            x /= 257.0
        return np.repeat(x, 3, axis=2) if x.shape[2] == 1 else x


def overlay_palette(binary: bool, colors: Optional[Sequence[Sequence[int]]] = None) -> np.ndarray:
    """(256, 3) uint8: the colour `overlay` blends over each class (binary foreground: red unless
    classes.txt sets one); class 0 is left unshaded. Legends (the server's page) use it too."""
    pal = palette(colors)
    if binary:
        pal[1] = colors[1] if colors and len(colors) > 1 else (255, 40, 40)
    return pal


SUSPECT_COLOR = (255, 230, 0)  # outlines of the regions an error map marks as likely wrong
SUSPECT_LEVEL = 128  # error map value (0-255) from which a pixel is suspect: error probability > 0.5


def overlay(image: np.ndarray, labels: np.ndarray, binary: bool, alpha: float = 0.45,
            colors: Optional[Sequence[Sequence[int]]] = None, rows: int = 512,
            bands: Sequence[int] = (), suspect: Optional[np.ndarray] = None) -> np.ndarray:
    """The image (HxWxC) with the mask's colours blended over non-background pixels; given an
    error map (`suspect`, HxW uint8, 255 = most likely wrong), the regions where it says "more
    likely wrong than right" are outlined in yellow.

    Works through `rows` rows at a time so a huge image needs no full-size float copies.
    """
    pal = overlay_palette(binary, colors).astype(np.float32)
    show = Display(image, bands)
    out = np.empty(labels.shape + (3,), np.uint8)
    h = labels.shape[0]
    t = max(1, min(labels.shape) // 300)  # outline thickness: visible on large images too
    for y in range(0, h, rows):
        img = show(image[y : y + rows])
        lab = labels[y : y + rows]
        blend = (1 - alpha) * img + alpha * pal[lab]
        out[y : y + rows] = np.where((lab > 0)[..., None], blend, img).clip(0, 255).astype(np.uint8)
        if suspect is not None:
            lo, hi = max(0, y - t), min(h, y + rows + t)
            edge = outline(suspect[lo:hi] >= SUSPECT_LEVEL, t)[y - lo : y - lo + lab.shape[0]]
            out[y : y + rows][edge] = SUSPECT_COLOR
    return out


def outline(region: np.ndarray, thickness: int = 1) -> np.ndarray:
    """The pixels of a boolean region within `thickness` pixels of its border (inside it)."""
    inner = region.copy()
    for _ in range(thickness):  # erode by one pixel (4-neighbourhood), `thickness` times
        eroded = inner.copy()
        eroded[1:] &= inner[:-1]
        eroded[:-1] &= inner[1:]
        eroded[:, 1:] &= inner[:, :-1]
        eroded[:, :-1] &= inner[:, 1:]
        inner = eroded
    return region & ~inner


def to_display(image: np.ndarray, bands: Sequence[int] = ()) -> np.ndarray:
    """Any decoded image to HxWx3 uint8 for viewing (see Display)."""
    return Display(image, bands)(image).clip(0, 255).astype(np.uint8)


def plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    epochs = [r["epoch"] for r in history]
    panels = [("G loss", ["g_loss", "g_seg", "g_adv"]), ("D loss", ["d_loss"]),
              ("validation", ["val_mIoU", "val_Dice"]), ("learning rate", ["lr_g", "lr_d"])]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
    for ax, (title, keys) in zip(axes, panels):
        for k in keys:
            ys = [r.get(k) for r in history]
            if any(isinstance(y, (int, float)) and np.isfinite(y) for y in ys):
                ax.plot(epochs, [y if isinstance(y, (int, float)) else np.nan for y in ys], marker=".", label=k)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def sample_grid(samples: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], binary: bool,
                colors: Optional[Sequence[Sequence[int]]] = None, bands: Sequence[int] = ()) -> Optional[np.ndarray]:
    """One row per sample: image | truth | prediction, each scaled to a common height (HxWx3 uint8);
    None without samples. The run's val_samples.png, and the image loggers record."""
    from PIL import Image

    rows = []
    height = 256
    for image, truth, pred in samples:
        tiles = [to_display(image, bands), colorize(truth, binary, colors), colorize(pred, binary, colors)]
        scale = height / image.shape[0]
        width = max(1, round(image.shape[1] * scale))
        tiles = [np.asarray(Image.fromarray(t).resize((width, height), Image.NEAREST)) for t in tiles]
        rows.append(np.concatenate(tiles, axis=1))
    if not rows:
        return None
    w = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, w - r.shape[1]), (0, 0))) for r in rows]
    return np.concatenate(rows, axis=0)


def save_samples(samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]], binary: bool, path: Path,
                 colors: Optional[Sequence[Sequence[int]]] = None, bands: Sequence[int] = ()) -> None:
    """plots/val_samples.png: sample_grid as a file."""
    from PIL import Image

    grid = sample_grid(samples, binary, colors, bands)
    if grid is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)


def plot_confusion(matrix: np.ndarray, names: list[str], path: Path) -> None:
    """Row-normalised confusion matrix (truth rows, prediction columns) with pixel counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(matrix, np.float64)
    rows = m.sum(1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    k = len(names)
    size = max(4.0, 0.55 * k + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("truth")
    ax.set_title("confusion matrix (rows sum to 1)")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
