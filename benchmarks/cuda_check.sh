#!/bin/bash
# The CUDA checks, for a machine with an NVIDIA GPU and a Python that has torch, numpy,
# scipy, pandas, safetensors, click, tqdm, pytest and hypothesis (the models need no web
# stack): the models' tests on CUDA, `knobs train` on CUDA and the 5-fold evaluation on
# CUDA. Results go to $OUT (default reports/cuda). Run from the repository root:
#     KNOBS_DATA_DIR=../shared/datasets bash benchmarks/cuda_check.sh
set -u
OUT=${OUT:-reports/cuda}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
PY=${PYTHON:-python3}
nvidia-smi -L
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
echo "== tests/models on CUDA (KNOBS_TEST_DEVICE=cuda)"
KNOBS_TEST_DEVICE=cuda timeout 300 $PY -m pytest -q -p no:cacheprovider tests/models \
  > "$OUT/tests-cuda.log" 2>&1; echo "pytest rc=$?"; tail -5 "$OUT/tests-cuda.log"
echo "== knobs train on CUDA"
timeout 300 $PY -m benchmarks.train_time --device cuda --out "$OUT/training-cuda.json" 2>&1 \
  | grep -v lambda | tail -4
echo "== knobs evaluate, 5 folds, on CUDA"
start=$(date +%s)
timeout 600 $PY -m app.cli evaluate --dataset ml-latest-small --folds 5 --device cuda \
  --json "$OUT/quality-cuda.json" --md "$OUT/quality-cuda.md" --no-progress \
  > "$OUT/evaluate-cuda.log" 2>&1
echo "evaluate rc=$? in $(( $(date +%s) - start )) s"
sed -n '/## Targets/,$p' "$OUT/quality-cuda.md"
