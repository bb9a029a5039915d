"""Export stage: a student in, a deployable bundle out (installed as `froster_edge.export`).

onnx_graphs (the two graphs and their fp16 copy), parity (gates on real clips), labels (the
label-table file; numpy only), label_builder (prompt ensembles through torch or ONNX), manifest
(hashes; no torch), tensorrt_build (engines and their cache key), options (defaults), bundle
(`export_bundle`, `relabel_bundle`). The runtime reads bundles through `labels` and `manifest`
alone, so nothing it needs imports torch.
"""
