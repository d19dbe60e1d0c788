#!/usr/bin/env bash
# Equal-token ablation on one GPU, sized to finish in <= 8 min on an H200: phi-1-micro (8 x 512, ~27M
# matmul parameters), 12M training tokens per run (0.44 tokens per parameter, 56x phi-1-small at 2M tokens;
# ~7 epochs of the 1.7M-token filtered set, as phi-1 took ~8 of its data),
# unfiltered vs filtered vs random-filtered, 3 seeds, HumanEval + MBPP solution bits per character.
# Sizing: benchmarks/bench_ablate_scaling.py (CPU scaling, extrapolated with the measured H200 figures;
# RESULTS.md, issue 23). No run starts after ABLATE_DEADLINE_S (default 450 s), seed by seed.
# Prepare here first (CPU, after `textbooks run quickstart`; no CPU training needed):
#   python benchmarks/gpu/ablate_prep.py --quickstart textbooks-out/quickstart --ablation textbooks-out/ablate-data --out gpu-data/ablate
# Run from the repository root (carry gpu-data/ablate):  bash benchmarks/gpu/ablate.sh
#   PRESET=phi-1-small BUDGET=2000000 bash benchmarks/gpu/ablate.sh     # the earlier run's setting
#   TINY=1 bash benchmarks/gpu/ablate.sh                               # the same path on CPU in ~1 min (checks)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export PYTHONPATH=.
OUT="${OUT:-./gpu-out}"
mkdir -p "$OUT"
if [ "${TINY:-0}" = "1" ]; then
  python benchmarks/gpu/ablate_prep.py --toy "$OUT/toy-ablation" --out "$OUT/toy-data" --max-len 128
  exec python benchmarks/gpu/ablate_gpu.py --data "$OUT/toy-data" --device cpu --preset tiny --budget 2048 \
    --seq 64 --batch 8 --val-tokens 2000 --out "$OUT"
fi
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv || true
python benchmarks/gpu/ablate_gpu.py --data gpu-data/ablate --preset "${PRESET:-phi-1-micro}" \
  --budget "${BUDGET:-12000000}" --out "$OUT" 2>&1 | tee "$OUT/ablate_gpu.log"
