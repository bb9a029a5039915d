"""Export stage: ONNX encoders, parity gates, TensorRT engines, label tables, bundle manifest.

Installed as `froster_edge.export`. So far: the two ONNX graphs (`onnx_graphs`). The parity
gates, label tables, manifest, TensorRT engines and the `export` / `labels` commands come next.
"""
