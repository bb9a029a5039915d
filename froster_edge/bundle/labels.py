"""The label table, labels.npz: class names and their embeddings, precomputed (numpy only).

A plain .npz, no pickled objects: names, texts, embeddings [C, D] float32 with L2-normalised rows,
logit_scale, temperature (1 = none), prompts with prompt_counts, fingerprint, format, version. A
table whose fingerprint is not the bundle's model is refused (another model's space gives confident
garbage). `load_labels` checks every array's header before reading its data, so a bad field or
size is a BundleError naming it; limits: MAX_CLASSES, MAX_DIM, MAX_PROMPTS, MAX_TEXT, MAX_FILE_BYTES, MAX_LOADED_BYTES.

See docs/export.md.
"""

from __future__ import annotations

import io
import math
import os
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import BundleError, shorten
from ..io import atomic_write_bytes
from ..prompts import repeated_name

FORMAT = "froster-edge-labels"
VERSION = 1
_KEYS = ("format", "version", "names", "texts", "embeddings", "logit_scale", "temperature",
         "prompts", "prompt_counts", "fingerprint")
MAX_CLASSES = 20_000  # classifying costs C x D per decision; 20k x 512 stays near a millisecond
MAX_DIM = 4096
MAX_PROMPTS = 256  # per class
MAX_TEXT = 4096  # characters in one name, text, prompt or fingerprint
MAX_FILE_BYTES = 512 * 2**20
MAX_LOADED_BYTES = 512 * 2**20  # all arrays together, as their headers declare them: the memory a table may take
# per field: numpy dtype kinds allowed, number of dimensions, and the bound of each dimension (None: free)
_LAYOUT: dict[str, tuple[str, int]] = {
    "format": ("U", 0), "version": ("iu", 0), "names": ("U", 1), "texts": ("U", 1), "embeddings": ("f", 2),
    "logit_scale": ("f", 0), "temperature": ("f", 0), "prompts": ("U", 1), "prompt_counts": ("iu", 1),
    "fingerprint": ("U", 0),
}


