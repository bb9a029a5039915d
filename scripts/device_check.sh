#!/usr/bin/env bash
# Everything that needs a GPU, in one go, on a lent GPU machine (no TensorRT there, no network).
#   bash scripts/device_check.sh            # results under ${OUT:-device_out}
# Uses the machine's own torch/onnx/onnxruntime; installs froster-edge itself without
# dependencies (and any wheels carried in ./wheels, e.g. open_clip_torch and its small deps).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-device_out}
mkdir -p "$OUT"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
} | tee "$OUT/machine.txt"

if [ -d wheels ]; then python -m pip install -q --no-index --find-links wheels wheels/*.whl || true; fi
python -m pip install -q --no-deps --no-build-isolation -e . || { echo "install failed"; exit 1; }
python -m pip install -q pytest pytest-timeout 2>/dev/null || true

status=0
# GPU tests (and TensorRT tests where tensorrt is installed); the CPU suite is CI's job.
python -m pytest -q -m "gpu or trt" -rs tests 2>&1 | tee "$OUT/pytest_gpu.txt" || status=1
# Student speed on the GPU: neighbour attention vs plain CLIP, and a training step of ViT-B/16.
python benchmarks/bench_student.py --model ViT-B-16 --frames 8 --batch 8 --reps 10 \
  --train-model ViT-B-16 --train-size 224 --train-batch 8 --device cuda --json "$OUT/bench_student_cuda.json" \
  2>&1 | tee "$OUT/bench_student_cuda.txt" || status=1
# Training on the GPU: ViT-B/16 T=8 step with AMP and a 400-class text matrix (K400), the teacher's
# share, and whether the data loader (all cores) keeps up with the step.
python benchmarks/bench_train.py --device cuda --model ViT-B-16 --frames 8 --size 224 --batch 8 --classes 400 \
  --reps 10 --workers "$(nproc)" --loader-batches 8 --json "$OUT/bench_train_cuda.json" \
  2>&1 | tee "$OUT/bench_train_cuda.txt" || status=1
# Export on the GPU: torch CUDA fp32 vs fp16 (and ONNX Runtime CUDA where installed), parity and timings.
python benchmarks/bench_export.py --model ViT-B-16 --frames 8 --streams 1 --reps 20 --device cuda \
  --json "$OUT/bench_export_cuda.json" 2>&1 | tee "$OUT/bench_export_cuda.txt" || status=1
# Runtime on the GPU (its GPU tests ran above): the torch backend on CUDA against ONNX Runtime, and any
# GPU backend present (ort-cuda, ort-trt, trt; the others are listed as unavailable), ViT-B/16 T=8.
python benchmarks/bench_runtime.py --model ViT-B-16 --frames 8 --streams 1 --backend torch --backend ort-cpu \
  --backend ort-cuda --backend ort-trt --backend trt --reps 3 --json "$OUT/bench_runtime_cuda.json" \
  2>&1 | tee "$OUT/bench_runtime_cuda.txt" || status=1
exit $status
