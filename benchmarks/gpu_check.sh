#!/usr/bin/env bash
# The CUDA path end to end on a GPU machine: device auto-detection, AMP (bf16, and fp16 with its
# grad scaler), 2-epoch training, semi-supervised training, predict, evaluate, export, throughput.
#
#   bash benchmarks/gpu_check.sh [DATA_ROOT (holds isbi2012-membrane/)] [WORK_DIR]
#
# Runs from the repository root with whatever python3 holds torch (PYTHON=... to choose).
set -uo pipefail
ROOT=${1:-../shared/data}
W=${2:-/tmp/segcli-gpu}
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
rm -rf "$W" && mkdir -p "$W"
step() { echo; echo "== $*"; }
TIMEFORMAT="   (%R s wall)"
seg() { time "$PY" -m segcli "$@"; }
ips() { "$PY" - "$1" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print("   epochs:", [(r["epoch"], r["train_seconds"], r["val_mIoU"]) for r in rows])
EOF
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import torch, torchvision, typer, onnxruntime as o; print('torch', torch.__version__, '| torchvision', torchvision.__version__, '| typer', typer.__version__, '| onnxruntime', o.__version__, o.get_available_providers())"
"$PY" -c "from pathlib import Path; from benchmarks.harness import isbi_split; isbi_split(Path('$ROOT'), Path('$W/isbi'), train=range(4, 20), unlabeled=range(0, 4))"

step "train, --device auto --precision auto, 2 epochs (expect cuda, bf16)"
seg train "$W/isbi" --epochs 2 --project "$W/runs" --name auto && ips "$W/runs/auto/metrics.csv"
grep -E "^  (device|precision|workers|batch_size|img_size):" "$W/runs/auto/config.yaml"
step "train --precision 16 (fp16 + GradScaler), 2 epochs"
seg train "$W/isbi" --epochs 2 --precision 16 --project "$W/runs" --name fp16 && ips "$W/runs/fp16/metrics.csv"
step "train --precision 32, 2 epochs"
seg train "$W/isbi" --epochs 2 --precision 32 --project "$W/runs" --name fp32 && ips "$W/runs/fp32/metrics.csv"
step "semi-supervised: --unlabeled, pixel discriminator, 2 epochs"
seg train "$W/isbi" --epochs 2 --unlabeled "$W/isbi_unlabeled" --discriminator pixel --semi-start 0 --project "$W/runs" --name semi \
  && ips "$W/runs/semi/metrics.csv"
step "interrupt (SIGINT after 12 s) and --resume, 10 epochs"
timeout -s INT 12 "$PY" -m segcli train "$W/isbi" --epochs 10 --project "$W/runs" --name int; echo "   exit $?"
seg train --resume "$W/runs/int" && ips "$W/runs/int/metrics.csv"

M="$W/runs/auto/weights/best.pt"
step "predict (torch, cuda) + overlays"
seg predict "$W/isbi/test/images" --model "$M" -o "$W/pred" --overlay && ls "$W/pred" | head -3
step "evaluate --json"
seg evaluate "$W/isbi" --model "$M" --json
step "export onnx + torchscript (checked against PyTorch)"
seg export --model "$M" --format onnx -o "$W/m.onnx"
seg export --model "$M" --format torchscript -o "$W/m.ts"
seg predict "$W/isbi/test/images" --model "$W/m.onnx" -o "$W/pred_onnx"
seg info "$M"

step "benchmarks/train_speed.py --device cuda (segcli epoch vs hand loop; bf16 matmul peak)"
"$PY" benchmarks/train_speed.py --data-root "$ROOT" --device cuda --batch-size 4 --epochs 6
step "benchmarks/predict.py --device cuda"
"$PY" benchmarks/predict.py --data-root "$ROOT" --device cuda --count 120 --batch-size 8
