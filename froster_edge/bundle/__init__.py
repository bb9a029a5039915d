"""The bundle format, with no torch: what export writes and the runtime and calibration read.

manifest (file names, hashes, read/verify/update of manifest.json), labels (the labels.npz
table), label_builder (class texts -> a label table through any text encoder), relabel (new
classes for a bundle through its own ONNX text encoder, loaded once and kept by a caller that
changes the table often; classes removed; one rule for writing a changed table), sessions (ONNX Runtime sessions as
array -> array encoders), parity (comparison and gate arithmetic, parity clips), engines
(TensorRT engine specs, cache keys, manifest records, and the builders that run where TensorRT
is installed), trt_check + trt_ops (the static TensorRT-compatibility check of an ONNX graph, on
the CPU, with onnx). Only `froster_edge.export` needs torch.
"""
