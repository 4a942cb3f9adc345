#!/usr/bin/env bash
# Quick start on generated data: make a toy dataset, check it, train a GAN U-Net, evaluate, predict with overlays.
# Usage: bash examples/quickstart.sh [WORKDIR]   (about a minute on a laptop CPU)
# Smaller/larger runs: QS_COUNT, QS_SIZE, QS_EPOCHS, QS_WIDTH, QS_DEPTH (the tests use a tiny one).
set -euo pipefail
work="${1:-quickstart}"
count="${QS_COUNT:-32}" size="${QS_SIZE:-96}" epochs="${QS_EPOCHS:-8}" width="${QS_WIDTH:-16}" depth="${QS_DEPTH:-3}"
mkdir -p "$work" && cd "$work"

python -m segcli.data.synthetic toy --count "$count" --size "$size" >/dev/null  # toy/images + toy/masks (0/255)
segcli check toy                                                                 # what train will see; exit 2 on problems
run=$(segcli train toy --epochs "$epochs" --base-channels "$width" --depth "$depth" --name quickstart --exist-ok)
segcli info "$run"
segcli evaluate toy --model "$run/weights/best.pt"
segcli predict toy/images --model "$run/weights/best.pt" -o predictions --overlay
echo "run folder:  $work/$run"
echo "predictions: $work/predictions (masks and *_overlay.png)"
