"""The bundle's manifest.json: what the runtime needs to use the files, and their hashes (no torch).

A bundle directory holds video_encoder.onnx, text_encoder.onnx, tokenizer.json, labels.npz, optional
video_encoder.fp16.onnx, engines/, and manifest.json, written last. The manifest records the
format version, the model (config, fingerprint, logit scale), the preprocessing the video graph
expects, the ONNX opset and tensor names, the sha256 of every file, the parity gates' results
and the versions used. `verify_bundle` re-hashes the files, so a tampered or truncated file is
named before a runtime loads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from ..errors import BundleError
from ..io import atomic_write_json, read_versioned_json, sha256_file

FORMAT = "froster-edge-bundle"
VERSION = 1
MANIFEST_FILE = "manifest.json"
VIDEO_ONNX = "video_encoder.onnx"
VIDEO_FP16_ONNX = "video_encoder.fp16.onnx"
TEXT_ONNX = "text_encoder.onnx"
LABELS_FILE = "labels.npz"
TOKENIZER_FILE = "tokenizer.json"  # the text encoder's tokenizer (Hugging Face tokenizers format)
ENGINES_DIR = "engines"


# Caches that tools rewrite on their own (calibration ranges, TensorRT timing, ONNX Runtime's
# TensorRT engines) are not part of what is verified: a stale or deleted cache is rebuilt.
CACHES = ("calibration/", "engines/ort-trt/", "engines/timing.cache")


def bundle_files(bundle: str | Path) -> list[str]:
    """Every file of the bundle but the manifest, temporaries and caches, as sorted relative paths."""
    root = Path(bundle)
    names = (p.relative_to(root).as_posix() for p in root.rglob("*")
             if p.is_file() and p.name != MANIFEST_FILE and not p.name.startswith("."))
    return sorted(n for n in names if not n.startswith(CACHES))


def hash_files(bundle: str | Path, names: Iterable[str] | None = None) -> dict[str, str]:
    root = Path(bundle)
    return {name: sha256_file(root / name) for name in (bundle_files(root) if names is None else names)}


def write_manifest(bundle: str | Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Hash every file of the bundle into `manifest["files"]` and write manifest.json atomically."""
    return _write(Path(bundle), manifest, hash_files(bundle))


def _write(root: Path, body: dict[str, Any], files: dict[str, str]) -> dict[str, Any]:
    body = {k: v for k, v in body.items() if k not in ("format", "version", "files")}
    manifest = {"format": FORMAT, "version": VERSION, **body, "files": dict(sorted(files.items()))}
    atomic_write_json(root / MANIFEST_FILE, manifest)
    return manifest


def read_manifest(bundle: str | Path) -> dict[str, Any]:
    """The parsed manifest of a bundle, checked for format and version (files are not hashed)."""
    root = Path(bundle)
    if not root.is_dir():
        raise BundleError(f"bundle directory not found: {root}")
    path = root / MANIFEST_FILE
    if not path.is_file():
        raise BundleError(f"{root} is not a froster-edge bundle: no {MANIFEST_FILE} (run froster-edge export)")
    return read_versioned_json(path, FORMAT, VERSION, ("model", "preprocessing", "files"), BundleError, "bundle manifest")


def verify_bundle(bundle: str | Path, names: Iterable[str] | None = None) -> dict[str, Any]:
    """read_manifest, then check that the files (all, or `names`) exist and match their hashes."""
    root = Path(bundle)
    manifest = read_manifest(root)
    recorded: dict[str, str] = manifest["files"]
    for name in recorded if names is None else names:
        if name not in recorded:
            raise BundleError(f"{root}/{name} is not recorded in {MANIFEST_FILE}")
        path = root / name
        if not path.is_file():
            raise BundleError(f"{path} is missing from the bundle")
        if sha256_file(path) != recorded[name]:
            raise BundleError(f"{path} does not match its sha256 in {MANIFEST_FILE}: the file was modified or is corrupt")
    return manifest


def update_files(bundle: str | Path, manifest: dict[str, Any], changed: Iterable[str], **sections: Any) -> dict[str, Any]:
    """Rewrite the manifest with new sections (e.g. engines) after writing the files named in `changed`.

    Only those files are hashed again; the others keep their recorded hashes (callers verified
    what they read), so relabelling a bundle does not re-read hundreds of MB of ONNX.
    """
    root = Path(bundle)
    return _write(root, {**manifest, **sections}, {**manifest["files"], **hash_files(root, changed)})
