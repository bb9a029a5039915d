"""New class texts for an exported bundle through its own ONNX text encoder: no student, no torch.

The prompts are tokenized with the bundle's tokenizer.json. A bundle exported before bundles
carried one is tokenized by open_clip when it is installed, else refused in one line.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import BundleError
from ..prompts import ClassText
from . import manifest as mf
from .label_builder import build_label_table
from .labels import LabelTable, load_labels
from .sessions import onnx_text_encoder
from .tokenizer import ClipTokenizer, open_clip_tokenizer


def relabel_bundle(bundle: str | Path, classes: list[ClassText], out: str | Path | None = None,
                   append: bool = False) -> LabelTable:
    """A label table for `classes` through the bundle's own ONNX text encoder (no student, no retraining).

    Written to `out`, or into the bundle (whose manifest is then re-hashed) when `out` is None.
    """
    bundle = Path(bundle)
    manifest = mf.read_manifest(bundle)
    has_tokenizer = mf.TOKENIZER_FILE in manifest["files"]
    mf.verify_bundle(bundle, [mf.TEXT_ONNX] + ([mf.TOKENIZER_FILE] if has_tokenizer else []))
    model = manifest["model"]
    context = manifest["onnx"]["text_encoder"]["context_length"]
    tokenizer = ClipTokenizer.from_file(bundle / mf.TOKENIZER_FILE, context) if has_tokenizer else _old_bundle(bundle, context)
    table = build_label_table(classes, onnx_text_encoder(bundle / mf.TEXT_ONNX), model["model_cfg"],
                              model["fingerprint"], float(manifest["logit_scale"]), tokenizer=tokenizer)
    table = write_labels(table, Path(out) if out is not None else bundle / mf.LABELS_FILE, append)
    if out is None:
        # a temperature fitted for the old classes does not carry over: the new table starts at T = 1
        mf.update_files(bundle, manifest, [mf.LABELS_FILE], labels={"file": mf.LABELS_FILE, "classes": len(table.names)},
                        confidence=None)
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
