"""The paper's evaluation protocols as YAML files (configs/eval/*.yaml), run with one command each.

A protocol names its kind (base2novel | cross_dataset), root, named `paths` folders (`{name}` in a
path is replaced by that folder; --path NAME=DIR overrides), and per split the `base`/`novel` (or
`test`) parts' list, classes and labels, plus an optional `full` part (cross_dataset); nothing is
hard-coded. Every list is checked against its
class file, and the class texts against a plain label file, before any model is loaded. A split
may have its own student (`--student runs/k400_{split}`). Each video is encoded once per student.

See docs/evaluation.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import Field, model_validator

from .. import __version__
from ..config import StudentConfig
from ..data import VideoItem, check_class_names, read_classes, read_video_list
from ..errors import ConfigError, FrosterError
from ..io import read_yaml
from ..model.student import VideoStudent
from ..prompts import ClassText
from ..schema import Model, Text, validate
from .core import EvalResult, class_embeddings, encode_videos, score_videos, student_image_size
from .metrics import base_to_novel_summary, harmonic_mean, mean_std

log = logging.getLogger(__name__)

ProtocolKind = Literal["base2novel", "cross_dataset", "single"]
PARTS: dict[str, tuple[str, ...]] = {"base2novel": ("base", "novel"), "cross_dataset": ("test",), "single": ("test",)}


@dataclass
class EvalPart:
    """One list scored against one class file; `labels` (optional) checks the class order."""

    list: Path
    classes: Path
    labels: Path | None = None


@dataclass
class EvalSplit:
    name: str
    parts: dict[str, EvalPart]  # base2novel: base, novel; otherwise: test


@dataclass
class Protocol:
    kind: ProtocolKind
    name: str
    splits: list[EvalSplit]
    root: Path | None = None
    full: EvalPart | None = None
    views: int = 3
    source: str | None = None  # the config file


def single_protocol(list_file: str | Path, classes: str | Path, root: str | Path | None = None,
                    labels: str | Path | None = None, views: int = 3) -> Protocol:
    """The plain `eval --data LIST --classes FILE` case as a one-split protocol."""
    part = EvalPart(Path(list_file), Path(classes), Path(labels) if labels else None)
    return Protocol("single", Path(list_file).name, [EvalSplit(Path(list_file).stem, {"test": part})],
                    Path(root) if root else None, views=views)


class PartFile(Model):
    """One part of a split as written: a list, its class file, optionally the label file."""

    list_: Text = Field(alias="list")
    classes: Text
    labels: Text | None = None


class SplitFile(Model):
    name: Text
    base: PartFile | None = None
    novel: PartFile | None = None
    test: PartFile | None = None


class ProtocolFile(Model):
    """A protocol config as written (module docstring); checked whole before anything is read."""

    protocol: Literal["base2novel", "cross_dataset"]
    name: Text | None = None
    root: Text | None = None
    paths: dict[str, Text] = {}
    splits: Annotated[list[SplitFile], Field(min_length=1)]
    full: PartFile | None = None
    views: Annotated[int, Field(ge=1)] = 3

    @model_validator(mode="after")
    def _parts(self) -> "ProtocolFile":
        wanted = PARTS[self.protocol]
        for i, split in enumerate(self.splits):
            given = {p for p in ("base", "novel", "test") if getattr(split, p) is not None}
            if given != set(wanted):
                raise ValueError(f"splits[{i}] ({split.name}) must have exactly {', '.join(wanted)} for {self.protocol}")
        names = [s.name for s in self.splits]
        if len(set(names)) != len(names) or "full" in names:
            raise ValueError(f"split names must be unique and not 'full', not {names}")
        if self.full is not None and self.protocol != "cross_dataset":
            raise ValueError("full belongs to cross_dataset protocols")
        return self


def load_protocol(path: str | Path, *, root: str | Path | None = None, paths: dict[str, str] | None = None,
                  views: int | None = None, only: list[str] | None = None) -> Protocol:
    """Read a protocol config; `root`, `paths` and `views` override its values; `only` keeps those splits."""
    path = Path(path)
    doc = validate(ProtocolFile, read_yaml(path, "protocol config"), path)
    folders = dict(doc.paths)
    for name, value in (paths or {}).items():
        if name not in folders:
            raise ConfigError(f"--path {name}=...: {path} has no folder {name!r} (it has: {', '.join(folders) or 'none'})")
        folders[name] = value
    splits = [EvalSplit(s.name, {p: _part(getattr(s, p), folders, f"{path}: split {s.name}.{p}") for p in PARTS[doc.protocol]})
              for s in doc.splits]
    if only:
        names = [s.name for s in splits]
        unknown = [n for n in only if n not in names]
        if unknown:
            raise ConfigError(f"--split {unknown[0]}: {path} has the splits {', '.join(names)}")
        splits = [s for s in splits if s.name in only]
    root_value = root if root is not None else doc.root
    v = views if views is not None else doc.views
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ConfigError(f"--views must be a positive integer, not {v!r}")
    return Protocol(doc.protocol, doc.name or path.stem, splits,
                    Path(_fill(str(root_value), folders, f"{path}: root")) if root_value else None,
                    _part(doc.full, folders, f"{path}: full") if doc.full is not None else None, v, str(path))


def _fill(value: str, folders: dict[str, str], where: str) -> str:
    try:
        return value.format_map(folders)
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(f"{where}: {value!r} names an unknown folder {e}; known: {', '.join(folders) or 'none'}") from e


def _part(part: PartFile, folders: dict[str, str], where: str) -> EvalPart:
    return EvalPart(Path(_fill(part.list_, folders, where)), Path(_fill(part.classes, folders, where)),
                    Path(_fill(part.labels, folders, where)) if part.labels else None)


@dataclass
class PreparedPart:
    """A part whose files have been read and checked."""

    part: EvalPart
    items: list[VideoItem]
    classes: list[ClassText]


def prepare_part(part: EvalPart, root: Path | None, require_existing: bool = True) -> PreparedPart:
    """Read the class file (checked against `labels`) and the list (labels in range, videos present)."""
    classes = read_classes(part.classes)
    if part.labels is not None:
        check_class_names(classes, [c.name for c in read_classes(part.labels)], str(part.classes), str(part.labels))
    items = read_video_list(part.list, root, num_classes=len(classes), require_existing=require_existing)
    return PreparedPart(part, items, classes)


@dataclass
class StudentSource:
    """Where each split's student comes from: a student directory, `{split}` replaced by the split's
    name, or (no directory) an open_clip model with its pretrained weights."""

    directory: str | None = None
    model: str = "ViT-B-16"
    pretrained: str | None = "openai"
    num_frames: int | None = None  # None: the student's own T, else StudentConfig's default
    activation: str = "auto"  # the zero-shot model's (a student directory records its own)

    def key(self, split: str) -> str:
        if self.directory is not None:
            return self.directory.replace("{split}", split)
        return f"{self.model} ({self.pretrained or 'random'}) T={self.num_frames or StudentConfig().num_frames}"

    def load(self, split: str) -> VideoStudent:
        from ..model.factory import load_model

        path = None if self.directory is None else self.directory.replace("{split}", split)
        return load_model(path, self.model, self.pretrained, self.num_frames, self.activation)


@dataclass
class SplitReport:
    name: str
    student: str
    results: dict[str, EvalResult]  # by part: base / novel, or test

    @property
    def hm(self) -> float | None:
        if "base" in self.results:
            return harmonic_mean(self.results["base"].top1, self.results["novel"].top1)
        return None


@dataclass
class ProtocolReport:
    """Per split results, the summary over splits, and what was run (for the JSON report)."""

    protocol: Protocol
    splits: list[SplitReport]
    full: SplitReport | None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> dict[str, Any]:
        if self.protocol.kind == "base2novel":
            out = {}
            for metric in ("top1", "top5", "reference_top1"):
                s = base_to_novel_summary([getattr(r.results["base"], metric) for r in self.splits],
                                          [getattr(r.results["novel"], metric) for r in self.splits])
                out.update({f"{k}_{metric}": v for k, v in s.items()})
            return out
        if self.protocol.kind == "single":
            test = self.splits[0].results["test"]
            return {"top1": test.top1, "top5": test.top5, "mean_class_top1": test.mean_class_top1,
                    "reference_top1": test.reference_top1, "failed": test.num_failed}
        out = {}
        for metric in ("top1", "top5", "reference_top1"):
            m, sd = mean_std([getattr(r.results["test"], metric) for r in self.splits])
            out[f"{metric}_mean"], out[f"{metric}_std"] = m, sd
        if self.full is not None:
            out["full_top1"] = self.full.results["test"].top1
            out["full_top5"] = self.full.results["test"].top5
            out["full_reference_top1"] = self.full.results["test"].reference_top1
        return out

    @property
    def failed(self) -> list[str]:
        """Every video that could not be scored, once."""
        reports = self.splits + ([self.full] if self.full else [])
        return list(dict.fromkeys(f for r in reports for res in r.results.values() for f in res.failed))

    def require_scored(self) -> None:
        """FrosterError naming every part of which not one video could be scored."""
        reports = self.splits + ([self.full] if self.full else [])
        empty = [f"{r.name}.{part} ({res.num_videos} videos)" for r in reports for part, res in r.results.items()
                 if res.num_scored == 0]
        if empty:
            raise FrosterError(f"no video could be scored in {', '.join(empty)}")

    def to_dict(self, videos: bool = True) -> dict[str, Any]:
        def split_dict(r: SplitReport) -> dict[str, Any]:
            d: dict[str, Any] = {"name": r.name, "student": r.student}
            d.update({part: res.to_dict(videos) for part, res in r.results.items()})
            if r.hm is not None:
                d["hm_top1"] = r.hm
            return d

        p = self.protocol
        return {
            "format": "froster-edge-eval",
            "version": 1,
            "froster_edge": __version__,
            "protocol": p.kind,
            "name": p.name,
            "config": p.source,
            "root": str(p.root) if p.root else None,
            "views": p.views,
            "settings": self.settings,
            "summary": self.summary,
            "splits": [split_dict(r) for r in self.splits],
            "full": split_dict(self.full) if self.full else None,
            "failed_videos": self.failed,
            "files": {f"{s.name}.{k}": {"list": str(v.list), "classes": str(v.classes),
                                        "labels": str(v.labels) if v.labels else None}
                      for s in p.splits for k, v in s.parts.items()},
        }

    def table(self):
        """The report as a rich Table for the terminal."""
        from rich.table import Table

        p = self.protocol
        table = Table(title=f"{p.name} ({p.views} views, top-1 / top-5 %; ref: the reference's figure, "
                            "a skipped video counted wrong)")
        fmt = _fmt
        if p.kind == "base2novel":
            for col in ("split", "base", "novel", "HM", "ref base", "ref novel", "ref HM", "base top-5", "novel top-5",
                        "scored", "skipped"):
                table.add_column(col, justify="left" if col == "split" else "right")
            for r in self.splits:
                b, n = r.results["base"], r.results["novel"]
                table.add_row(r.name, fmt(b.top1), fmt(n.top1), fmt(r.hm), fmt(b.reference_top1), fmt(n.reference_top1),
                              fmt(harmonic_mean(b.reference_top1, n.reference_top1)), fmt(b.top5), fmt(n.top5),
                              f"{b.num_scored + n.num_scored}/{b.num_videos + n.num_videos}", str(b.num_failed + n.num_failed))
            if len(self.splits) > 1:
                s = self.summary
                table.add_row(f"mean of {len(self.splits)}", fmt(s["base_top1"]), fmt(s["novel_top1"]), fmt(s["hm_top1"]),
                              fmt(s["base_reference_top1"]), fmt(s["novel_reference_top1"]), fmt(s["hm_reference_top1"]),
                              fmt(s["base_top5"]), fmt(s["novel_top5"]), "", "", style="bold")
            return table
        for col in ("split", "top-1", "ref top-1", "top-5", "mean class top-1", "scored", "skipped"):
            table.add_column(col, justify="left" if col == "split" else "right")
        for r in self.splits + ([self.full] if self.full else []):
            t = r.results["test"]
            table.add_row(r.name, fmt(t.top1), fmt(t.reference_top1), fmt(t.top5), fmt(t.mean_class_top1),
                          f"{t.num_scored}/{t.num_videos}", str(t.num_failed))
        if len(self.splits) > 1:
            s = self.summary
            table.add_row("mean ± std", f"{fmt(s['top1_mean'])} ± {fmt(s['top1_std'])}",
                          f"{fmt(s['reference_top1_mean'])} ± {fmt(s['reference_top1_std'])}",
                          f"{fmt(s['top5_mean'])} ± {fmt(s['top5_std'])}", "", "", "", style="bold")
        return table


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def run_protocol(
    protocol: Protocol,
    students: StudentSource | VideoStudent,
    *,
    batch_size: int = 8,
    num_workers: int = 2,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> ProtocolReport:
    """Check every file, then encode each student's videos once and score every split part."""
    named = [(s.name, s.parts) for s in protocol.splits] + ([("full", {"test": protocol.full})] if protocol.full else [])
    prepared = {(name, k): prepare_part(part, protocol.root) for name, parts in named for k, part in parts.items()}

    def key_of(split: str) -> str:
        return students.key(split) if isinstance(students, StudentSource) else "given student"

    groups: dict[str, list[str]] = {}
    for name, _ in named:
        groups.setdefault(key_of(name), []).append(name)
    if protocol.kind == "base2novel" and len(protocol.splits) > 1 and len(groups) == 1:
        log.warning(f"one student for all {len(protocol.splits)} training seeds: each seed's row is the same model "
                    "(put {split} in --student for each seed's student, or --split NAME to score one)")
    results: dict[tuple[str, str], EvalResult] = {}
    students_used: dict[str, dict[str, int]] = {}
    for key, split_names in groups.items():
        log.info(f"student {key}: splits {', '.join(split_names)}")
        student = students.load(split_names[0]) if isinstance(students, StudentSource) else students
        student.to(device)
        students_used[key] = {"num_frames": student.config.num_frames, "image_size": student_image_size(student)}
        members = [(n, k) for (n, k) in prepared if n in split_names]
        unique: dict[str, int] = {}
        videos: list[VideoItem] = []
        for m in members:
            for it in prepared[m].items:
                if str(it.path) not in unique:
                    unique[str(it.path)] = len(videos)
                    videos.append(it)
        encoded = encode_videos(student, videos, views=protocol.views, batch_size=batch_size, num_workers=num_workers,
                                device=device, progress=progress, description=f"{protocol.name}: {len(videos)} videos")
        embeddings: dict[str, torch.Tensor] = {}
        for m in members:
            prep = prepared[m]
            ckey = str(prep.part.classes)
            if ckey not in embeddings:
                embeddings[ckey] = class_embeddings(student, prep.classes, device)
            rows = encoded.rows([unique[str(it.path)] for it in prep.items])
            results[m] = score_videos(rows, prep.items, embeddings[ckey], student.logit_scale, [c.name for c in prep.classes])
    reports = {name: SplitReport(name, key_of(name), {k: results[(name, k)] for k in parts}) for name, parts in named}
    full = reports.pop("full") if protocol.full else None
    return ProtocolReport(protocol, [reports[s.name] for s in protocol.splits], full,
                          {"batch_size": batch_size, "num_workers": num_workers, "device": str(device),
                           "students": students_used})
