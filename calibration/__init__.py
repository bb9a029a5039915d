"""Calibration stage: INT8 candidates behind one gate, and the confidence temperature.

Installed as `froster_edge.calibration`; imports no torch. clips (calibration and gate clips),
cpu_features, variants and int8 (ONNX Runtime QDQ for CPUs), trt_route (the TensorRT INT8 engine),
gate (agreement and speed-up on held-out clips), confidence (temperature, ECE), options, calibrate
(`froster-edge calibrate`'s library).

See docs/calibration.md.
"""
