"""Export stage: a student in, a deployable bundle out (installed as `froster_edge.export`).

Only what needs torch lives here: onnx_graphs (the two graphs and their fp16 copy), reference
(the torch student as array encoders, the parity gates' reference), bundle (`export_bundle`),
options (defaults; no torch, so the CLI reads them fast). The format it writes (manifest, label
tables, parity arithmetic, engine records) is `froster_edge.bundle`, which imports no torch.
"""
