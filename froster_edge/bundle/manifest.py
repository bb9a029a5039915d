"""The bundle's manifest.json: what the runtime needs to use the files, and their hashes (no torch).

It records the format version, the model (config, fingerprint, logit scale), the preprocessing,
the ONNX opset and tensor names, the sha256 of every file, the parity results and the versions used;
it is written last. `verify_bundle` re-hashes the files so a tampered or truncated one is named
before loading. `read_manifest` type- and range-checks every field a reader uses, and refuses paths
that are absolute, contain `..` or leave the bundle through a symlink.

See docs/export.md.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Iterable

from ..errors import BundleError, ConfigError, shorten
from ..io import atomic_write_json, is_leftover, read_folder_json, read_versioned_json, sha256_file
from ..sampling import SamplingSpec
from ..spatial import SpatialSpec

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
# TensorRT engines, OpenVINO's compiled models) are not part of what is verified: a stale or deleted
# cache is rebuilt.
CACHES = ("calibration/", "engines/ort-trt/", "engines/timing-", "engines/timing.cache",  # timing-<TensorRT version>.cache
          "engines/openvino/")
CALIBRATION_CACHE_PREFIX = "ort-int8-ranges-"  # calibration/<prefix><key>.json: INT8 ranges (calibration/int8.py)
# What a re-export may leave behind as ours: the calibration ranges caches, and calibrate's hidden
# temporaries `.<file>.<...>.<pid>.tmp` (besides io's `.<name>.tmp-<pid>` leftovers). Anything else,
# a user's `notes.tmp` or `calibration/my-ranges.txt`, is the user's and is carried over.
_OWN_CACHE = re.compile(rf"^calibration/{CALIBRATION_CACHE_PREFIX}[0-9a-f]+\.json$")
_OWN_TMP = re.compile(r"^\..+\.\d+\.tmp$")


def bundle_files(bundle: str | Path) -> list[str]:
    """Every file of the bundle but the manifest, temporaries and caches, as sorted relative paths."""
    root = Path(bundle)
    names = (p.relative_to(root).as_posix() for p in root.rglob("*")
             if p.is_file() and p.name != MANIFEST_FILE and not p.name.startswith("."))
    return sorted(n for n in names if not n.startswith(CACHES))


def owned_files(bundle: str | Path) -> set[str] | None:
    """The files a froster-edge bundle made (its manifest, what the manifest records, its caches'
    folders), or None when the folder's manifest.json is missing, unreadable or not ours: only such
    a proven bundle may be replaced by an export."""
    root = Path(bundle)
    try:
        manifest = read_versioned_json(root / MANIFEST_FILE, FORMAT, VERSION, ("files",), BundleError, "bundle manifest")
    except (BundleError, OSError):
        return None
    files = manifest["files"]
    if not isinstance(files, dict):
        return None
    return {MANIFEST_FILE, *map(str, files)}


def foreign_files(bundle: str | Path, owned: set[str]) -> list[str]:
    """Files and folders under `bundle` that it did not create (not in `owned`, not a cache, not one
    of our temporaries), as sorted relative paths: a re-export keeps them."""
    root = Path(bundle)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = (rel / name).as_posix()
            cache = path.startswith(CACHES) and (not path.startswith("calibration/") or _OWN_CACHE.match(path))
            if path in owned or cache or is_leftover(name) or _OWN_TMP.match(name):
                continue
            out.append(path)
        if not filenames and not dirnames and rel.parts and not (rel.as_posix() + "/").startswith(CACHES):
            out.append(rel.as_posix())  # an empty folder of the user's
    return sorted(out)


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
    manifest = read_folder_json(bundle, MANIFEST_FILE, FORMAT, VERSION, ("model", "preprocessing", "files"), BundleError,
                                "bundle", "bundle manifest", hint=" (run froster-edge export)")
    check_structure(manifest, Path(bundle) / MANIFEST_FILE)
    return manifest


_SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_INPUT_BYTES = 1 << 31  # one encoder call's uint8 input: far above any real bundle, far below a bad allocation


def check_structure(doc: dict[str, Any], where: Path) -> None:
    """BundleError naming the field when a manifest field readers use is missing, mistyped or out of range."""

    def get(key: str, optional: bool = False) -> Any:
        node: Any = doc
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                if optional:
                    return None
                raise BundleError(f"{where}: {key} is missing")
            node = node[part]
        return node

    def bad(key: str, want: str, value: Any) -> BundleError:
        return BundleError(f"{where}: {key} must be {want}, not {shorten(repr(value))}")

    def need(key: str, kind: str, optional: bool = False) -> Any:
        value = get(key, optional)
        if value is None and optional:
            return None
        if kind == "dict" and not isinstance(value, dict):
            raise bad(key, "a mapping", value)
        if kind == "str" and not (isinstance(value, str) and value):
            raise bad(key, "a non-empty string", value)
        if kind == "count" and not (isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 1 << 20):
            raise bad(key, "a positive integer", value)
        if kind == "number" and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                     and math.isfinite(value) and value > 0):
            raise bad(key, "a positive number", value)
        if kind == "path":
            check_relative(value, key, where)
        return value

    files = need("files", "dict")
    for name, digest in files.items():
        check_relative(name, f"files[{shorten(repr(name))}]", where)
        if not (isinstance(digest, str) and _SHA256.fullmatch(digest)):
            raise bad(f"files[{shorten(repr(name))}]", "a sha256 hex digest", digest)
    for key, kind in [("model", "dict"), ("model.fingerprint", "str"), ("model.embed_dim", "count"),
                      ("model.model_cfg", "dict"), ("logit_scale", "number"), ("preprocessing", "dict"),
                      ("preprocessing.image_size", "count"), ("preprocessing.num_frames", "count"),
                      ("preprocessing.streams", "count"), ("onnx.video_encoder.file", "path"),
                      ("onnx.video_encoder.input", "str"), ("onnx.video_encoder.output", "str"),
                      ("onnx.text_encoder.file", "path"), ("onnx.text_encoder.context_length", "count")]:
        need(key, kind)
    for key, kind in [("model.student", "dict"), ("model.source", "dict"), ("labels", "dict"), ("labels.file", "path"),
                      ("onnx.video_encoder.fp16_file", "path"), ("int8", "dict"), ("int8.file", "path"),
                      ("confidence", "dict"), ("preprocessing.sampling", "dict"),
                      ("preprocessing.sampling.stride", "number"), ("preprocessing.sampling.reference_fps", "number"),
                      ("preprocessing.spatial", "dict")]:
        need(key, kind, optional=True)
    pre = doc["preprocessing"]
    want = [pre["streams"], pre["num_frames"], pre["image_size"], pre["image_size"], 3]
    if get("preprocessing.input.shape") != want:
        raise bad("preprocessing.input.shape", f"{want} (streams, num_frames, image_size, image_size, 3)",
                  get("preprocessing.input.shape"))
    if math.prod(want) > MAX_INPUT_BYTES:
        raise BundleError(f"{where}: preprocessing asks for {math.prod(want)} input bytes per call "
                          f"(at most {MAX_INPUT_BYTES}): not a bundle froster-edge made")
    kept = get("int8.files", optional=True)
    if kept is not None:
        if not isinstance(kept, list):
            raise bad("int8.files", "a list of file names", kept)
        for i, name in enumerate(kept):
            check_relative(name, f"int8.files[{i}]", where)
    engines = doc.get("engines", [])
    if not isinstance(engines, list) or not all(isinstance(e, dict) for e in engines):
        raise bad("engines", "a list of mappings", engines)
    for i, engine in enumerate(engines):
        for key in ("file", "cache_dir", "onnx_file"):
            if engine.get(key) is not None:
                check_relative(engine[key], f"engines[{i}].{key}", where)


def check_relative(name: Any, key: str, where: Path | str) -> str:
    """`name` as a path inside the bundle: relative, without `..`, or BundleError naming `key`."""
    if not (isinstance(name, str) and name) or "\0" in name:
        raise BundleError(f"{where}: {key} must be a file name inside the bundle, not {shorten(repr(name))}")
    parts = Path(name).parts
    if Path(name).is_absolute() or ".." in parts or name.startswith("~"):
        raise BundleError(f"{where}: {key} = {shorten(repr(name))} points outside the bundle: every path in a manifest "
                          "is relative to the bundle and stays inside it")
    return name


def bundle_path(bundle: str | Path, name: str, what: str = "a file") -> Path:
    """BUNDLE/name after checking that it stays inside the bundle once symlinks are followed."""
    root = Path(bundle)
    check_relative(name, what, root / MANIFEST_FILE)
    path = root / name
    real_root = os.path.realpath(root)
    if os.path.commonpath([real_root, os.path.realpath(path)]) != real_root:
        raise BundleError(f"{path} leads outside the bundle (a symlink): refused")
    return path



def sampling_spec(manifest: dict[str, Any]) -> SamplingSpec:
    """The frames the bundle's model was trained on (`preprocessing.sampling`); a bundle exported
    before the spec was recorded reads as the reference default."""
    pre = manifest["preprocessing"]
    try:
        return SamplingSpec.from_manifest(pre.get("sampling"), int(pre["num_frames"]))
    except ConfigError as e:
        raise BundleError(f"bundle manifest: {e}") from e


def spatial_spec(manifest: dict[str, Any]) -> SpatialSpec:
    """How the bundle's frames are resized and cropped (`preprocessing.spatial`); a bundle exported
    before the spec was recorded keeps the legacy transforms it was exported with."""
    try:
        return SpatialSpec.from_manifest(manifest["preprocessing"].get("spatial"))
    except ConfigError as e:
        raise BundleError(f"bundle manifest: {e}") from e


def verify_bundle(bundle: str | Path, names: Iterable[str] | None = None) -> dict[str, Any]:
    """read_manifest, then check that the files (all, or `names`) exist and match their hashes."""
    root = Path(bundle)
    manifest = read_manifest(root)
    recorded: dict[str, str] = manifest["files"]
    for name in recorded if names is None else names:
        if name not in recorded:
            raise BundleError(f"{root}/{shorten(name)} is not recorded in {MANIFEST_FILE}")
        path = bundle_path(root, name)
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
