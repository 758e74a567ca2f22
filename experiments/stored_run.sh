#!/usr/bin/env bash
# One stored run: METHOD (dc, dsa, dm) on DATASET at 1 image per class (or IPC) for ITERATIONS
# iterations on the CPU, then evaluated with MODELS networks under the protocol (the papers'
# augmentation for the method and dataset). PROFILE (default `paper`: the papers' settings, ConvNet
# width 128, 256 real images per class) sets the distillation and the evaluation; INIT replaces the
# method's start (gmlib.synthetic.INIT_NAMES). Writes
# results/<method>_<dataset>_ipc<IPC>_<profile>[_from-<init>]/.
# Resumable: rerun to continue a stopped run (from its checkpoint.pt); a finished run is not
# repeated, a larger ITERATIONS extends it.
#
#   OMP_NUM_THREADS=1 bash experiments/stored_run.sh METHOD DATASET ITERATIONS [MODELS] [IPC] [PROFILE] [INIT]
set -euo pipefail
method=$1 dataset=$2 iterations=$3 models=${4:-10} ipc=${5:-1} profile=${6:-paper} init=${7:-}
cd "$(dirname "$0")/.."
python=${PYTHON:-python}
out=results/${method}_${dataset}_ipc${ipc}_${profile}${init:+_from-$init}
"$python" -m gmlib distill --dataset "$dataset" --ipc "$ipc" --method "$method" --profile "$profile" --device cpu \
  --iterations "$iterations" ${init:+--init "$init"} --out "$out" --no-progress
if [ ! -f "$out/evaluation_${iterations}.json" ]; then
  "$python" -m gmlib evaluate "$out/synthetic.pt" --profile "$profile" --models "$models" --seed 0 --device cpu \
    --json "$out/evaluation_${iterations}.json" --no-progress
fi
