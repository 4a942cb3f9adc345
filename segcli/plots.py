"""Run plots: loss and metric curves, and validation samples (image | truth | prediction)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segcli.visualize import colorize, to_display


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


def save_samples(samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]], binary: bool, path: Path) -> None:
    """One row per sample: image | truth | prediction, each scaled to a common height."""
    from PIL import Image

    rows = []
    height = 256
    for image, truth, pred in samples:
        tiles = [to_display(image), colorize(truth, binary), colorize(pred, binary)]
        scale = height / image.shape[0]
        width = max(1, round(image.shape[1] * scale))
        tiles = [np.asarray(Image.fromarray(t).resize((width, height), Image.NEAREST)) for t in tiles]
        rows.append(np.concatenate(tiles, axis=1))
    if not rows:
        return
    w = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, w - r.shape[1]), (0, 0))) for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)


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
