"""Training checkpoints that survive a kill at any moment and load without unpickling.

A state `step_<N>/` holds student/, optimizer.safetensors, rng.safetensors and state.json (epoch,
step, sampler position, hyper-parameters, scaler, Python RNG, the two files' sha256), written last.
It is assembled under a hidden name and renamed into place (`froster_edge.io.atomic_dir`); older
states are pruned only after. Resume takes the newest state whose hashes match and names the
newer ones it skipped.

See docs/training.md.
"""

from __future__ import annotations

import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError
from ..io import atomic_dir, atomic_write_json, read_tensors, read_versioned_json, save_tensors
from ..model.checkpoint import PROJECTORS_FILE, WEIGHTS_FILE, load_state_strict, load_tensors, read_student_config, save_student
from ..model.distill import FrosterDistiller

FORMAT = "froster-edge-train-state"
VERSION = 1
STATE_FILE = "state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"
STUDENT_DIR = "student"
_STATE_DIR = re.compile(r"^step_(\d+)$")


# ---- RNG -------------------------------------------------------------------------------------

def capture_rng() -> dict[str, Any]:
    """This process's generator states (torch, CUDA, numpy, Python)."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": random.getstate(),
    }


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _rng_to_files(states: list[dict[str, Any]]) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    tensors: dict[str, torch.Tensor] = {}
    meta = []
    for r, s in enumerate(states):
        tensors[f"{r}.torch"] = s["torch"]
        for i, c in enumerate(s["cuda"]):
            tensors[f"{r}.cuda.{i}"] = c
        tensors[f"{r}.numpy"] = s["numpy"]["keys"]
        version, internal, gauss = s["python"]
        meta.append({"cuda": len(s["cuda"]), "numpy": {k: v for k, v in s["numpy"].items() if k != "keys"},
                     "python": [version, list(internal), gauss]})
    return tensors, meta


def _rng_from_files(tensors: dict[str, torch.Tensor], meta: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"torch": tensors[f"{r}.torch"], "cuda": [tensors[f"{r}.cuda.{i}"] for i in range(m["cuda"])],
         "numpy": {"keys": tensors[f"{r}.numpy"], **m["numpy"]}, "python": m["python"]}
        for r, m in enumerate(meta)
    ]


# ---- optimizer -------------------------------------------------------------------------------

def _optimizer_to_files(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, scalars = {}, {}
    for pid, per_param in sd["state"].items():
        for k, v in per_param.items():
            (tensors if torch.is_tensor(v) else scalars)[f"{pid}.{k}"] = v
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _optimizer_from_files(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, v in [*tensors.items(), *meta["scalars"].items()]:
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


# ---- save / load -----------------------------------------------------------------------------

def projector_modules(distiller: FrosterDistiller) -> dict[str, nn.Module]:
    return {"projector_v": distiller.projector_v, "projector_t": distiller.projector_t}


def save_state(
    root: str | Path,
    *,
    step: int,
    epoch: int,
    epoch_step: int,
    distiller: FrosterDistiller,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    rng_states: list[dict[str, Any]],
    extra: dict[str, Any] | None = None,
    keep: int = 1,
) -> Path:
    """Write `root/step_<step>/` atomically, then prune all but the newest `keep` states.

    `epoch` is the epoch in progress (0-based) and `epoch_step` the steps already done in it;
    at an epoch's end they are (next epoch, 0).
    """
    root = Path(root)
    final = root / f"step_{step:08d}"
    with atomic_dir(final) as tmp:
        save_student(distiller.student, tmp / STUDENT_DIR, projectors=projector_modules(distiller))
        opt_tensors, opt_meta = _optimizer_to_files(optimizer.state_dict())
        rng_tensors, rng_meta = _rng_to_files(rng_states)
        files = {OPTIMIZER_FILE: save_tensors(opt_tensors, tmp / OPTIMIZER_FILE),
                 RNG_FILE: save_tensors(rng_tensors, tmp / RNG_FILE)}
        atomic_write_json(tmp / STATE_FILE, {
            "format": FORMAT, "version": VERSION, "step": step, "epoch": epoch, "epoch_step": epoch_step,
            "optimizer": opt_meta, "rng": rng_meta, "scaler": scaler.state_dict() if scaler is not None else None,
            "files": files, **(extra or {}),
        })
    prune(root, keep)
    return final


def list_states(root: str | Path) -> list[Path]:
    """State directories under `root`, newest step first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STATE_DIR.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def prune(root: Path, keep: int) -> None:
    for old in list_states(root)[keep:]:
        shutil.rmtree(old, ignore_errors=True)


@dataclass
class TrainState:
    """A training state read back from disk, every file verified against its recorded hash."""

    path: Path
    meta: dict[str, Any]
    student: dict[str, torch.Tensor]
    projectors: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: list[dict[str, Any]] = field(default_factory=list)

    @property
    def step(self) -> int:
        return int(self.meta["step"])

    @property
    def epoch(self) -> int:
        return int(self.meta["epoch"])

    @property
    def epoch_step(self) -> int:
        return int(self.meta["epoch_step"])

    def apply(self, distiller: FrosterDistiller, optimizer: torch.optim.Optimizer,
              scaler: torch.amp.GradScaler | None) -> None:
        """Load weights, projectors, optimizer and GradScaler state into the live objects."""
        load_state_strict(distiller.student.clip, self.student, f"{self.path}/{STUDENT_DIR}/{WEIGHTS_FILE}")
        for name, module in projector_modules(distiller).items():
            own = {k[len(name) + 1:]: v for k, v in self.projectors.items() if k.startswith(name + ".")}
            load_state_strict(module, own, f"{self.path}/{STUDENT_DIR}/{PROJECTORS_FILE} ({name})")
        try:
            optimizer.load_state_dict(self.optimizer)
        except (ValueError, KeyError) as e:
            raise CheckpointError(f"{self.path}: the optimizer state does not fit this model: {e}") from e
        if scaler is not None and self.meta.get("scaler"):
            scaler.load_state_dict(self.meta["scaler"])


def read_state(path: str | Path) -> TrainState:
    """Read and verify one state directory; CheckpointError names what is wrong."""
    path = Path(path)
    meta_path = path / STATE_FILE
    if not meta_path.is_file():
        raise CheckpointError(f"{path} is not a training state: no {STATE_FILE}")
    meta = read_versioned_json(meta_path, FORMAT, VERSION, ("step", "epoch", "epoch_step", "optimizer", "rng", "files"),
                               CheckpointError, "training state")
    files = meta["files"]
    opt = read_tensors(path / OPTIMIZER_FILE, files.get(OPTIMIZER_FILE), str(meta_path))
    rng = read_tensors(path / RNG_FILE, files.get(RNG_FILE), str(meta_path))
    student_dir = path / STUDENT_DIR
    student_cfg = read_student_config(student_dir)
    return TrainState(
        path=path,
        meta=meta,
        student=load_tensors(student_dir, WEIGHTS_FILE, student_cfg),
        projectors=load_tensors(student_dir, PROJECTORS_FILE, student_cfg),
        optimizer=_optimizer_from_files(opt, meta["optimizer"]),
        rng=_rng_from_files(rng, meta["rng"]),
    )


def latest_state(root: str | Path) -> tuple[TrainState | None, list[str]]:
    """The newest state under `root` that reads back intact, and why newer ones were skipped."""
    skipped = []
    for path in list_states(root):
        try:
            return read_state(path), skipped
        except CheckpointError as e:
            skipped.append(str(e))
    return None, skipped
