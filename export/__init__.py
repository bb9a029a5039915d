"""Export stage: a student in, a deployable bundle out (installed as `froster_edge.export`).

Only what needs torch lives here: onnx_graphs (the two graphs and their fp16 copy), reference (the
torch student as array encoders for the parity gates), bundle (`export_bundle`), options (no torch).
The format it writes is `froster_edge.bundle`, which imports no torch.

See docs/export.md.
"""
