"""Streaming runtime: sources, clip sampling, backends, classifier, sinks. Imports no torch.

Installed as `froster_edge.runtime`. Filled in by the runtime issue; nothing here yet.
"""
