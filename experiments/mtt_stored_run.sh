#!/usr/bin/env bash
# A stored trajectory-matching run: experts on DATASET at PROFILE (`python -m gmlib experts`, kept
# in runs/buffers/, which git ignores; the buffer's manifest, with the checksum of every expert
# file, is copied into the result), then MTT at IPC images per class on that buffer for ITERATIONS
# (default: the profile's), then the evaluation under the papers' protocol (profile `paper`, DSA's
# augmentation) with MODELS networks, and once more with the learned learning rate (MTT's own
# protocol) with LEARNED_LR_MODELS networks (default MODELS; 0 skips it: at 10 images per class one
# network takes about 13 minutes on one CPU core).
# Writes results/mtt_<dataset>_ipc<IPC>_<profile>/. Resumable: experts are kept one by one, the
# distillation continues from its checkpoint, finished evaluations are not repeated.
#
#   OMP_NUM_THREADS=1 bash experiments/mtt_stored_run.sh DATASET [PROFILE] [MODELS] [IPC] [ITERATIONS] [LEARNED_LR_MODELS]
set -euo pipefail
dataset=$1 profile=${2:-cpu} models=${3:-10} ipc=${4:-1} iterations=${5:-} learned_lr_models=${6:-${3:-10}}
cd "$(dirname "$0")/.."
python=${PYTHON:-python}
buffer=runs/buffers/${dataset}_${profile}
out=results/mtt_${dataset}_ipc${ipc}_${profile}
"$python" -m gmlib experts --dataset "$dataset" --profile "$profile" --device cpu --out "$buffer" --no-progress
"$python" -m gmlib distill --dataset "$dataset" --ipc "$ipc" --method mtt --buffer "$buffer" --profile "$profile" \
  ${iterations:+--iterations "$iterations"} --device cpu --out "$out" --no-progress
cp "$buffer/manifest.json" "$out/buffer_manifest.json"
iterations=$("$python" -c "import json, sys; print(len(json.load(open(sys.argv[1]))['losses']))" "$out/history.json")
if [ ! -f "$out/evaluation_${iterations}.json" ]; then
  "$python" -m gmlib evaluate "$out/synthetic.pt" --profile paper --models "$models" --seed 0 --device cpu \
    --json "$out/evaluation_${iterations}.json" --no-progress
fi
if [ "$learned_lr_models" -gt 0 ] && [ ! -f "$out/evaluation_${iterations}_learned_lr.json" ]; then
  "$python" -m gmlib evaluate "$out/synthetic.pt" --learned-lr --profile paper --models "$learned_lr_models" --seed 0 \
    --device cpu --json "$out/evaluation_${iterations}_learned_lr.json" --no-progress
fi
