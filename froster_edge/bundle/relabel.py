"""New class texts for an exported bundle through its own ONNX text encoder: no student, no torch.

Prompts are tokenized with the bundle's tokenizer.json (open_clip's when the bundle has none and it
is installed, else refused in one line) and padded to the batch's longest prompt, or to the graph's
length where its token axis is static. `BundleTextEncoder.load` hashes the encoder and opens one
session, which a caller that changes the table often (the web view) keeps. Every change, adding or
removing classes, is written by one rule (`_store`): atomically, and for the bundle's own table with
its manifest re-hashed and the confidence temperature dropped.

See docs/export.md.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..errors import BundleError, ConfigError
from ..io import atomic_write_bytes, folder_lock, sha256_bytes
from ..prompts import ClassText
from . import manifest as mf
from .label_builder import build_label_table
from .labels import LabelTable, load_labels
from .sessions import TextEncoder, onnx_text_encoder
from .tokenizer import ClipTokenizer, open_clip_tokenizer


@dataclass(frozen=True)
class BundleTextEncoder:
    """A bundle's text encoder, loaded once: files verified, tokenizer read, one ONNX Runtime session."""

    bundle: Path
    encode: TextEncoder
    tokenizer: ClipTokenizer
    model_cfg: dict[str, Any]
    fingerprint: str
    logit_scale: float
    hashes: dict[str, str]  # the sha256 of the files verified at load (text encoder, tokenizer)

    @classmethod
    def load(cls, bundle: str | Path, providers: list[str] | None = None,
             manifest: dict[str, Any] | None = None) -> "BundleTextEncoder":
        """`manifest`: the bundle's, when the caller has just read it (else it is read here)."""
        bundle = Path(bundle)
        manifest = manifest if manifest is not None else mf.read_manifest(bundle)
        files = [mf.TEXT_ONNX] + ([mf.TOKENIZER_FILE] if mf.TOKENIZER_FILE in manifest["files"] else [])
        mf.verify_bundle(bundle, files)
        context = manifest["onnx"]["text_encoder"]["context_length"]
        tokenizer = (ClipTokenizer.from_file(bundle / mf.TOKENIZER_FILE, context) if mf.TOKENIZER_FILE in files
                     else _old_bundle(bundle, context))
        model = manifest["model"]
        return cls(bundle, onnx_text_encoder(bundle / mf.TEXT_ONNX, providers), tokenizer, model["model_cfg"],
                   model["fingerprint"], float(manifest["logit_scale"]), {f: manifest["files"][f] for f in files})

    def table(self, classes: list[ClassText]) -> LabelTable:
        """The label table of `classes` (prompt ensembles, as `labels` builds them)."""
        return build_label_table(classes, self.encode, self.model_cfg, self.fingerprint, self.logit_scale,
                                 tokenizer=self.tokenizer)

    def check_current(self, manifest: dict[str, Any]) -> None:
        """Refuse when the bundle's manifest no longer records the files this encoder was loaded from
        (the bundle was exported again while it was held): a string comparison, nothing re-read."""
        if any(manifest["files"].get(name) != digest for name, digest in self.hashes.items()):
            raise BundleError(f"{self.bundle}: the text encoder changed since it was loaded (bundle exported again?); "
                              "restart to use the new one")


def relabel_bundle(bundle: str | Path, classes: list[ClassText], out: str | Path | None = None,
                   append: bool = False, encoder: BundleTextEncoder | None = None) -> LabelTable:
    """A label table for `classes` through the bundle's own ONNX text encoder (no student, no retraining).

    Written to `out`, or into the bundle (whose manifest is then re-hashed) when `out` is None.
    `encoder`: one loaded from this bundle earlier and kept (else one is loaded for this call).
    """
    bundle = Path(bundle)
    manifest = mf.read_manifest(bundle)
    if encoder is None:
        encoder = BundleTextEncoder.load(bundle, manifest=manifest)
    elif encoder.bundle.resolve() != bundle.resolve():
        raise BundleError(f"the text encoder given was loaded from {encoder.bundle}, not from {bundle}")
    encoder.check_current(manifest)
    table = encoder.table(classes)  # the slow part, outside the lock
    with table_lock(Path(out) if out is not None else bundle / mf.LABELS_FILE):
        if out is None:
            manifest = mf.read_manifest(bundle)  # as another process may have just left it
        return _store(table, bundle, manifest, out, append)


