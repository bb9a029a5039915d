"""New class texts for an exported bundle through its own ONNX text encoder: no student, no torch."""

from __future__ import annotations

from pathlib import Path

from ..prompts import ClassText
from . import manifest as mf
from .label_builder import build_label_table
from .labels import LabelTable, load_labels
from .sessions import onnx_text_encoder


def relabel_bundle(bundle: str | Path, classes: list[ClassText], out: str | Path | None = None,
                   append: bool = False) -> LabelTable:
    """A label table for `classes` through the bundle's own ONNX text encoder (no student, no retraining).

    Written to `out`, or into the bundle (whose manifest is then re-hashed) when `out` is None.
    """
    bundle = Path(bundle)
    manifest = mf.verify_bundle(bundle, [mf.TEXT_ONNX])
    model = manifest["model"]
    table = build_label_table(classes, onnx_text_encoder(bundle / mf.TEXT_ONNX), model["model_cfg"],
                              model["fingerprint"], float(manifest["logit_scale"]))
    table = write_labels(table, Path(out) if out is not None else bundle / mf.LABELS_FILE, append)
    if out is None:
        # a temperature fitted for the old classes does not carry over: the new table starts at T = 1
        mf.update_files(bundle, manifest, [mf.LABELS_FILE], labels={"file": mf.LABELS_FILE, "classes": len(table.names)},
                        confidence=None)
    return table


def write_labels(table: LabelTable, target: str | Path, append: bool = False) -> LabelTable:
    """Save `table` to `target`; with `append`, after the classes already there (same model only)."""
    if append:
        table = load_labels(target, table.fingerprint, table.dim).extend(table)
    table.save(target)
    return table