@dataclass(frozen=True)
class LabelTable:
    """Names, normalised class embeddings (C, D), the model's logit scale and fingerprint."""

    names: list[str]
    embeddings: np.ndarray
    logit_scale: float
    fingerprint: str
    texts: list[str] = field(default_factory=list)
    prompts: list[list[str]] = field(default_factory=list)
    temperature: float = 1.0

    def __post_init__(self) -> None:
        emb = np.ascontiguousarray(self.embeddings, dtype=np.float32)
        object.__setattr__(self, "embeddings", emb)
        object.__setattr__(self, "texts", list(self.texts) or list(self.names))
        object.__setattr__(self, "prompts", [list(p) for p in self.prompts] or [[t] for t in self.texts])
        self.validate()

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def validate(self, what: str = "label table") -> None:
        emb, c = self.embeddings, len(self.names)
        if c == 0:
            raise BundleError(f"{what} has no classes")
        if c > MAX_CLASSES:
            raise BundleError(f"{what} has {c} classes; a label table holds at most {MAX_CLASSES}")
        if not (isinstance(self.fingerprint, str) and self.fingerprint.strip()):
            raise BundleError(f"{what} has no model fingerprint")
        if emb.ndim != 2 or emb.shape[0] != c:
            raise BundleError(f"{what}: embeddings {emb.shape} do not match {c} names")
        if len(self.texts) != c or len(self.prompts) != c:
            raise BundleError(f"{what}: {len(self.texts)} texts / {len(self.prompts)} prompt lists for {c} names")
        if any(not n.strip() for n in self.names):
            raise BundleError(f"{what} has an empty class name")
        if (dup := repeated_name(self.names)) is not None:
            raise BundleError(f"{what}: class {self.names[dup[1]]!r} appears twice")
        if not np.isfinite(emb).all():
            raise BundleError(f"{what} has non-finite embeddings")
        norms = np.linalg.norm(emb, axis=1)
        if np.abs(norms - 1.0).max() > 1e-3:
            raise BundleError(f"{what}: embeddings are not L2-normalised (norms {norms.min():.4f}..{norms.max():.4f})")
        if not (np.isfinite(self.logit_scale) and self.logit_scale > 0):
            raise BundleError(f"{what}: logit scale {self.logit_scale} is not a positive number")
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise BundleError(f"{what}: temperature {self.temperature} is not a positive number")

    def check_model(self, fingerprint: str, dim: int | None = None, what: str = "label table") -> None:
        """Refuse a table made by another model (or of another embedding size)."""
        if self.fingerprint != fingerprint:
            raise BundleError(
                f"{what} was made by model {self.fingerprint[:12]}, not by this bundle's model {fingerprint[:12]}: "
                "rebuild it with froster-edge labels --bundle BUNDLE")
        if dim is not None and self.dim != dim:
            raise BundleError(f"{what} has {self.dim}-d embeddings, the model makes {dim}-d")

    def extend(self, other: "LabelTable") -> "LabelTable":
        """This table followed by `other`'s classes (same model; no name may repeat)."""
        other.check_model(self.fingerprint, self.dim, "the appended classes")
        if not np.isclose(other.logit_scale, self.logit_scale):
            raise BundleError(f"logit scales differ: {self.logit_scale} vs {other.logit_scale}")
        dup = {n.casefold() for n in self.names} & {n.casefold() for n in other.names}
        if dup:
            raise BundleError(f"cannot append: {', '.join(sorted(dup)[:5])} already in the table")
        return replace(self, names=self.names + other.names, texts=self.texts + other.texts,
                       prompts=self.prompts + other.prompts,
                       embeddings=np.concatenate([self.embeddings, other.embeddings]))

    def select(self, rows: list[int]) -> "LabelTable":
        """The classes at `rows` (in that order), every field of theirs kept as it is."""
        return replace(self, names=[self.names[i] for i in rows], texts=[self.texts[i] for i in rows],
                       prompts=[self.prompts[i] for i in rows], embeddings=self.embeddings[rows])

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(
            buf,
            format=np.array(FORMAT), version=np.array(VERSION),
            names=np.array(self.names, dtype=str), texts=np.array(self.texts, dtype=str),
            embeddings=self.embeddings, logit_scale=np.array(self.logit_scale, np.float32),
            temperature=np.array(self.temperature, np.float32),
            prompts=np.array([p for ps in self.prompts for p in ps], dtype=str),
            prompt_counts=np.array([len(ps) for ps in self.prompts], np.int32),
            fingerprint=np.array(self.fingerprint),
        )
        return buf.getvalue()

    def save(self, path: str | Path) -> Path:
        """Write atomically: a reader (or the runtime's file watcher) never sees half a table."""
        atomic_write_bytes(path, self.to_bytes())
        return Path(path)


