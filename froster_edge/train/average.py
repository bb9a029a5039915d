"""Uniform weight averaging of student checkpoints (FROSTER averages epochs 2..last).

Every floating-point tensor of the student CLIP (and of the projectors, when every input has them)
is the plain mean, accumulated in float64 and stored as float32; integer tensors must agree. Inputs
must share the StudentConfig and open_clip model config, checked before anything is read.

See docs/training.md.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import torch

from ..config import saved_student_config
from ..errors import CheckpointError, ConfigError
from ..model.checkpoint import PROJECTORS_FILE, TEACHER_FILE, WEIGHTS_FILE, load_state_strict, load_tensors, read_student_config, save_student
from ..model.clip import build_clip
from ..model.distill import ResidualProjector
from ..model.student import VideoStudent

EPOCHS_DIR = "checkpoints"
_EPOCH_DIR = re.compile(r"^epoch_(\d+)$")


def epoch_dir(run_dir: str | Path, epoch: int) -> Path:
    """The student directory a run writes after epoch `epoch` (1-based)."""
    return Path(run_dir) / EPOCHS_DIR / f"epoch_{epoch:03d}"


def run_epochs(run_dir: str | Path) -> list[int]:
    """The epochs (1-based) that have a checkpoint in `run_dir`, ascending."""
    d = Path(run_dir) / EPOCHS_DIR
    if not d.is_dir():
        return []
    return sorted(int(m.group(1)) for p in d.iterdir() if p.is_dir() and (m := _EPOCH_DIR.match(p.name)))


def parse_epoch_range(text: str) -> tuple[int, int | None]:
    """`2..12` -> (2, 12); `2..` -> (2, None, meaning the last); `5` -> (5, 5)."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:\.\.\s*(\d*)\s*)?", text)
    if not m:
        raise ConfigError(f"epoch range must look like START..END, START.. or N, got {text!r}")
    start = int(m.group(1))
    if "." not in text:
        return start, start
    return start, int(m.group(2)) if m.group(2) else None


def epoch_dirs(run_dir: str | Path, start: int, end: int | None = None) -> list[Path]:
    """The epoch checkpoints start..end (inclusive; end None = the last) of a training run."""
    have = run_epochs(run_dir)
    if not have:
        raise CheckpointError(f"{run_dir} holds no epoch checkpoints ({EPOCHS_DIR}/epoch_NNN)")
    end = have[-1] if end is None else end
    if start < 1 or end < start:
        raise ConfigError(f"bad epoch range {start}..{end}")
    missing = [e for e in range(start, end + 1) if e not in have]
    if missing:
        raise CheckpointError(f"{run_dir} lacks epoch checkpoint(s) {', '.join(map(str, missing))} (it has {have[0]}..{have[-1]})")
    return [epoch_dir(run_dir, e) for e in range(start, end + 1)]


def average_state_dicts(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The uniform mean of state dicts with the same keys and shapes (integer tensors must be equal)."""
    if not states:
        raise ConfigError("nothing to average")
    keys = set(states[0])
    for i, s in enumerate(states[1:], 1):
        if set(s) != keys:
            diff = sorted(keys ^ set(s))[:5]
            raise CheckpointError(f"checkpoint {i + 1} has different keys from the first: {', '.join(diff)}")
    out = {}
    for k, first in states[0].items():
        if any(s[k].shape != first.shape for s in states):
            raise CheckpointError(f"{k} has different shapes across the checkpoints")
        if first.is_floating_point():
            acc = torch.zeros(first.shape, dtype=torch.float64)
            for s in states:
                acc += s[k].to(torch.float64)
            out[k] = (acc / len(states)).to(torch.float32)
        else:
            if any(not torch.equal(s[k], first) for s in states):
                raise CheckpointError(f"{k} is an integer tensor that differs across the checkpoints")
            out[k] = first.clone()
    return out


def average_students(student_dirs: Sequence[str | Path], out_dir: str | Path) -> Path:
    """Write the uniform average of `student_dirs` as a new student directory `out_dir`."""
    dirs = [Path(d) for d in student_dirs]
    if not dirs:
        raise ConfigError("average needs at least one student directory")
    configs = [read_student_config(d) for d in dirs]
    first = configs[0]
    for d, c in zip(dirs[1:], configs[1:], strict=False):
        if c["student"] != first["student"] or c["model_cfg"] != first["model_cfg"]:
            raise CheckpointError(f"{d} is a different model from {dirs[0]} (student or model config differs)")
    weights = average_state_dicts([load_tensors(d, WEIGHTS_FILE, c) for d, c in zip(dirs, configs, strict=False)])
    try:
        student_cfg = saved_student_config(first["student"])
    except ConfigError as e:
        raise CheckpointError(f"{dirs[0]}: {e}") from e
    clip = build_clip(first["model_cfg"])
    load_state_strict(clip, weights, f"the average of {len(dirs)} checkpoints")
    student = VideoStudent(clip, student_cfg, first["model_cfg"])

    projectors = None
    if all(PROJECTORS_FILE in c["weights"] for c in configs):
        mean = average_state_dicts([load_tensors(d, PROJECTORS_FILE, c) for d, c in zip(dirs, configs, strict=False)])
        projectors = {}
        for name in sorted({k.split(".", 1)[0] for k in mean}):
            module = ResidualProjector(student.embed_dim)
            load_state_strict(module, {k.split(".", 1)[1]: v for k, v in mean.items() if k.startswith(name + ".")},
                              f"averaged {name}")
            projectors[name] = module
    teacher = None
    if all(c["weights"].get(TEACHER_FILE) == first["weights"].get(TEACHER_FILE) for c in configs) and TEACHER_FILE in first["weights"]:
        teacher = load_tensors(dirs[0], TEACHER_FILE, first)  # the same frozen teacher in every input
    extra = {"averaged_from": [str(d) for d in dirs]}
    return save_student(student, out_dir, projectors=projectors, teacher_state=teacher, extra=extra)
