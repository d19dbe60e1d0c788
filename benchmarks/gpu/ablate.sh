#!/usr/bin/env bash
# phi-1-small equal-token ablation on one GPU (<= 3 min on an H200 at the default budget).
# Prepare here first:  python benchmarks/gpu/ablate_prep.py --ablation textbooks-out/ablate-quickstart --out gpu-data/ablate
# Run from the repository root (carry gpu-data/ablate):  bash benchmarks/gpu/ablate.sh   [BUDGET=12000000 for ~10 min, estimated]
set -euo pipefail
export PYTHONPATH=.
OUT="${OUT:-./gpu-out}"
BUDGET="${BUDGET:-2000000}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv || true
python benchmarks/gpu/ablate_gpu.py --data gpu-data/ablate --budget "$BUDGET" --out "$OUT" 2>&1 | tee "$OUT/ablate_gpu.log"
