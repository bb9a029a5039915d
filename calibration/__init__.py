"""Calibration stage: INT8 quantization behind measured gates, confidence temperature.

Installed as `froster_edge.calibration`. clips (calibration and gate clips, cropped as the
runtime does), cpu_features (the CPU's 8-bit dot product, no torch), variants (the INT8
integer types and which to try on a CPU), int8 (ONNX Runtime QDQ and its range cache), trt_route (the TensorRT
int8 engine, built from a symmetric-int8 QDQ model), gate (agreement and speed-up on held-out clips), confidence
(temperature, ECE), options (defaults; no torch), calibrate (`froster-edge calibrate`'s library).
"""
