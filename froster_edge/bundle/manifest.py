"""The bundle's manifest.json: what the runtime needs to use the files, and their hashes (no torch).

It records the format version, the model (config, fingerprint, logit scale), the preprocessing,
the ONNX opset and tensor names, the sha256 of every file, the parity results and the versions used;
it is written last. `verify_bundle` re-hashes the files so a tampered or truncated one is named
before loading. `read_manifest` type- and range-checks every field a reader uses, and refuses paths
that are absolute, contain `..` or leave the bundle through a symlink.

See docs/export.md.
"""

from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Iterable

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from ..errors import BundleError, ConfigError, shorten
from ..io import atomic_write_json, folder_lock, fsync_dir, is_leftover, read_folder_json, read_versioned_json, sha256_file
from ..sampling import SamplingSpec
from ..schema import Model, Text, validate
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
log = logging.getLogger(__name__)
PENDING_FILE = ".manifest.pending.json"  # the next manifest, staged before the files it records are renamed in


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
            if path in owned or cache or is_leftover(name) or _OWN_TMP.match(name) or path == PENDING_FILE:
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


def _write(root: Path, body: dict[str, Any], files: dict[str, str], name: str = MANIFEST_FILE) -> dict[str, Any]:
    body = {k: v for k, v in body.items() if k not in ("format", "version", "files")}
    manifest = {"format": FORMAT, "version": VERSION, **body, "files": dict(sorted(files.items()))}
    atomic_write_json(root / name, manifest)
    return manifest


def stage_files(bundle: str | Path, manifest: dict[str, Any], digests: dict[str, str], **sections: Any) -> None:
    """Stage the manifest that records files about to be renamed in (their sha256 in `digests`) as
    PENDING_FILE; `commit_staged` makes it the manifest once they are. A kill in between is finished
    or rolled back by the next `read_manifest` (`finish_staged`), so the pair never strands the bundle."""
    _write(Path(bundle), {**manifest, **sections}, {**manifest["files"], **digests}, PENDING_FILE)


def commit_staged(bundle: str | Path) -> None:
    root = Path(bundle)
    os.replace(root / PENDING_FILE, root / MANIFEST_FILE)
    fsync_dir(root)


def finish_staged(bundle: str | Path) -> None:
    """A staged manifest left by a writer that died: made the manifest when every file it records is
    on disk as it records it (the kill came after the files' renames), else deleted (before them: the
    old manifest still matches). Skipped while a writer holds the bundle's lock (it is not a leftover)."""
    root = Path(bundle)
    staged = root / PENDING_FILE
    if not staged.is_file():
        return
    with folder_lock(root, wait=False) as held:
        if not held or not staged.is_file():
            return
        try:
            new = read_versioned_json(staged, FORMAT, VERSION, ("files",), BundleError, "staged manifest")["files"]
            old = read_versioned_json(root / MANIFEST_FILE, FORMAT, VERSION, ("files",), BundleError,
                                      "bundle manifest")["files"]
            changed = [n for n, d in new.items() if old.get(n) != d]
            done = all(bundle_path(root, n).is_file() and sha256_file(bundle_path(root, n)) == new[n] for n in changed)
        except (BundleError, OSError, TypeError, AttributeError):
            done = False
        try:
            if done:
                commit_staged(root)
                log.warning("%s: finished a change that was cut off (the manifest now records the new files)", root)
            else:
                staged.unlink()
                log.warning("%s: dropped a change that was cut off before its files were written", root)
        except OSError as e:
            raise BundleError(f"{root}: a change to the bundle was cut off and cannot be finished ({e.strerror}); "
                              f"delete {staged} if the bundle's files are as the manifest records them, or export "
                              "again") from e


def read_manifest(bundle: str | Path) -> dict[str, Any]:
    """The parsed manifest of a bundle, checked for format and version (files are not hashed); a
    change cut off between its renames is finished or rolled back first."""
    finish_staged(bundle)
    manifest = read_folder_json(bundle, MANIFEST_FILE, FORMAT, VERSION, ("model", "preprocessing", "files"), BundleError,
                                "bundle", "bundle manifest", hint=" (run froster-edge export)")
    check_structure(manifest, Path(bundle) / MANIFEST_FILE)
    return manifest


_SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_INPUT_BYTES = 1 << 31  # one encoder call's uint8 input: far above any real bundle, far below a bad allocation


def _inside(name: Any) -> Any:
    reason = outside(name)
    if reason is not None:
        raise ValueError(reason)
    return name


