#!/usr/bin/env bash
# Quick start on generated data: make a toy dataset, train a GAN U-Net, evaluate, predict with overlays.
# Usage: bash examples/quickstart.sh [WORKDIR]   (about a minute on a laptop CPU)
set -euo pipefail
work="${1:-quickstart}"
mkdir -p "$work" && cd "$work"

python -m segcli.data.synthetic toy --count 32 --size 96          # toy/images + toy/masks (0/255)
run=$(segcli train toy --epochs 8 --base-channels 16 --depth 3 --name quickstart --exist-ok)
segcli evaluate toy --model "$run/weights/best.pt"
segcli predict toy/images --model "$run/weights/best.pt" -o predictions --overlay
echo "run folder:  $work/$run"
echo "predictions: $work/predictions (masks and *_overlay.png)"
