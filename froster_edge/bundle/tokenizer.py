"""CLIP's text tokenizer without torch or open_clip: what a device needs to encode new action names.

open_clip's byte-level BPE and word split run in Hugging Face `tokenizers`, built at export from
open_clip's vocabulary and shipped as the bundle's `tokenizer.json`; the text cleaning (ftfy, HTML
unescape, whitespace, lower case) runs in Python as open_clip's does. Output is padded to the
context (open_clip's form) or only to the batch's longest text. tests/test_tokenizer.py checks the
ids against open_clip's.

See docs/export.md.
"""

from __future__ import annotations

import gzip
import html
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import BundleError, MissingCapability

START, END = "<start_of_text>", "<end_of_text>"
SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""  # open_clip's word regex
PadTo = Literal["context", "longest"]
MERGES = 49152 - 256 - 2  # open_clip keeps the first 48,894 merges of the vocabulary file


def _require_tokenizers():
    try:
        import tokenizers
    except ImportError as e:
        raise MissingCapability("the tokenizers package is not installed: pip install tokenizers") from e
    return tokenizers


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table, which CLIP's vocabulary is written in."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=False))


def clean(text: str) -> str:
    """open_clip's 'lower' cleaning: ftfy (when installed), HTML entities, whitespace, lower case."""
    try:
        import ftfy

        text = ftfy.fix_text(text)
    except ImportError:  # ftfy only repairs mis-decoded text (mojibake); clean UTF-8 is unchanged
        pass
    text = html.unescape(html.unescape(text)).strip()
    return " ".join(text.split()).strip().lower()


@dataclass
class ClipTokenizer:
    """Token ids as open_clip's `SimpleTokenizer` makes them, from a `tokenizers.Tokenizer`."""

    tokenizer: Any  # tokenizers.Tokenizer
    context_length: int = 77

    def __post_init__(self) -> None:
        self.sot = self.tokenizer.token_to_id(START)
        self.eot = self.tokenizer.token_to_id(END)
        if self.sot is None or self.eot is None:
            raise BundleError(f"the tokenizer has no {START} / {END} tokens: it is not CLIP's")

    @classmethod
    def from_bpe_vocab(cls, path: str | Path, context_length: int = 77) -> "ClipTokenizer":
        """Build from open_clip's `bpe_simple_vocab_16e6.txt.gz` (what export does)."""
        tk = _require_tokenizers()
        lines = gzip.open(path).read().decode("utf-8").split("\n")[1:MERGES + 1]
        merges = [tuple(line.split()) for line in lines]
        symbols = list(_bytes_to_unicode().values())
        vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [START, END]
        model = tk.models.BPE(vocab={v: i for i, v in enumerate(vocab)}, merges=merges, end_of_word_suffix="</w>")
        tokenizer = tk.Tokenizer(model)
        tokenizer.pre_tokenizer = tk.pre_tokenizers.Sequence([
            tk.pre_tokenizers.Split(tk.Regex(SPLIT), behavior="removed", invert=True),
            tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
        tokenizer.decoder = tk.decoders.ByteLevel()
        tokenizer.add_special_tokens([START, END])
        return cls(tokenizer, context_length)

    @classmethod
    def from_open_clip(cls, context_length: int = 77) -> "ClipTokenizer":
        """Build from the vocabulary file of the installed open_clip (export time; needs open_clip)."""
        from open_clip.tokenizer import default_bpe

        return cls.from_bpe_vocab(default_bpe(), context_length)

    @classmethod
    def from_file(cls, path: str | Path, context_length: int = 77) -> "ClipTokenizer":
        """Load a bundle's tokenizer.json."""
        tk = _require_tokenizers()
        try:
            return cls(tk.Tokenizer.from_file(str(path)), context_length)
        except Exception as e:  # tokenizers raises a bare Exception for a bad file
            raise BundleError(f"{path} is not a readable tokenizer file: {str(e).splitlines()[0] if str(e) else e}") from e

    def save(self, path: str | Path) -> None:
        from ..io import atomic_write_text

        atomic_write_text(path, self.tokenizer.to_str())

    def encode(self, text: str) -> list[int]:
        """The BPE ids of `text` alone (no start/end ids, not cut)."""
        return self.tokenizer.encode(clean(text), add_special_tokens=False).ids

    def __call__(self, texts: list[str], pad_to: PadTo = "context") -> np.ndarray:
        """int64 (N, L): start, ids, end, zeros; a text too long is cut and ends in `end`.

        `pad_to="context"`: L = context_length, open_clip's form. `"longest"`: L = the longest text's
        length (end token included), which is all a causal text tower pooling at the end token reads:
        the zeros after it cannot change the embedding, and each costs as much as a real token.
        """
        if pad_to not in ("context", "longest"):
            raise ValueError(f"pad_to must be 'context' or 'longest', not {pad_to!r}")
        rows = []
        for text in texts:
            ids = [self.sot] + self.encode(text) + [self.eot]
            if len(ids) > self.context_length:
                ids = ids[:self.context_length]
                ids[-1] = self.eot
            rows.append(ids)
        length = self.context_length if pad_to == "context" else max((len(r) for r in rows), default=2)
        out = np.zeros((len(texts), length), np.int64)
        for i, ids in enumerate(rows):
            out[i, :len(ids)] = ids
        return out


@lru_cache(maxsize=4)
def open_clip_tokenizer(context_length: int = 77) -> ClipTokenizer:
    """ClipTokenizer.from_open_clip, built once per context length (building takes a second or two)."""
    return ClipTokenizer.from_open_clip(context_length)


def tokenizer_record(tokenizer: ClipTokenizer, file: str) -> dict[str, Any]:
    """What the manifest says about the bundle's tokenizer."""
    return {"file": file, "kind": "clip-bpe", "library": "tokenizers", "clean": "ftfy, html unescape, whitespace, lower",
            "context_length": tokenizer.context_length, "start_id": tokenizer.sot, "end_id": tokenizer.eot}


__all__ = ["ClipTokenizer", "clean", "open_clip_tokenizer", "tokenizer_record"]
