#!/usr/bin/env bash
# Predict every image under a folder tree from a shell pipeline; OUT mirrors the tree.
# Usage: bash examples/batch_predict.sh SRC_TREE OUT [MODEL]   (MODEL: default the newest run's best.pt)
# Writes OUT/<same sub-folder>/<stem>.png per image and OUT/predictions.jsonl (one JSON line per image).
set -euo pipefail
src="${1:?usage: batch_predict.sh SRC_TREE OUT [MODEL]}"
out="${2:?usage: batch_predict.sh SRC_TREE OUT [MODEL]}"
model=()
if [ -n "${3:-}" ]; then model=(--model "$3"); fi
mkdir -p "$out"
: > "$out/predictions.jsonl"

images() {  # image files directly in $1 (or, with no argument, the folders holding any under $src)
  if [ $# -eq 0 ]; then
    find "$src" -type f \( -iname '*.png' -o -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.tif' -o -iname '*.tiff' \) \
      | sed 's|/[^/]*$||' | sort -u
  else
    find "$1" -maxdepth 1 -type f \( -iname '*.png' -o -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.tif' -o -iname '*.tiff' \) | sort
  fi
}

# One pipeline per folder, so that equal file names in different folders do not collide.
# The whole tree in one go, when names are unique:  find SRC -name '*.png' | segcli predict - -o OUT/
images | while read -r dir; do
  rel="${dir#"$src"}"; rel="${rel#/}"
  images "$dir" | segcli -q predict - ${model[@]+"${model[@]}"} -o "$out/${rel:-.}/" --json >> "$out/predictions.jsonl"
done
echo "$(wc -l < "$out/predictions.jsonl") mask(s) under $out" >&2
