"""Dataclass configs and their YAML/JSON form: the one source of defaults.

Each stage gets its own small config; `from_mapping` builds one from a plain mapping and
rejects unknown keys by name, so a typo in a YAML file fails loudly instead of being ignored.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, TypeVar

import yaml

from .errors import ConfigError

T = TypeVar("T")

TemporalAttention = Literal["neighbors", "none"]


@dataclass
class StudentConfig:
    """What rebuilds a student: the CLIP architecture, its weights source and the video shape.

    model_name: an open_clip model name (`ViT-B-16`) or a path to an open_clip model-config JSON.
    pretrained: an open_clip tag (`openai`), a local checkpoint file, or None for random init.
    """

    model_name: str = "ViT-B-16"
    pretrained: str | None = "openai"
    num_frames: int = 8
    image_size: int = 224
    temporal_attention: TemporalAttention = "neighbors"
    grad_checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.num_frames < 1:
            raise ConfigError(f"student.num_frames must be >= 1, got {self.num_frames}")
        if self.image_size < 1:
            raise ConfigError(f"student.image_size must be >= 1, got {self.image_size}")
        if self.temporal_attention not in ("neighbors", "none"):
            raise ConfigError(
                f"student.temporal_attention must be 'neighbors' or 'none', got {self.temporal_attention!r}"
            )


@dataclass
class DistillConfig:
    """Residual feature distillation (FROSTER): projector scale and loss weights."""

    alpha: float = 0.1
    vision_weight: float = 2.0
    text_weight: float = 2.0


@dataclass
class ModelConfig:
    """Student plus distillation: everything the training model needs."""

    student: StudentConfig = field(default_factory=StudentConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)


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
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; "
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


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# type -> (does a YAML value fit it, how to name it in an error)
_SCALARS: dict[Any, tuple[Any, str]] = {
    bool: (lambda v: isinstance(v, bool), "true or false"),
    float: (_is_number, "a number"),
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
        raise ConfigError(f"config key {key}: {value!r} fits none of {tp}")
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"config key {key} must be one of {list(typing.get_args(tp))}, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key} must be a list, got {value!r}")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        return [_check_scalar(key, item_tp, v) for v in value]
    if tp is Any:
        return value
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"config key {key} must be null, got {value!r}")
    if tp in _SCALARS:
        accepts, what = _SCALARS[tp]
        if accepts(value):
            return float(value) if tp is float else value
        raise ConfigError(f"config key {key} must be {what}, got {value!r}")
    return value


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass config as plain data, for YAML/JSON."""
    return dataclasses.asdict(obj)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with a one-line error for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    return data
