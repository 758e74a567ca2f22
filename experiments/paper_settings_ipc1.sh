#!/usr/bin/env bash
# DC and DSA at 1 image per class on MNIST and FashionMNIST, at the papers' settings (ConvNet
# width 128, 256 real images per class, profile `paper`) for ITERATIONS iterations on the CPU,
# each evaluated with MODELS networks under the protocol (1000 epochs with augmentation for MNIST
# and for DSA, 300 without for DC on FashionMNIST). Resumable: rerun to continue a stopped run
# (the distillation resumes from results/<run>/checkpoint.pt; a finished one is not repeated);
# a larger ITERATIONS extends the finished runs.
#
#   OMP_NUM_THREADS=1 bash experiments/paper_settings_ipc1.sh [ITERATIONS] [MODELS]
set -euo pipefail
ITERATIONS=${1:-200}
MODELS=${2:-10}
cd "$(dirname "$0")/.."
for run in "dc mnist" "dsa mnist" "dc fashion-mnist" "dsa fashion-mnist"; do
  set -- $run
  method=$1 dataset=$2
  out=results/${method}_${dataset}_ipc1_paper
  python -m gmlib distill --dataset "$dataset" --ipc 1 --method "$method" --profile paper --device cpu \
    --iterations "$ITERATIONS" --out "$out" --no-progress
  if [ ! -f "$out/evaluation_${ITERATIONS}.json" ]; then
    python -m gmlib evaluate "$out/synthetic.pt" --profile paper --models "$MODELS" --seed 0 --device cpu \
      --json "$out/evaluation_${ITERATIONS}.json" --no-progress
  fi
done
