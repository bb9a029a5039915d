"""The label table, labels.npz: class names and their embeddings, precomputed (numpy only, no torch).

The runtime scores a video embedding against this table, so changing what a camera recognises
means writing a new table, never retraining. The file is a plain .npz (no pickled objects):
    names [C] str, texts [C] str ("Name: description" as given), embeddings [C, D] float32 with
    L2-normalised rows, logit_scale (CLIP's exp'd scale), temperature (confidence calibration;
    1 = none), prompts [sum P] str with prompt_counts [C], fingerprint (of the model that
    encoded it), format, version.
A table whose fingerprint differs from the bundle's model is refused: its embeddings live in
another model's space and would give confident garbage.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import BundleError
from ..prompts import repeated_name
from ..io import atomic_write_bytes

FORMAT = "froster-edge-labels"
VERSION = 1
_KEYS = ("format", "version", "names", "texts", "embeddings", "logit_scale", "temperature",
         "prompts", "prompt_counts", "fingerprint")


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


def load_labels(path: str | Path, fingerprint: str | None = None, dim: int | None = None) -> LabelTable:
    """Read and validate a labels.npz; with `fingerprint`, refuse a table of another model."""
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"label table not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in _KEYS if k not in data.files]
            if missing:
                raise BundleError(f"{path} is not a froster-edge label table (missing {', '.join(missing)})")
            arrays = {k: data[k] for k in _KEYS}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise BundleError(f"{path} is not a readable label table: {e}") from e
    if str(arrays["format"]) != FORMAT:
        raise BundleError(f"{path} is not a froster-edge label table")
    if int(arrays["version"]) != VERSION:
        raise BundleError(f"{path} has label-table version {int(arrays['version'])}; this froster-edge reads {VERSION}")
    counts = arrays["prompt_counts"].astype(int).tolist()
    flat = arrays["prompts"].tolist()
    if sum(counts) != len(flat) or any(c < 1 for c in counts):
        raise BundleError(f"{path}: prompt counts do not match the prompts")
    starts = np.cumsum([0] + counts)
    try:
        table = LabelTable(
            names=arrays["names"].tolist(), texts=arrays["texts"].tolist(),
            embeddings=arrays["embeddings"], logit_scale=float(arrays["logit_scale"]),
            temperature=float(arrays["temperature"]), fingerprint=str(arrays["fingerprint"]),
            prompts=[flat[a:b] for a, b in zip(starts[:-1], starts[1:])],
        )
    except BundleError as e:
        raise BundleError(f"{path}: {e}") from e
    if fingerprint is not None:
        table.check_model(fingerprint, dim, str(path))
    return table