class PinnedPath:
    """A label file held to where it led when the run started: a file replaced by a link to elsewhere
    while the run watches it (or serves it on the web page) is neither read nor written through.
    An atomic replace, a link's target replaced, keeps where the path leads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.real = os.path.realpath(self.path)

    def check(self) -> None:
        now = os.path.realpath(self.path)
        if now != self.real:
            raise BundleError(f"{self.path} now leads to {now}, not to {self.real} as when the run started "
                              "(a link swapped in): refused")


def load_labels(path: str | Path, fingerprint: str | None = None, dim: int | None = None) -> LabelTable:
    """Read and validate a labels.npz; with `fingerprint`, refuse a table of another model.

    Any problem with the file is a BundleError that names it (and the field), whatever the bytes.
    """
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"label table not found: {path}")
    try:
        arrays = _read_arrays(path)
    except BundleError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError, TypeError, MemoryError,
            UnicodeDecodeError, NotImplementedError, RuntimeError) as e:
        raise BundleError(f"{path} is not a readable label table: {shorten(f'{type(e).__name__}: {e}', 200)}") from e
    if str(arrays["format"]) != FORMAT:
        raise BundleError(f"{path} is not a froster-edge label table")
    if int(arrays["version"]) != VERSION:
        raise BundleError(f"{path} has label-table version {shorten(int(arrays['version']))}; this froster-edge reads {VERSION}")
    c = len(arrays["names"])
    for key in ("texts", "prompt_counts"):
        if len(arrays[key]) != c:
            raise BundleError(f"{path}: {key} has {len(arrays[key])} entries for {c} names")
    if arrays["embeddings"].shape[0] != c:
        raise BundleError(f"{path}: embeddings {arrays['embeddings'].shape} do not match {c} names")
    counts = arrays["prompt_counts"].astype(np.int64)
    flat = arrays["prompts"].tolist()
    if (counts < 1).any() or (counts > MAX_PROMPTS).any() or int(counts.sum()) != len(flat):
        raise BundleError(f"{path}: prompt counts do not match the prompts (1 to {MAX_PROMPTS} a class)")
    starts = np.cumsum([0, *counts.tolist()])
    try:
        table = LabelTable(
            names=arrays["names"].tolist(), texts=arrays["texts"].tolist(),
            embeddings=arrays["embeddings"], logit_scale=float(arrays["logit_scale"]),
            temperature=float(arrays["temperature"]), fingerprint=str(arrays["fingerprint"]),
            prompts=[flat[a:b] for a, b in zip(starts[:-1], starts[1:], strict=False)],
        )
    except BundleError as e:
        raise BundleError(f"{path}: {e}") from e
    if fingerprint is not None:
        table.check_model(fingerprint, dim, str(path))
    return table


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The table's arrays, each header checked against _LAYOUT and the limits before its data is read."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise BundleError(f"{path} is {size} bytes; a label table is at most {MAX_FILE_BYTES} (MAX_CLASSES {MAX_CLASSES})")
    if not zipfile.is_zipfile(path):
        raise BundleError(f"{path} is not a readable label table (not an .npz archive)")
    arrays: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as z:
        members = {info.filename: info for info in z.infolist()}
        missing = [k for k in _KEYS if f"{k}.npy" not in members]
        if missing:
            raise BundleError(f"{path} is not a froster-edge label table (missing {', '.join(missing)})")
        loaded, shapes = 0, {}
        for key in _KEYS:  # every header first: the limits hold before any data is read
            info = members[f"{key}.npy"]
            with z.open(info) as f:
                shape, _, dtype = _header(f)
            _check_layout(path, key, shape, dtype)
            if info.file_size > MAX_FILE_BYTES:
                raise BundleError(f"{path}: {key} unpacks to {info.file_size} bytes (at most {MAX_FILE_BYTES})")
            loaded += math.prod(shape) * dtype.itemsize
            shapes[key] = shape
        if loaded > MAX_LOADED_BYTES:
            raise BundleError(f"{path}: its arrays take {loaded} bytes loaded (at most {MAX_LOADED_BYTES}); "
                              f"shorter texts or fewer prompts a class make it smaller")
        for key in _KEYS:
            info = members[f"{key}.npy"]
            with z.open(info) as f:
                arrays[key] = np.lib.format.read_array(f, allow_pickle=False)
            if arrays[key].shape != shapes[key]:
                raise BundleError(f"{path}: {key} is truncated")
    return arrays


def _header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    raise ValueError(f"unsupported .npy format version {version}")


def _check_layout(path: Path, key: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
    kinds, ndim = _LAYOUT[key]
    if dtype.kind not in kinds or dtype.hasobject or len(shape) != ndim:
        want = {"U": "text", "iu": "integers", "f": "floats"}[kinds]
        raise BundleError(f"{path}: {key} must be {ndim}-d {want}, not {len(shape)}-d {shorten(str(dtype), 40)} "
                          f"{shorten(shape, 60)}")
    if dtype.kind == "U" and dtype.itemsize // 4 > MAX_TEXT:
        raise BundleError(f"{path}: {key} holds strings of {dtype.itemsize // 4} characters (at most {MAX_TEXT})")
    if dtype.kind == "f" and dtype.itemsize > 8:
        raise BundleError(f"{path}: {key} must be float16/32/64, not {dtype}")
    limit = {"prompts": MAX_CLASSES * MAX_PROMPTS}.get(key, MAX_CLASSES)
    if ndim and shape[0] > limit:
        raise BundleError(f"{path}: {key} has {shape[0]} entries; a label table holds at most {MAX_CLASSES} classes "
                          f"(and {MAX_PROMPTS} prompts a class)")
    if key == "embeddings" and not 0 < shape[1] <= MAX_DIM:
        raise BundleError(f"{path}: embeddings are {shape[1]}-d (1 to {MAX_DIM})")
