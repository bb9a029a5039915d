"""Student checkpoints: safetensors weights plus a JSON config that rebuilds the model.

A student directory holds config.json (format, version, StudentConfig, the open_clip model config,
the sha256 of each weights file, also the model's fingerprint), model.safetensors, and optionally
projectors.safetensors and teacher.safetensors. Nothing is unpickled; each file is written
atomically, config.json last, and the hashes catch a mismatched or torn pair.

See docs/training.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import saved_student_config
from ..errors import CheckpointError, ConfigError
from ..io import atomic_write_json, read_folder_json, read_tensors, save_tensors, tensors_fingerprint
from .clip import activation_of, build_clip
from .student import VideoStudent

FORMAT = "froster-edge-student"
VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PROJECTORS_FILE = "projectors.safetensors"
TEACHER_FILE = "teacher.safetensors"


def save_student(
    student: VideoStudent,
    out_dir: str | Path,
    projectors: dict[str, nn.Module] | None = None,
    teacher_state: dict[str, torch.Tensor] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a student directory; returns its path. `extra` lands in config.json as provenance."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = {WEIGHTS_FILE: save_tensors(student.clip.state_dict(), out / WEIGHTS_FILE)}
    if projectors:
        state = {f"{name}.{k}": v for name, mod in projectors.items() for k, v in mod.state_dict().items()}
        weights[PROJECTORS_FILE] = save_tensors(state, out / PROJECTORS_FILE)
    if teacher_state is not None:
        weights[TEACHER_FILE] = save_tensors(teacher_state, out / TEACHER_FILE)
    config = {
        "format": FORMAT,
        "version": VERSION,
        "student": asdict(student.config),
        "model_cfg": student.model_cfg,
        "embed_dim": student.embed_dim,
        "logit_scale": float(student.logit_scale.detach().exp()),
        "weights": weights,
        **({"extra": extra} if extra else {}),
    }
    atomic_write_json(out / CONFIG_FILE, config)
    return out


def read_student_config(student_dir: str | Path) -> dict[str, Any]:
    """The parsed config.json of a student directory, checked for format and version."""
    return read_folder_json(student_dir, CONFIG_FILE, FORMAT, VERSION, ("student", "model_cfg", "weights"), CheckpointError,
                            "student", "student config")


def load_tensors(student_dir: str | Path, name: str, config: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """A weights file of the directory, verified against the hash recorded in config.json."""
    d = Path(student_dir)
    config = config or read_student_config(d)
    expected = config["weights"].get(name)
    if expected is None:
        raise CheckpointError(f"{d} has no {name} recorded in its config")
    return read_tensors(d / name, expected, f"{d / CONFIG_FILE}")


def load_student(student_dir: str | Path, device: str | torch.device = "cpu") -> VideoStudent:
    """Rebuild the student from its directory; identical outputs to the saved model."""
    config = read_student_config(student_dir)
    try:
        student_cfg = saved_student_config(config["student"])
    except ConfigError as e:
        raise CheckpointError(f"{student_dir}: {e}") from e
    built = activation_of(config["model_cfg"])
    if student_cfg.activation == "auto":  # saved before the activation was recorded: the model config decides
        student_cfg = dataclasses.replace(student_cfg, activation=built)
    elif student_cfg.activation != built:
        raise CheckpointError(f"{student_dir}: {CONFIG_FILE} says student.activation {student_cfg.activation} but its "
                              f"model config builds {built}: a hand-edited or mismatched config")
    clip = build_clip(config["model_cfg"])
    load_state_strict(clip, load_tensors(student_dir, WEIGHTS_FILE, config), f"{student_dir}/{WEIGHTS_FILE}")
    return VideoStudent(clip, student_cfg, config["model_cfg"]).to(device)


def load_state_strict(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """load_state_dict(strict) with a one-line error naming missing/unexpected/mismatched keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    problems = []
    if missing:
        problems.append(f"missing keys {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_few(unexpected)}")
    if shape:
        problems.append("shape mismatch " + _few([f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in shape]))
    if problems:
        raise CheckpointError(f"{what} does not fit the model: " + "; ".join(problems))
    module.load_state_dict(state, strict=True)


def _few(items: list[str], n: int = 5) -> str:
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def model_fingerprint(student: VideoStudent) -> str:
    """sha256 over the CLIP weights (names, shapes, fp32 values): ties label tables and bundles to a model.

    It depends on the weights only, not on the file they came from, so a student saved, reloaded
    or exported keeps its fingerprint, and any other weights change it.
    """
    return tensors_fingerprint(student.clip.state_dict())
