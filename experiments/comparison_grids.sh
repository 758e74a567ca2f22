#!/usr/bin/env bash
# The stored comparison grids of chapters 11 and 12, one after another in this process (resumable:
# rerun to continue; finished cells are skipped). Each is one `python -m gmlib compare` call at the
# `cpu` profile, seed 0 unless named, evaluated under each method's paper's protocol at `cpu`:
#   results/grid_dc_mnist_seeds_cpu   DC on MNIST, 1 image per class, seeds 0-4, 10 ConvNets each (chapter 12)
#   results/grid_cpu_iterations       every method, both datasets, 1 image per class, 50 iterations each
#   results/grid_cpu_seconds          every method, both datasets, 1 image per class, 60 s of
#                                     distillation each, on ConvNet, MLP, LeNet and AlexNet (chapter 11)
# MTT's experts are the `cpu` buffers that experiments/mtt_stored_run.sh trains in runs/buffers/
# (copied in when present; otherwise the grid trains them), kept out of git. A failed cell is
# reported and the others go on; the script exits 1 at the end if any failed.
#
#   OMP_NUM_THREADS=1 bash experiments/comparison_grids.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python}
methods="random herding dc dsa dc-md dm mtt unroll ift gtn"
share_experts() {  # $1: the grid folder
  for dataset in mnist fashion-mnist; do
    if [ -f "runs/buffers/${dataset}_cpu/manifest.json" ] && [ ! -e "$1/experts/$dataset" ]; then
      mkdir -p "$1/experts" && cp -r "runs/buffers/${dataset}_cpu" "$1/experts/$dataset"
    fi
  done
}
"$python" -m gmlib compare --methods dc --datasets mnist --ipc 1 --seeds 0 1 2 3 4 --profile cpu \
  --networks convnet --models 10 --device cpu --out results/grid_dc_mnist_seeds_cpu --no-progress || failed=1
share_experts results/grid_cpu_iterations
"$python" -m gmlib compare --methods $methods --datasets mnist fashion-mnist --ipc 1 --profile cpu \
  --iterations 50 --networks convnet --models 3 --device cpu --out results/grid_cpu_iterations --no-progress || failed=1
share_experts results/grid_cpu_seconds
"$python" -m gmlib compare --methods $methods --datasets mnist fashion-mnist --ipc 1 --profile cpu \
  --seconds 60 --networks convnet mlp lenet alexnet --models 2 --device cpu --out results/grid_cpu_seconds \
  --no-progress || failed=1
[ -z "${failed:-}" ] || { echo "some cells failed (listed above): rerun to retry them" >&2; exit 1; }
