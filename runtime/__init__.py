"""Streaming runtime: sources, clip sampling, backends, classifier, sinks. Imports no torch.

Installed as `froster_edge.runtime`. options (defaults), sources (reader threads, reconnects),
sampler (stride, ring buffer, hop), backends (trt, ort-trt, ort-cuda, ort-cpu, and the int8 trt-int8 and ort-cpu-int8; torch, the
reference, is the only code that imports torch, and only when chosen), classifier (scores,
smoothing, label hot-swap), sinks (JSON lines, text, overlay window, annotated video), mqtt (states,
events, availability, Home Assistant discovery; a bounded queue across broker outages), stats
(per-stage latency, drops), pipeline (the threads and the main loop), command (`froster-edge run`),
bench (`froster-edge bench`).
"""
