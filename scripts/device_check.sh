#!/usr/bin/env bash
# Everything that needs a GPU, in one go, on a lent GPU machine (torch with CUDA, onnx and the CPU
# onnxruntime; no TensorRT, no network): the GPU tests, then the JSON report of
# benchmarks/device_report.py (fp16 CUDA parity of the student, clips/s of the video encoder at
# batch 1 and 32, the training step, GPU memory). Under 10 minutes on an H100/H200.
#   bash scripts/device_check.sh [REPORT.json]            # default: ${OUT:-device_out}/device_report.json
#   bash scripts/device_check.sh --dry-run [REPORT.json]  # CPU, tiny model, no pytest: checks the script and the report
# Installs froster-edge itself without dependencies (and any wheels carried in ./wheels); the exit
# code is non-zero when a GPU test fails or the report cannot be written.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
REPORT=${1:-${OUT:-device_out}/device_report.json}
DIR=$(dirname "$REPORT")
mkdir -p "$DIR"
PY=${PYTHON:-python}
status=0

if [ "$DRY" = 1 ]; then
  timeout 600 "$PY" benchmarks/device_report.py --dry-run --out "$REPORT" || status=1
  exit $status
fi

{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
} 2>&1 | tee "$DIR/machine.txt"
if [ -d wheels ]; then "$PY" -m pip install -q --no-index --find-links wheels wheels/*.whl || true; fi
"$PY" -m pip install -q --no-deps --no-build-isolation -e . || { echo "install failed"; exit 1; }
"$PY" -m pip install -q --no-index pytest pytest-timeout 2>/dev/null || true

# GPU tests (TensorRT ones skip with their reason where tensorrt is absent); the CPU suite is CI's job.
timeout 300 "$PY" -m pytest -q -p no:cacheprovider -m "gpu or trt" -rs --junitxml "$DIR/pytest_gpu.xml" tests \
  2>&1 | tee "$DIR/pytest_gpu.txt" || status=1
timeout 240 "$PY" benchmarks/device_report.py --out "$REPORT" --junit "$DIR/pytest_gpu.xml" \
  2>&1 | tee "$DIR/device_report.txt" || status=1
exit $status
