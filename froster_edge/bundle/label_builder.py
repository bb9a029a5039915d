"""Encoding class texts into a label table, through any tokens -> array text encoder (no torch here).

Every class gets FROSTER's prompt ensemble (the templates + the bare text); its row is the mean of
the normalised prompt embeddings, re-normalised, as the student classifies. Prompts longer than the
context are refused, never cut (a cut description changes the class). Each batch is padded only to
its longest prompt, since the encoder's cost grows with the tokens fed.

See docs/export.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError
from ..prompts import ClassText, encode_per_class, prompts_for, repeated_name
from .labels import LabelTable
from .sessions import TextEncoder
from .tokenizer import ClipTokenizer, open_clip_tokenizer


def _tokenizer(model_cfg: dict[str, Any], tokenizer: ClipTokenizer | None) -> ClipTokenizer:
    """The given tokenizer, or one built from the installed open_clip's vocabulary."""
    return tokenizer or open_clip_tokenizer(model_cfg["text_cfg"].get("context_length", 77))


def check_prompts(classes: list[ClassText], model_cfg: dict[str, Any], tokenizer: ClipTokenizer | None = None) -> list[list[str]]:
    """The prompt ensemble of each class; ConfigError on a duplicate class or an over-long prompt."""
    if not classes:
        raise ConfigError("no classes to encode")
    tokenizer = _tokenizer(model_cfg, tokenizer)
    context = tokenizer.context_length
    if (dup := repeated_name(c.name for c in classes)) is not None:
        raise ConfigError(f"class {classes[dup[1]].name!r} appears twice")
    out = []
    for c in classes:
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


def average_prompts(feats: np.ndarray) -> np.ndarray:
    """Mean of normalised prompt embeddings per class, re-normalised: (C, P, D) -> (C, D).

    The numpy twin of `froster_edge.model.student.average_prompts` (which must stay torch for autograd).
    """
    feats = np.asarray(feats, np.float32)
    feats = feats / np.maximum(np.linalg.norm(feats, axis=-1, keepdims=True), 1e-12)
    mean = feats.mean(axis=1)
    return mean / np.maximum(np.linalg.norm(mean, axis=-1, keepdims=True), 1e-12)


def build_label_table(classes: list[ClassText], encode: TextEncoder, model_cfg: dict[str, Any], fingerprint: str,
                      logit_scale: float, batch_size: int = 256, tokenizer: ClipTokenizer | None = None) -> LabelTable:
    """Encode every class's prompt ensemble with `encode` into a validated LabelTable.

    `tokenizer`: the bundle's; by default one built from the installed open_clip (export time).
    """
    tokenizer = _tokenizer(model_cfg, tokenizer)
    prompts = check_prompts(classes, model_cfg, tokenizer)

    def encode_all(flat: list[str]) -> np.ndarray:
        # each batch padded only to its longest prompt: the zeros after the end token change nothing
        return np.concatenate([encode(tokenizer(flat[i:i + batch_size], pad_to="longest"))
                               for i in range(0, len(flat), batch_size)])

    table = average_prompts(encode_per_class(prompts, encode_all))
    return LabelTable(names=[c.name for c in classes], texts=[c.text for c in classes], embeddings=table,
                      logit_scale=float(logit_scale), fingerprint=fingerprint, prompts=prompts)
