"""The bundle format, with no torch: what export writes and the runtime and calibration read.

manifest (file names, hashes, read/verify/update of manifest.json), labels (the labels.npz
table), label_builder (class texts -> a label table through any text encoder), relabel (new
classes for a bundle through its own ONNX text encoder), sessions (ONNX Runtime sessions as
array -> array encoders), parity (comparison and gate arithmetic, parity clips), engines
(TensorRT engine specs, cache keys, manifest records, and the builders that run where TensorRT
is installed). Only `froster_edge.export` needs torch.
"""
