"""ONNX Runtime sessions over a bundle's graphs, as plain array -> array encoders (no torch).

Export's parity gates, relabelling and calibration's INT8 gate call the graphs this way; the
runtime's backends add providers, threads and I/O binding on top (runtime/backends.py).

See docs/export.md.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from pathlib import Path
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

Encoder = Callable[[np.ndarray], np.ndarray]
VideoEncoder = Encoder  # uint8 (S, T, H, W, 3) -> float32 (S, D)
TextEncoder = Encoder  # int64 tokens (N, L) -> float32 (N, D)


@functools.cache
def preload_gpu_libraries() -> None:
    """Load the CUDA and cuDNN libraries of the nvidia-* pip wheels before a CUDA or TensorRT session.

    onnxruntime-gpu's provider libraries carry no RPATH to those wheels: where nothing else loaded them
    (torch does, as a side effect of its import; the torch-free runtime does not) the providers fail to
    load and ONNX Runtime falls back to the CPU. `onnxruntime.preload_dlls` (1.21+) loads them from the
    nvidia site packages, then from the default paths (a Jetson's system CUDA). What it prints goes
    to stderr, never into a run's stdout.
    """
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        log.info("onnxruntime %s has no preload_dlls (1.21+): CUDA libraries must be on the loader path (a Jetson's are)",
                 ort.__version__)
        return
    with contextlib.redirect_stdout(sys.stderr):
        try:
            preload(cuda=True, cudnn=True, msvc=False)
        except (OSError, RuntimeError) as e:  # the session's own error then says which library is missing
            log.warning("onnxruntime.preload_dlls failed: %s", e)


def open_session(path: str | Path, providers: list[str] | None = None):
    """An onnxruntime.InferenceSession on `path` (CPU unless `providers` are given)."""
    import onnxruntime as ort

    if any(p != "CPUExecutionProvider" for p in providers or []):
        preload_gpu_libraries()
    return ort.InferenceSession(str(path), providers=providers or ["CPUExecutionProvider"])


def onnx_encoder(path: str | Path, providers: list[str] | None = None, input_dtype: type | None = None) -> Encoder:
    """The graph's first output as float32, fed its one input (cast to `input_dtype` when given)."""
    session = open_session(path, providers)
    name = session.get_inputs()[0].name

    def encode(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: x if input_dtype is None else x.astype(input_dtype)})[0].astype(np.float32)

    return encode


def onnx_video_encoder(path: str | Path, providers: list[str] | None = None) -> VideoEncoder:
    return onnx_encoder(path, providers)


def onnx_text_encoder(path: str | Path, providers: list[str] | None = None) -> TextEncoder:
    """Token ids (N, L) of any L up to the context through the text graph.

    Graphs exported since the token axis became dynamic take L as given (the tokenizer's
    `pad_to="longest"`); an older graph with a static length gets the zeros it expects appended
    (padding after the end token changes nothing in a causal tower that pools there).
    """
    session = open_session(path, providers)
    name, shape = session.get_inputs()[0].name, session.get_inputs()[0].shape
    static = shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None

    def encode(tokens: np.ndarray) -> np.ndarray:
        tokens = tokens.astype(np.int64)
        if static is not None and tokens.shape[1] < static:
            tokens = np.pad(tokens, ((0, 0), (0, static - tokens.shape[1])))
        return session.run(None, {name: tokens})[0].astype(np.float32)

    return encode

