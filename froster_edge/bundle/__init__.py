"""The bundle format, with no torch: what export writes and the runtime and calibration read.

manifest (file names, hashes, manifest.json), labels (labels.npz), label_builder and relabel
(class texts -> label tables), sessions (ONNX Runtime encoders), parity (gate arithmetic), engines
(TensorRT specs, cache keys, builders), trt_check + trt_ops (the static TensorRT-compatibility
check, on the CPU). Only `froster_edge.export` needs torch.

See docs/export.md.
"""
