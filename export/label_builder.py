"""Encoding class texts into a label table, through the torch student or the bundle's ONNX text encoder.

Every class gets FROSTER's prompt ensemble (28 templates + the bare text); the table row is the
mean of the normalised prompt embeddings, re-normalised, exactly as the student classifies.
Prompts longer than the text encoder's context are refused rather than silently cut, since a
cut description changes what the class means.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import ConfigError
from ..model.clip import get_tokenizer, tokenize
from ..model.student import VideoStudent, average_prompts
from ..prompts import ClassText, prompts_for
from .labels import LabelTable

TextEncoder = Callable[[np.ndarray], np.ndarray]  # int64 tokens (N, L) -> float32 (N, D)


def check_prompts(classes: list[ClassText], model_cfg: dict[str, Any]) -> list[list[str]]:
    """The prompt ensemble of each class; ConfigError on a duplicate class or an over-long prompt."""
    if not classes:
        raise ConfigError("no classes to encode")
    context = model_cfg["text_cfg"].get("context_length", 77)
    tokenizer = get_tokenizer(context)
    seen: dict[str, str] = {}
    out = []
    for c in classes:
        if c.name.casefold() in seen:
            raise ConfigError(f"class {c.name!r} appears twice")
        seen[c.name.casefold()] = c.name
        prompts = prompts_for(c)
        lengths = [len(tokenizer.encode(p)) + 2 for p in prompts]  # + start- and end-of-text tokens
        n = max(lengths)
        longest = prompts[lengths.index(n)]
        if n > context:
            raise ConfigError(
                f"class {c.name!r}: the prompt {longest[:60]!r}... is {n} tokens, over the text encoder's {context}; "
                "shorten its description")
        out.append(prompts)
    return out


def build_label_table(classes: list[ClassText], encode: TextEncoder, model_cfg: dict[str, Any], fingerprint: str,
                      logit_scale: float, batch_size: int = 256) -> LabelTable:
    """Encode every class's prompt ensemble with `encode` into a validated LabelTable."""
    prompts = check_prompts(classes, model_cfg)
    flat = [p for ps in prompts for p in ps]
    tokens = tokenize(flat, model_cfg).numpy()
    feats = np.concatenate([encode(tokens[i:i + batch_size]) for i in range(0, len(flat), batch_size)])
    per_class = len(prompts[0])  # every class has the same ensemble size
    table = average_prompts(torch.from_numpy(feats).float().reshape(len(classes), per_class, -1)).numpy()
    return LabelTable(names=[c.name for c in classes], texts=[c.text for c in classes], embeddings=table,
                      logit_scale=float(logit_scale), fingerprint=fingerprint, prompts=prompts)


def torch_text_encoder(student: VideoStudent) -> TextEncoder:
    device = student.logit_scale.device

    def encode(tokens: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return student.encode_text(torch.from_numpy(tokens).to(device)).float().cpu().numpy()

    return encode


def onnx_text_encoder(path: str | Path, providers: list[str] | None = None) -> TextEncoder:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=providers or ["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def encode(tokens: np.ndarray) -> np.ndarray:
        return session.run(None, {name: tokens.astype(np.int64)})[0]

    return encode