def remove_classes(bundle: str | Path, names: Iterable[str], out: str | Path | None = None) -> LabelTable:
    """The table (`out`, or the bundle's own) without the classes `names` (any case), written back.

    Nothing is re-encoded: the other rows are kept byte for byte. A name not in the table, or
    removing every class, is a ConfigError.
    """
    bundle = Path(bundle)
    target = Path(out) if out is not None else bundle / mf.LABELS_FILE
    with table_lock(target):
        manifest = mf.read_manifest(bundle)
        model = manifest["model"]
        current = load_labels(target, model["fingerprint"], int(model["embed_dim"]))
        return _store(_without(current, names), bundle, manifest, out)


def _without(current: LabelTable, names: Iterable[str]) -> LabelTable:
    keys = [n.casefold() for n in current.names]
    drop = set()
    for name in names:
        key = " ".join(str(name).split()).casefold()
        if key not in keys:
            raise ConfigError(f"{str(name).strip()!r} is not in the label table")
        drop.add(keys.index(key))
    if len(drop) == len(keys):
        raise ConfigError("a label table needs at least one class")
    return current.select([i for i in range(len(keys)) if i not in drop])


@contextmanager
def table_lock(target: Path) -> Iterator[None]:
    """Hold an exclusive lock on the folder of the table `target` while a change reads, writes and
    records it: the web view and `labels --append` in other processes then take turns instead of
    writing over each other's change. A lock on the folder (flock), which outlives the rename of
    the table; released by the kernel however the holder ends."""
    with folder_lock(Path(target).parent):
        yield


def _store(table: LabelTable, bundle: Path, manifest: dict[str, Any], out: str | Path | None,
           append: bool = False) -> LabelTable:
    """Write a changed table atomically: to `out`, or into the bundle with its manifest re-hashed.
    The bundle's own table is never written through a link that leads out of the bundle."""
    if out is not None:
        return write_labels(table, out, append)
    own = bundle / mf.LABELS_FILE
    if own.is_symlink() and not own.resolve().is_relative_to(bundle.resolve()):
        raise BundleError(f"{own} is a link to {os.readlink(own)}, out of the bundle: refused (nothing written); "
                          "put the table itself in the bundle")
    if append:
        table = load_labels(own, table.fingerprint, table.dim).extend(table)
    data = table.to_bytes()
    # the new manifest is staged before the table is renamed in, so a kill between the two renames
    # is finished (or rolled back) by the next read_manifest; a temperature fitted for the old
    # classes does not carry over: the new table starts at T = 1
    mf.stage_files(bundle, manifest, {mf.LABELS_FILE: sha256_bytes(data)},
                   labels={"file": mf.LABELS_FILE, "classes": len(table.names)}, confidence=None)
    atomic_write_bytes(own, data)
    mf.commit_staged(bundle)
    return table


def _old_bundle(bundle: Path, context: int) -> ClipTokenizer:
    """A bundle exported before bundles carried tokenizer.json: open_clip's tokenizer, if installed."""
    try:
        return open_clip_tokenizer(context)
    except ImportError as e:
        raise BundleError(f"{bundle} has no {mf.TOKENIZER_FILE} (exported by an older froster-edge) and open_clip is not "
                          "installed to tokenize with: export the bundle again, or pip install open_clip_torch") from e


def write_labels(table: LabelTable, target: str | Path, append: bool = False) -> LabelTable:
    """Save `table` to `target`; with `append`, after the classes already there (same model only)."""
    if append:
        table = load_labels(target, table.fingerprint, table.dim).extend(table)
    table.save(target)
    return table
