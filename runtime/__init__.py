"""Streaming runtime: sources, clip assembly, backends, classifier, sinks. Imports no torch.

Installed as `froster_edge.runtime`. options (defaults), sources (reader threads, reconnects),
assembly (sampling, ring buffer, hop), backends (TensorRT, ONNX Runtime, INT8, and torch, the only
one that imports torch, when chosen), classifier, sinks, stats, pipeline (threads and main loop),
command (`froster-edge run`), bench (`froster-edge bench`); the site services are in `site/`.

See docs/runtime.md.
"""
