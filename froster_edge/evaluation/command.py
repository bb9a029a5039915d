"""What `froster-edge eval` does, as a library call: check the flags, run, write the JSON report.

See docs/evaluation.md.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..device import resolve_device
from ..errors import ConfigError
from ..io import atomic_write_bytes
from .protocol import Protocol, ProtocolReport, StudentSource, load_protocol, run_protocol, single_protocol

log = logging.getLogger(__name__)


@dataclass
class EvalRequest:
    """The eval command's options (see `froster-edge eval --help`)."""

    protocol: Path | None = None
    data: Path | None = None
    classes: Path | None = None
    check_classes: Path | None = None  # --check-classes: a plain label file the class texts must match
    root: Path | None = None
    paths: list[str] = field(default_factory=list)  # NAME=DIR
    splits: list[str] = field(default_factory=list)  # --split NAME: score only these splits (seeds)
    student: str | None = None
    model: str = "ViT-B-16"
    pretrained: str | None = "openai"
    activation: str = "auto"  # --activation: the zero-shot model's
    frames: int | None = None  # None: the student's own T, else 8
    views: int | None = None
    batch_size: int = 8
    workers: int = 2
    device: str = "auto"
    json_out: Path | None = None
    progress: bool = True


def build_protocol(req: EvalRequest) -> Protocol:
    """The protocol of `--protocol CONFIG`, or the one-list protocol of `--data LIST --classes FILE`."""
    if (req.protocol is None) == (req.data is None):
        raise ConfigError("give either --protocol CONFIG.yaml or --data LIST (with --classes)")
    if req.protocol is not None:
        if req.classes is not None or req.check_classes is not None:
            raise ConfigError("--classes and --check-classes go with --data; a protocol config names its own class files")
        paths = {}
        for spec in req.paths:
            name, sep, value = spec.partition("=")
            if not sep or not name or not value:
                raise ConfigError(f"--path expects NAME=DIR, got {spec!r}")
            paths[name] = value
        return load_protocol(req.protocol, root=req.root, paths=paths, views=req.views, only=req.splits)
    if req.classes is None:
        raise ConfigError("--data needs --classes FILE (names, one a line, or JSON {\"0\": \"Name: description\"})")
    if req.paths or req.splits:
        raise ConfigError("--path NAME=DIR and --split NAME go with --protocol")
    return single_protocol(req.data, req.classes, req.root, req.check_classes, req.views or 3)


def run_eval(req: EvalRequest) -> ProtocolReport:
    """Check everything, run the protocol, write the JSON report when asked."""
    protocol = build_protocol(req)
    if req.batch_size < 1 or req.workers < 0:
        raise ConfigError("--batch-size must be >= 1 and --workers >= 0")
    device = resolve_device(req.device)
    source = StudentSource(req.student, req.model, req.pretrained, req.frames, req.activation)
    report = run_protocol(protocol, source, batch_size=req.batch_size, num_workers=req.workers, device=device,
                          progress=req.progress)
    if req.json_out is not None:
        atomic_write_bytes(req.json_out, json.dumps(report.to_dict(), indent=1).encode() + b"\n")
    return report
