"""File helpers shared by every stage (no torch): atomic writes and content hashes.

A write goes to a temporary file in the target's folder, is flushed to disk, then renamed over
the target, so a kill at any moment leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: str | Path, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path` in one rename.

    keep_suffix: the temporary name ends with the target's suffix (writers that pick the format
    from the name, such as OpenCV's VideoWriter, need it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".tmp" + (path.suffix if keep_suffix else "")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o644)  # mkstemp makes 0600; written files are meant to be shared
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")



def read_versioned_json(path: Path, fmt: str, version: int, required: tuple[str, ...], error: type[Exception],
                        what: str) -> dict[str, Any]:
    """A JSON document of ours: parsed, its format and version checked, its required keys present.

    Every problem is `error` with a message naming the file, so each artifact reader states it once.
    """
    try:
        doc = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path} is corrupt: {e}") from e
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise error(f"{path} is not a froster-edge {what}")
    if doc.get("version") != version:
        raise error(f"{path} has format version {doc.get('version')}; this froster-edge reads {version}")
    for key in required:
        if key not in doc:
            raise error(f"{path} lacks {key!r}")
    return doc
