"""froster-edge: open-vocabulary video action recognition, from FROSTER training to the edge.

The package root stays import-light (no torch): the runtime sub-package must import on a device
that only has onnxruntime or TensorRT. Model code lives in `froster_edge.model`.

See docs/architecture.md.
"""

__version__ = "0.1.0"