def _sha256(digest: Any) -> Any:
    if not (isinstance(digest, str) and _SHA256.fullmatch(digest)):
        raise ValueError("must be a sha256 hex digest")
    return digest


class _Open(Model):
    """A manifest section: the fields readers use are checked, the others kept as written."""

    model_config = ConfigDict(extra="allow")


Count = Annotated[int, Field(gt=0, le=1 << 20)]
Positive = Annotated[float, Field(gt=0)]
BundleFile = Annotated[str, AfterValidator(_inside)]
Mapping = dict[str, Any]


class _Model(_Open):
    fingerprint: Text
    embed_dim: Count
    model_cfg: Mapping
    student: Mapping | None = None
    source: Mapping | None = None


class _VideoEncoder(_Open):
    file: BundleFile
    input: Text
    output: Text
    fp16_file: BundleFile | None = None


class _TextEncoder(_Open):
    file: BundleFile
    context_length: Count


class _Onnx(_Open):
    video_encoder: _VideoEncoder
    text_encoder: _TextEncoder


class _Sampling(_Open):
    stride: Positive | None = None
    reference_fps: Positive | None = None


class _Input(_Open):
    shape: list[int]


class _Preprocessing(_Open):
    image_size: Count
    num_frames: Count
    streams: Count
    input: _Input
    sampling: _Sampling | None = None
    spatial: Mapping | None = None


class _Labels(_Open):
    file: BundleFile | None = None


class _Int8(_Open):
    file: BundleFile | None = None
    files: list[BundleFile] | None = None


class _Engine(_Open):
    file: BundleFile | None = None
    cache_dir: BundleFile | None = None
    onnx_file: BundleFile | None = None


class ManifestShape(_Open):
    """What readers rely on in manifest.json (the format stays the JSON the exporter writes)."""

    files: dict[Annotated[str, AfterValidator(_inside)], Annotated[str, AfterValidator(_sha256)]]
    model: _Model
    logit_scale: Positive
    preprocessing: _Preprocessing
    onnx: _Onnx
    labels: _Labels | None = None
    int8: _Int8 | None = None
    confidence: Mapping | None = None
    engines: list[_Engine] = []

    @model_validator(mode="after")
    def _input(self) -> "ManifestShape":
        pre = self.preprocessing
        want = [pre.streams, pre.num_frames, pre.image_size, pre.image_size, 3]
        if pre.input.shape != want:
            raise ValueError(f"preprocessing.input.shape must be {want} (streams, num_frames, image_size, image_size, 3), "
                             f"not {pre.input.shape}")
        if math.prod(want) > MAX_INPUT_BYTES:
            raise ValueError(f"preprocessing asks for {math.prod(want)} input bytes per call (at most {MAX_INPUT_BYTES}): "
                             "not a bundle froster-edge made")
        return self


def check_structure(doc: dict[str, Any], where: Path) -> None:
    """BundleError naming the field when a manifest field readers use is missing, mistyped or out of range."""
    try:
        validate(ManifestShape, doc, where)
    except ConfigError as e:
        raise BundleError(str(e)) from None


def outside(name: Any) -> str | None:
    """Why `name` is not a path inside the bundle (relative, without `..`), or None when it is."""
    if not (isinstance(name, str) and name) or "\0" in name:
        return "must be a file name inside the bundle"
    if Path(name).is_absolute() or ".." in Path(name).parts or name.startswith("~"):
        return ("points outside the bundle: every path in a manifest is relative to the bundle and stays inside it")
    return None


def check_relative(name: Any, key: str, where: Path | str) -> str:
    """`name` as a path inside the bundle: relative, without `..`, or BundleError naming `key`."""
    reason = outside(name)
    if reason is not None:
        raise BundleError(f"{where}: {key}: {reason}, not {shorten(repr(name))}")
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


def update_files(bundle: str | Path, manifest: dict[str, Any], changed: Iterable[str], removed: Iterable[str] = (),
                 **sections: Any) -> dict[str, Any]:
    """Rewrite the manifest with new sections (e.g. engines) after writing the files named in `changed`;
    the files named in `removed` are no longer the bundle's (the caller deletes them after this).

    Only the changed files are hashed again; the others keep their recorded hashes (callers verified
    what they read), so relabelling a bundle does not re-read hundreds of MB of ONNX.
    """
    root = Path(bundle)
    files = {k: v for k, v in manifest["files"].items() if k not in set(removed)}
    return _write(root, {**manifest, **sections}, {**files, **hash_files(root, changed)})
