"""File helpers shared by every stage (no torch): atomic writes, output checks, versioned JSON.

A write goes to a temporary file in the target's folder, is flushed to disk, then renamed over
the target, so a kill at any moment leaves either the old file or the new one, never a torn one.
A target that is a symlink keeps being one: the file it points to is replaced.

`check_outputs` is the one start-time check of a command's output destinations: each output
(a file, or a folder written into) is said before any work when it cannot be written, is a
folder where a file is wanted, is not a regular file, is one of the command's inputs (a source
video, a bundle's file) or is given twice, so hours of work are never lost at the end.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path` in one rename."""
    path = Path(os.path.realpath(path)) if Path(path).is_symlink() else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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



def read_text(path: str | Path, what: str = "file", error: type[Exception] | None = None) -> str:
    """A UTF-8 text file a user gave: unreadable (a folder, no permission) or not text is `error`
    (default ConfigError) naming the file, never an OSError or UnicodeDecodeError."""
    from .errors import ConfigError

    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise (error or ConfigError)(f"{what} not found: {path}") from e
    except UnicodeDecodeError as e:
        raise (error or ConfigError)(f"{path} is not a UTF-8 text {what}: {e.reason} at byte {e.start}") from e
    except OSError as e:
        raise (error or ConfigError)(f"{path} cannot be read: {e.strerror or e}") from e


def read_versioned_json(path: Path, fmt: str, version: int, required: tuple[str, ...], error: type[Exception],
                        what: str) -> dict[str, Any]:
    """A JSON document of ours: parsed, its format and version checked, its required keys present.

    Every problem is `error` with a message naming the file, so each artifact reader states it once.
    """
    try:
        doc = json.loads(read_text(path, what, error))
    except json.JSONDecodeError as e:
        raise error(f"{path} is corrupt: {e}") from e
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise error(f"{path} is not a froster-edge {what}")
    if doc.get("version") != version:
        raise error(f"{path} has format version {doc.get('version')}; this froster-edge reads {version}")
    for key in required:
        if key not in doc:
            raise error(f"{path} lacks {key!r}")
    return doc


@dataclass(frozen=True)
class Output:
    """An output destination a command will write, and the option that named it (for messages)."""

    path: Path
    option: str  # e.g. "--stats-json"
    folder: bool = False  # a folder written into (created when missing), not a file


def check_outputs(outputs: Iterable[Output], inputs: Iterable[str | Path] = ()) -> None:
    """ConfigError naming the option unless every output can be written where it is meant to go.

    A file output must not be an existing folder or a non-regular file (a device, a FIFO: a rename
    would replace it), its nearest existing folder must take a new file, and it must not be an
    input (same file, through any link) or another output. Missing folders are fine (writers
    create them). Call it before any work.
    """
    from .errors import ConfigError, shorten

    taken = {_identity(Path(p)): f"is the input {shorten(str(p), 200)}: writing it would destroy it; choose another path"
             for p in inputs if Path(p).exists()}
    for out in outputs:
        path, name = Path(out.path), f"{out.option} {shorten(str(out.path), 200)}"
        key = _identity(path)
        if key in taken:
            raise ConfigError(f"{name} {taken[key]}")
        taken[key] = f"is also given to {out.option}: give each output its own path"
        if path.exists() and not out.folder:
            if path.is_dir():
                raise ConfigError(f"{name} is a folder: give a file name")
            if not path.is_file():
                raise ConfigError(f"{name} exists and is not a regular file (it would be replaced): choose another path")
        if out.folder and path.exists() and not path.is_dir():
            raise ConfigError(f"{name} exists and is not a folder")
        folder = path if out.folder else path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            raise ConfigError(f"{name}: {shorten(str(folder), 200)} is not a folder")
        try:
            fd, probe = tempfile.mkstemp(prefix=".froster-edge-probe-", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise ConfigError(f"{name}: cannot write in {shorten(str(folder), 200)} ({e.strerror or e})") from e


def _identity(path: Path) -> tuple:
    """What two paths share when they are the same file: the inode when it exists, else the real path."""
    try:
        st = os.stat(path)
        return ("inode", st.st_dev, st.st_ino)
    except OSError:
        return ("path", os.path.realpath(path))
