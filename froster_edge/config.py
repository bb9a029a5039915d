"""Dataclass configs and their YAML/JSON form: the one source of defaults.

Each stage gets its own small config; `from_mapping` builds one from a plain mapping and rejects
unknown keys by name, so a typo in a YAML file fails loudly instead of being ignored.

See docs/training.md.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, TypeVar

import yaml

from .errors import ConfigError, shorten
from .io import read_yaml, yaml_loader
from .sampling import SamplingConfig, SamplingSpec
from .spatial import SpatialConfig, SpatialSpec

T = TypeVar("T")

TemporalAttention = Literal["neighbors", "none"]
MAX_FRAMES_PER_CLIP = 1024  # far above any recipe (FROSTER uses 8); bounds memory before a model is built
MAX_IMAGE_SIZE = 4096
Activation = Literal["auto", "quick_gelu", "gelu"]


@dataclass
class StudentConfig:
    """What rebuilds a student: the CLIP architecture, its weights source and the video shape.

    model_name: an open_clip model name (`ViT-B-16`) or a path to an open_clip model-config JSON.
    pretrained: an open_clip tag (`openai`), a local checkpoint file, or None for random init.
    sampling: which frames a clip takes (froster_edge.sampling; default the reference's rule),
    saved with the student and copied into its bundles.
    spatial: how each frame is resized and cropped (froster_edge.spatial; default the reference's
    transforms), saved and copied the same way; a student saved without it reads as "legacy"
    (`saved_student_config`), the transforms it was trained with.
    activation: the MLP activation of the CLIP weights. "auto" takes it from every source that
    says one (model name/config, tag, a local file's layout or sidecar config) and refuses a
    conflict; a built or saved student records the one it has ("quick_gelu" for OpenAI CLIP).
    """

    model_name: str = "ViT-B-16"
    pretrained: str | None = "openai"
    num_frames: int = 8
    image_size: int = 224
    temporal_attention: TemporalAttention = "neighbors"
    grad_checkpointing: bool = False
    activation: Activation = "auto"
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    spatial: SpatialConfig = field(default_factory=SpatialConfig)

    def sampling_spec(self) -> SamplingSpec:
        """The frames this student's clips take, everywhere (train, eval, calibrate, run)."""
        return self.sampling.spec(self.num_frames)

    def spatial_spec(self) -> SpatialSpec:
        """How this student's frames are resized and cropped, everywhere (train, eval, calibrate, run)."""
        return self.spatial.spec()

    def __post_init__(self) -> None:
        if not 1 <= self.num_frames <= MAX_FRAMES_PER_CLIP:
            raise ConfigError(f"student.num_frames must be in 1..{MAX_FRAMES_PER_CLIP}, got {_show(self.num_frames)}")
        if not 1 <= self.image_size <= MAX_IMAGE_SIZE:
            raise ConfigError(f"student.image_size must be in 1..{MAX_IMAGE_SIZE}, got {_show(self.image_size)}")
        if self.temporal_attention not in ("neighbors", "none"):
            raise ConfigError(
                f"student.temporal_attention must be 'neighbors' or 'none', got {self.temporal_attention!r}"
            )
        if self.activation not in ("auto", "quick_gelu", "gelu"):
            raise ConfigError(f"student.activation must be auto, quick_gelu or gelu, got {self.activation!r}")


@dataclass
class DistillConfig:
    """Residual feature distillation (FROSTER): projector scale and loss weights."""

    alpha: float = 0.1
    vision_weight: float = 2.0
    text_weight: float = 2.0


AmpMode = Literal["auto", "bf16", "fp16", "off"]


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@dataclass
class DataConfig:
    """Training videos (a list file under a root), their class texts, optional validation and few-shot.

    In a YAML recipe, relative paths are relative to the YAML file's folder; with --set, to the
    current directory. `num_classes`, when set, must equal the number of classes in `classes`
    (a guard against pointing at the wrong class file). `shots` keeps that many videos per class
    of `train_list`, chosen with `shots_seed` (B2N's 16-shot protocol).
    """

    root: str | None = None
    train_list: str | None = None
    classes: str | None = None
    num_classes: int | None = None
    shots: int | None = None
    shots_seed: int = 1
    val_list: str | None = None
    val_root: str | None = None  # default: root
    val_classes: str | None = None  # default: classes
    val_views: int = 3
    num_workers: int = 8
    stride: int | None = None  # moved to student.sampling; kept only to say so
    reference_fps: float | None = None

    def __post_init__(self) -> None:
        _require(self.num_classes is None or self.num_classes >= 1, f"data.num_classes must be >= 1, got {self.num_classes}")
        _require(self.shots is None or self.shots >= 1, f"data.shots must be >= 1 or null, got {self.shots}")
        _require(self.val_views >= 1, f"data.val_views must be >= 1, got {self.val_views}")
        for old in ("stride", "reference_fps"):
            _require(getattr(self, old) is None, f"data.{old} moved to student.sampling.{old} (the frames are the "
                     "model's: eval, calibrate and run read them from the student and its bundle)")
        _require(self.num_workers >= 0, f"data.num_workers must be >= 0, got {self.num_workers}")


@dataclass
class OptimConfig:
    """AdamW with linear warm-up then cosine, per step; FROSTER's values (method doc, Recipe).

    The cosine runs from the end of the warm-up to the last step (the reference's
    COSINE_AFTER_WARMUP); weight decay skips 1-D parameters and biases; `clip_grad_norm: null`
    turns clipping off.
    """

    lr: float = 3.33e-6
    warmup_start_lr: float = 3.33e-8
    end_lr: float = 3.33e-8
    warmup_epochs: float = 2.0
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    clip_grad_norm: float | None = 1.0

    def __post_init__(self) -> None:
        _require(self.lr > 0, f"optim.lr must be > 0, got {self.lr}")
        _require(self.warmup_start_lr >= 0 and self.end_lr >= 0, "optim.warmup_start_lr and optim.end_lr must be >= 0")
        _require(self.warmup_epochs >= 0, f"optim.warmup_epochs must be >= 0, got {self.warmup_epochs}")
        _require(self.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {self.weight_decay}")
        _require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), f"optim.betas must be two numbers in [0, 1), got {self.betas}")
        _require(self.eps > 0, f"optim.eps must be > 0, got {self.eps}")
        _require(self.clip_grad_norm is None or self.clip_grad_norm > 0, f"optim.clip_grad_norm must be > 0 or null, got {self.clip_grad_norm}")


@dataclass
class TrainConfig:
    """The run: epochs, GLOBAL batch (over all processes), precision, checkpoints, averaging.

    `micro_batch_size` is the clips one process pushes through at once; the global batch is
    reached by gradient accumulation (default: batch_size / world size, no accumulation).
    `average_from: E` makes the final student the uniform mean of epochs E..last (1-based);
    null keeps the last epoch. `amp: auto` is bf16 on a GPU that has it, else fp16, off on the CPU.
    """

    epochs: int = 22
    batch_size: int = 64
    micro_batch_size: int | None = None
    amp: AmpMode = "auto"
    device: str = "auto"
    seed: int = 0
    average_from: int | None = 2
    eval_every: int = 0
    save_every_steps: int = 0
    keep_states: int = 1
    log_every: int = 10
    progress: bool = True

    def __post_init__(self) -> None:
        _require(self.epochs >= 1, f"train.epochs must be >= 1, got {self.epochs}")
        _require(self.batch_size >= 1, f"train.batch_size must be >= 1, got {self.batch_size}")
        _require(self.micro_batch_size is None or self.micro_batch_size >= 1, f"train.micro_batch_size must be >= 1 or null, got {self.micro_batch_size}")
        _require(self.average_from is None or 1 <= self.average_from <= self.epochs,
                 f"train.average_from must be an epoch in 1..{self.epochs} or null, got {self.average_from}")
        _require(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
                 f"train.device must be auto, cpu or cuda, got {self.device!r}")
        for name in ("eval_every", "save_every_steps"):
            _require(getattr(self, name) >= 0, f"train.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("keep_states", "log_every"):
            _require(getattr(self, name) >= 1, f"train.{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class RecipeConfig:
    """A training recipe, as `froster-edge train` reads it from YAML: one section per stage."""

    student: StudentConfig = field(default_factory=StudentConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def from_mapping(cls: type[T], data: Mapping[str, Any] | None, where: str = "") -> T:
    """Build dataclass `cls` from `data`, recursing into nested dataclasses; unknown keys fail."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key(s) {shorten(', '.join(prefix + str(k) for k in unknown), 200)}; "
            f"known: {', '.join(sorted(names))}"
        )
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        key = f"{where}.{name}" if where else name
        if _is_dataclass_type(tp):
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key {key} must be a mapping, got {type(value).__name__}")
            kwargs[name] = from_mapping(tp, value, key)
        else:
            kwargs[name] = _check_scalar(key, tp, value)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"bad config for {where or cls.__name__}: {e}") from e


def saved_student_config(data: Mapping[str, Any], where: str = "student") -> StudentConfig:
    """The StudentConfig a saved student or bundle recorded; one saved before the spatial spec
    existed (no `spatial`) was trained and exported with the legacy transforms and keeps them."""
    data = dict(data)
    data.setdefault("spatial", {"rule": "legacy"})
    return from_mapping(StudentConfig, data, where)


def _show(value: Any) -> str:
    """A config value in a message, bounded (a small YAML with aliases can expand to megabytes)."""
    return shorten(repr(value), 120)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# type -> (does a YAML value fit it, how to name it in an error)
_SCALARS: dict[Any, tuple[Any, str]] = {
    bool: (lambda v: isinstance(v, bool), "true or false"),
    float: (lambda v: _is_number(v) and math.isfinite(v), "a finite number"),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    str: (lambda v: isinstance(v, str), "a string"),
}


def _check_scalar(key: str, tp: Any, value: Any) -> Any:
    """Accept `value` for annotation `tp` (int/float/str/bool/None/Literal/list); coerce ints to float."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _check_scalar(key, option, value)
            except ConfigError:
                continue
        raise ConfigError(f"config key {key}: {_show(value)} fits none of {tp}")
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"config key {key} must be one of {list(typing.get_args(tp))}, got {_show(value)}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key} must be a list, got {_show(value)}")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        return [_check_scalar(key, item_tp, v) for v in value]
    if tp is Any:
        return value
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"config key {key} must be null, got {_show(value)}")
    if tp in _SCALARS:
        accepts, what = _SCALARS[tp]
        if accepts(value):
            return float(value) if tp is float else value
        raise ConfigError(f"config key {key} must be {what}, got {_show(value)}")
    return value


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass config as plain data, for YAML/JSON."""
    return dataclasses.asdict(obj)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with a one-line error for a missing or malformed file."""
    path = Path(path)
    data = read_yaml(path, "config file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.c=VALUE` -> (["a", "b", "c"], VALUE parsed as YAML: `1e-5`, `true`, `null`, `[1, 2]`)."""
    key, sep, raw = text.partition("=")
    keys = key.strip().split(".")
    if not sep or not all(k.strip() for k in keys):
        raise ConfigError(f"--set expects KEY=VALUE with a dotted key such as optim.lr=1e-5, got {text!r}")
    try:
        value = yaml.load(raw, Loader=yaml_loader()) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML: {str(e).splitlines()[0]}") from e
    return [k.strip() for k in keys], value


def apply_overrides(data: Mapping[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of the nested mapping `data` with each `a.b=VALUE` set; unknown keys are left to from_mapping."""
    out = copy.deepcopy(dict(data))
    for text in overrides:
        keys, value = parse_override(text)
        node = out
        for i, k in enumerate(keys[:-1]):
            child = node.get(k)
            if child is None:
                child = node[k] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: {'.'.join(keys[: i + 1])} is not a section")
            node = child
        node[keys[-1]] = value
    return out
