"""Export stage: ONNX encoders, parity gates, TensorRT engines, label tables, bundle manifest.

Installed as `froster_edge.export`. Filled in by the export issue; nothing here yet.
"""
