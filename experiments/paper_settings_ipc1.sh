#!/usr/bin/env bash
# DC and DSA at 1 image per class on MNIST and FashionMNIST, at the papers' settings (ConvNet
# width 128, 256 real images per class, profile `paper`) for ITERATIONS iterations on the CPU,
# each evaluated with MODELS networks under the protocol (1000 epochs with augmentation for MNIST
# and for DSA, 300 without for DC on FashionMNIST): experiments/stored_run.sh for each. Resumable.
#
#   OMP_NUM_THREADS=1 bash experiments/paper_settings_ipc1.sh [ITERATIONS] [MODELS]
set -euo pipefail
ITERATIONS=${1:-200}
MODELS=${2:-10}
cd "$(dirname "$0")/.."
for run in "dc mnist" "dsa mnist" "dc fashion-mnist" "dsa fashion-mnist"; do
  set -- $run
  bash experiments/stored_run.sh "$1" "$2" "$ITERATIONS" "$MODELS"
done
