#!/usr/bin/env bash
# Everything that needs a GPU, in one go, on a lent GPU machine: a typical GPU image (Python 3.12,
# torch with CUDA, onnx, the CPU onnxruntime, cuda-bindings, opencv, tokenizers, pytest; often no
# network, no TensorRT). It installs froster-edge without dependencies and the wheels `make
# device-wheels` put in ./wheels (open_clip_torch, ftfy, wcwidth, av, paho-mqtt), checks that every
# module it needs imports (one line per missing one, then it stops), runs the GPU tests and writes
# one JSON report (benchmarks/device_report.py). Under 8 minutes on one H100 by construction: the
# steps' time limits add up to 450 s (installs 60 + 60, GPU tests 180, report 150), the figures use
# small iteration counts.
#   bash scripts/device_check.sh [REPORT.json]            # default: ${OUT:-device_out}/device_report.json
#   bash scripts/device_check.sh --dry-run [REPORT.json]  # CPU, tiny model, no install, no pytest
# PYTHON picks the interpreter (default python3). The exit code is non-zero when a module is
# missing, a GPU test fails or the report cannot be written.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
REPORT=${1:-${OUT:-device_out}/device_report.json}
DIR=$(dirname "$REPORT")
mkdir -p "$DIR"
PY=${PYTHON:-python3}
status=0

if [ "$DRY" = 0 ]; then
  {
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))" || true
  } 2>&1 | tee "$DIR/machine.txt"
  if compgen -G "wheels/*.whl" > /dev/null; then
    timeout 60 "$PY" -m pip install -q --no-index --no-deps wheels/*.whl || echo "device_check: installing wheels/*.whl failed"
  fi
  timeout 60 "$PY" -m pip install -q --no-deps --no-build-isolation -e . || { echo "device_check: installing froster-edge failed"; exit 1; }
fi

# Every module the tests and the report import: one line each for what is missing, the report says
# the same, and nothing else runs (a missing one would stop pytest at collection and the report at import).
"$PY" - "$REPORT" <<'EOF' || exit 1
import importlib, json, sys
NEEDED = {"torch": "torch", "open_clip": "open_clip_torch", "ftfy": "ftfy", "wcwidth": "wcwidth", "av": "av",
          "paho.mqtt": "paho-mqtt", "onnx": "onnx", "onnxruntime": "onnxruntime", "cv2": "opencv-python-headless",
          "tokenizers": "tokenizers", "pytest": "pytest"}
WHEELS = {"open_clip_torch", "ftfy", "wcwidth", "av", "paho-mqtt"}  # what a typical GPU image lacks
missing = []
for module, dist in NEEDED.items():
    try:
        importlib.import_module(module)
    except Exception as e:  # ImportError, or a broken install raising its own error
        carried = " (make device-wheels puts its wheel in ./wheels)" if dist in WHEELS else ""
        missing.append(f"device_check: cannot import {module} ({type(e).__name__}): install {dist}{carried}")
if missing:
    print("\n".join(missing))
    with open(sys.argv[1], "w") as f:
        json.dump({"missing": missing, "ran": False}, f, indent=2)
    sys.exit(1)
EOF

if [ "$DRY" = 1 ]; then
  timeout 300 "$PY" benchmarks/device_report.py --dry-run --out "$REPORT" || status=1
  exit $status
fi

# GPU tests (TensorRT ones skip with their reason where tensorrt is absent); the CPU suite is CI's job.
# A module that cannot be collected is reported as an error and the others still run.
timeout 180 "$PY" -m pytest -q -p no:cacheprovider -m "gpu or trt" -rs --continue-on-collection-errors \
  --junitxml "$DIR/pytest_gpu.xml" tests 2>&1 | tee "$DIR/pytest_gpu.txt" || status=1
timeout 150 "$PY" benchmarks/device_report.py --out "$REPORT" --junit "$DIR/pytest_gpu.xml" \
  2>&1 | tee "$DIR/device_report.txt" || status=1
exit $status
