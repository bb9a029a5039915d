"""Calibration stage: INT8 quantization behind measured gates, confidence temperature.

Installed as `froster_edge.calibration`. Filled in by the calibration issue; nothing here yet.
"""
