#!/usr/bin/env bash
# One stored run: METHOD (dc, dsa, dm) on DATASET at 1 image per class (or IPC) at the papers'
# settings (profile `paper`: ConvNet width 128, 256 real images per class) for ITERATIONS
# iterations on the CPU, then evaluated with MODELS networks under the protocol (the papers'
# augmentation for the method and dataset). Writes results/<method>_<dataset>_ipc<IPC>_paper/.
# Resumable: rerun to continue a stopped run (from its checkpoint.pt); a finished run is not
# repeated, a larger ITERATIONS extends it.
#
#   OMP_NUM_THREADS=1 bash experiments/stored_run.sh METHOD DATASET ITERATIONS [MODELS] [IPC]
set -euo pipefail
method=$1 dataset=$2 iterations=$3 models=${4:-10} ipc=${5:-1}
cd "$(dirname "$0")/.."
python=${PYTHON:-python}
out=results/${method}_${dataset}_ipc${ipc}_paper
"$python" -m gmlib distill --dataset "$dataset" --ipc "$ipc" --method "$method" --profile paper --device cpu \
  --iterations "$iterations" --out "$out" --no-progress
if [ ! -f "$out/evaluation_${iterations}.json" ]; then
  "$python" -m gmlib evaluate "$out/synthetic.pt" --profile paper --models "$models" --seed 0 --device cpu \
    --json "$out/evaluation_${iterations}.json" --no-progress
fi
