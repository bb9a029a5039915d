"""Video lists and class files in the reference formats, checked before any video is decoded.

A list line is `path label` (ViFi-CLIP) or `path,label` (FROSTER's CSVs); blank lines, `#`
comments and a `path,label` header are skipped; paths join `root` (else the list's folder). Class
files: one name a line, FROSTER's JSON {"0": "Name: description"}, or a CSV with a `name` column.
`check_class_names` compares class texts with a label file position by position, tolerant of
spelling but not of a class at another position (how a swapped pair shows).

See docs/evaluation.md.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path
from typing import Iterable

from ..errors import ConfigError
from ..io import read_text
from ..prompts import ClassText, read_class_texts, repeated_name


@dataclass(frozen=True)
class VideoItem:
    """One video of a list: where it is and its 0-based class index."""

    path: Path
    label: int


def read_video_list(
    list_file: str | Path,
    root: str | Path | None = None,
    num_classes: int | None = None,
    *,
    require_existing: bool = True,
) -> list[VideoItem]:
    """Parse a `path label` / `path,label` list; ConfigError (one line) when it cannot be used.

    Fails when the file is missing or unparseable, a label is outside `num_classes`, or (with
    `require_existing`) not one referenced video exists. Some missing videos are not an error
    here: loaders count and report them.
    """
    list_file = Path(list_file)
    if not list_file.is_file():
        raise ConfigError(f"video list not found: {list_file}")
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{list_file} cannot be read as a text list: {e}") from e
    base = Path(root) if root is not None else list_file.parent
    items: list[VideoItem] = []
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split(",")] if "," in line else line.rsplit(None, 1)
        try:
            if len(fields) != 2 or not fields[0]:
                raise ValueError
            label = int(fields[1])
        except ValueError:
            if not items and len(fields) == 2 and fields[1].isidentifier():
                continue  # a header such as "path,label"
            raise ConfigError(f"{list_file}:{lineno}: expected 'path label' or 'path,label', got {line[:80]!r}") from None
        if label < 0 or (num_classes is not None and label >= num_classes):
            limit = f"0..{num_classes - 1}" if num_classes is not None else ">= 0"
            raise ConfigError(f"{list_file}:{lineno}: label {label} is outside the classes ({limit})")
        items.append(VideoItem(base / fields[0], label))
    if not items:
        raise ConfigError(f"{list_file} lists no videos")
    if require_existing and not any(item.path.is_file() for item in items):
        raise ConfigError(f"none of the {len(items)} videos of {list_file} exists under {base} "
                          f"(the first would be {items[0].path}); is --root right?")
    return items


VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".ts"}


def find_videos(paths: Iterable[str | Path]) -> list[Path]:
    """Video files named directly, or found (sorted) in the named folders."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.iterdir() if f.suffix.lower() in VIDEO_SUFFIXES and f.is_file())
        elif p.is_file():
            found.append(p)
        else:
            raise ConfigError(f"no such video or folder: {p}")
    return found


def gather_videos(specs: str | Path | Iterable[str | Path], root: str | Path | None = None) -> list[VideoItem]:
    """What `--videos` names, in every command: video files, folders of videos (sorted) and
    `path [label]` list files (paths relative to `root`, default the list's folder), in order.

    Videos found without a list have label -1. A folder without videos or a missing path is a
    ConfigError, so a typo never silently leaves a gate or a calibration without data.
    """
    items: list[VideoItem] = []
    for spec in [specs] if isinstance(specs, (str, Path)) else specs:
        spec = Path(spec)
        if spec.is_dir():
            found = find_videos([spec])
            if not found:
                raise ConfigError(f"{spec} holds no video files ({', '.join(sorted(VIDEO_SUFFIXES))})")
            items += [VideoItem(p, -1) for p in found]
        elif spec.is_file() and spec.suffix.lower() in VIDEO_SUFFIXES:
            items.append(VideoItem(spec, -1))
        elif spec.is_file():
            items += read_video_list(spec, root)
        else:
            raise ConfigError(f"no such video, folder or list: {spec}")
    return items


def read_classes(path: str | Path) -> list[ClassText]:
    """Class texts from a names file, FROSTER's JSON, or a CSV with a `name` column (ordered by `id`)."""
    path = Path(path)
    if path.suffix.lower() != ".csv":
        return read_class_texts(path)
    if not path.is_file():
        raise ConfigError(f"class file not found: {path}")
    rows = list(csv.DictReader(io.StringIO(read_text(path, "class file"))))
    if not rows or "name" not in rows[0]:
        raise ConfigError(f"{path}: expected a CSV with a header naming a 'name' column (and optionally 'id')")
    if "id" in rows[0]:
        try:
            ids = [int(r["id"]) for r in rows]
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{path}: the id column must hold class indices: {e}") from e
        if sorted(ids) != list(range(len(rows))):
            raise ConfigError(f"{path}: class ids must be 0..{len(rows) - 1} without gaps")
        rows = [r for _, r in sorted(zip(ids, rows, strict=False), key=lambda p: p[0])]
    classes = [ClassText.parse(r["name"] or "") for r in rows]
    if (dup := repeated_name(c.name for c in classes)) is not None:
        raise ConfigError(f"{path}: class {classes[dup[1]].name!r} appears twice")
    return classes


def _name_key(name: str) -> str:
    """Lower-case letters and digits without articles: "Eating a burger" -> "eatingburger"."""
    return "".join(w for w in re.findall(r"[a-z0-9]+", name.lower()) if w not in ("a", "an", "the"))


def check_class_names(classes: list[ClassText], names: list[str], classes_src: str, names_src: str) -> None:
    """ConfigError unless `classes` has the count and order of the label file's `names`."""
    if len(classes) != len(names):
        raise ConfigError(f"{classes_src} has {len(classes)} classes but the label file {names_src} has {len(names)}")
    keys = [_name_key(n) for n in names]
    where = {k: i for i, k in enumerate(keys)}
    for i, c in enumerate(classes):
        key = _name_key(c.name)
        if key == keys[i]:
            continue
        elsewhere = where.get(key)
        if elsewhere is None and SequenceMatcher(None, key, keys[i]).ratio() >= 0.8:
            continue  # the same class spelt differently
        hint = f"; the label file has {c.name!r} at {elsewhere}" if elsewhere is not None else ""
        raise ConfigError(f"class order differs: class {i} of {classes_src} is {c.name!r} but the label file "
                          f"{names_src} says {names[i]!r}{hint}")
