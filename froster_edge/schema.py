"""The typed config layer: strict pydantic models, one one-line error format, validated updates.

Every file a user writes (the site file, evaluation protocols) and the bundle manifest's structure
are read as a `Model`: strict types (no "3" for 3, no 1 for true), unknown keys refused, no
infinite or NaN numbers. `validate` turns the first problem into one ConfigError line naming the
file and the key path (`site.yaml: mqtt.qos: must be 0, 1 or 2, not 3`); `updated` is the one way
a flag changes a single field of a model, checked like the file was. See docs/site.md.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationError, ValidationInfo

from .errors import ConfigError, shorten

M = TypeVar("M", bound=BaseModel)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_NAME_CHARS = 300  # a label or action name; the web view's max_action_chars is its own limit


class Model(BaseModel):
    """Base of every config model: strict, closed, immutable, finite."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False,
                              arbitrary_types_allowed=False, validate_default=False)


def _text(value: Any) -> Any:
    """A text value: non-empty, no surrounding whitespace, no control characters (a trailing
    newline in a name becomes part of file names, topics and metric labels)."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("must not be empty")
        if value != value.strip():
            raise ValueError("must not start or end with whitespace")
        if _CONTROL.search(value):
            raise ValueError("must not hold control characters (a newline, a tab)")
    return value


def check_name(value: Any) -> Any:
    value = _text(value)
    if isinstance(value, str) and len(value) > MAX_NAME_CHARS:
        raise ValueError(f"must be at most {MAX_NAME_CHARS} characters")
    return value


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _path(value: Any, info: ValidationInfo) -> Any:
    """A path from a file is relative to that file's folder (the validation context's `base`)."""
    if isinstance(value, str):
        _text(value)
        path = Path(value).expanduser()
        base = (info.context or {}).get("base")
        return path if path.is_absolute() or base is None else Path(base) / path
    return value


Text = Annotated[str, AfterValidator(_text)]
Name = Annotated[str, AfterValidator(check_name)]
Names = Annotated[tuple[Name, ...], BeforeValidator(_tuple)]
FilePath = Annotated[Path, BeforeValidator(_path)]


def validate(cls: type[M], data: Any, source: str | Path, base: Path | None = None) -> M:
    """`data` (as parsed from `source`) as a `cls`; the first problem is one ConfigError line."""
    try:
        return cls.model_validate(data, context={"base": base})
    except ValidationError as e:
        raise ConfigError(error_line(source, e, cls)) from None


def updated(model: M, source: str, **changes: Any) -> M:
    """A copy of `model` with `changes` (flags over a file's fields), validated as a whole."""
    data = {**{k: getattr(model, k) for k in model.model_fields_set}, **changes}
    return validate(type(model), data, source)


def error_line(source: str | Path, error: ValidationError, cls: type[BaseModel] | None = None) -> str:
    """`source: key.path: must be ..., not VALUE` from a pydantic error (its first problem)."""
    first = error.errors(include_url=False)[0]
    loc = tuple(first["loc"])
    key = key_path(loc)
    kind, message = first["type"], first["msg"]
    shown = shorten(repr(first.get("input")), 80)
    if kind == "missing":
        text = "is required"
    elif kind == "extra_forbidden":
        known = known_keys(cls, loc[:-1]) if cls is not None else []
        text = "unknown key" + (f" (known here: {', '.join(known)})" if known else "")
    else:
        text = _MESSAGES.get(kind) or _rephrase(message)
        secret = any(w in str(part) for part in loc for w in ("token", "password"))
        scalar = not isinstance(first.get("input"), (dict, list, tuple))
        if scalar and not secret and ", not " not in text:
            text += f", not {shown}"
    return f"{source}: {key}: {text}" if key else f"{source}: {text}"


_MESSAGES = {
    "bool_type": "must be true or false",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "string_type": "must be a text",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "dict_type": "must be a mapping of keys",
    "model_type": "must be a mapping of keys",
    "model_attributes_type": "must be a mapping of keys",
    "is_instance_of": "must be a path (a text)",
}


def _rephrase(message: str) -> str:
    message = re.sub(r"^(Value error|Assertion failed), ", "", message)
    message = re.sub(r"^Input should be ", "must be ", message)
    message = re.sub(r"^(List|Tuple|Dictionary|String|Value) should have ", "must have ", message)
    return message.replace(" after validation", "")


def key_path(loc: tuple[Any, ...]) -> str:
    """('cameras', 0, 'hop') -> 'cameras[0].hop'; pydantic's union and validator tags are left out."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and not _is_tag(part):
            out += f".{part}" if out else part
    return out


def _is_tag(part: str) -> bool:
    return any(c in part for c in "[(") or part in ("str", "int", "float", "bool", "list", "tuple", "dict", "none")


def known_keys(cls: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys the model accepts at `loc` (for an unknown-key message), [] where it cannot tell."""
    tp: Any = cls
    for part in loc:
        tp = _plain(tp)
        if isinstance(part, int):
            args = typing.get_args(tp)
            tp = args[0] if args else None
        elif isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
            tp = tp.model_fields[part].annotation
        elif not (isinstance(part, str) and _is_tag(part)):
            return []
    tp = _plain(tp)
    return sorted(tp.model_fields) if isinstance(tp, type) and issubclass(tp, BaseModel) else []


def _plain(tp: Any) -> Any:
    """Optional[X] -> X; Annotated[X, ...] -> X."""
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


# --- a reference file generated from a model: every key, its default and what it accepts ---

def reference_yaml(cls: type[BaseModel], examples: dict[str, Any], indent: str = "", prefix: str = "") -> str:
    """Every key of `cls` as YAML with its default (or `examples[dotted.key]` where there is no
    default) and a comment saying what it accepts; nested models become sections, a list of
    models one example item."""
    lines = []
    fields = sorted(cls.model_fields.items(), key=lambda kv: not kv[1].is_required())  # required keys first
    for name, info in fields:
        key = f"{prefix}{name}"
        tp = _plain(info.annotation)
        model = tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None
        item = _plain(typing.get_args(tp)[0]) if typing.get_origin(tp) is list and typing.get_args(tp) else None
        if model is not None and key not in examples:
            lines.append(f"{indent}{name}:")
            lines.append(reference_yaml(model, examples, indent + "  ", f"{key}."))
        elif isinstance(item, type) and issubclass(item, BaseModel):
            lines.append(f"{indent}{name}:  # {accepts(info)}")
            body = reference_yaml(item, examples, indent + "    ", f"{key}[].")
            lines.append(f"{indent}  - " + body.lstrip())
        else:
            value = examples[key] if key in examples else info.get_default(call_default_factory=True)
            unset = "# " if value is None or value == () else ""  # left out by default
            lines.append(f"{indent}{unset}{name}: {_scalar(value)}  # {accepts(info)}")
    return "\n".join(lines)


def _scalar(value: Any) -> str:
    import json

    if isinstance(value, BaseModel):
        value = value.model_dump(exclude_unset=True) or None
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def accepts(info: Any) -> str:
    """What a field accepts, in words: its type, its bounds, whether null is allowed."""
    tp, bounds = info.annotation, [*info.metadata]
    nullable = False
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            tp, *extra = typing.get_args(tp)
            bounds += extra
        elif typing.get_origin(tp) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            nullable = nullable or len(args) < len(typing.get_args(tp))
            if len(args) != 1:
                break
            tp = args[0]
        else:
            break
    if tp is Any and info.description:
        return info.description
    words = _type_words(tp)
    if info.description:
        words += f" ({info.description})"
    for b in bounds:
        for item in getattr(b, "metadata", [b]):
            for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("min_length", "at least")):
                if getattr(item, attr, None) is not None:
                    words += f", {sign} {getattr(item, attr)}"
    return words + (", or null" if nullable else "")


def _type_words(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) in (tuple, list):
        return "a list of " + _type_words(_plain(typing.get_args(tp)[0])).removeprefix("a ") + "s"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a text", Path: "a path"}
    if tp in names:
        return names[tp]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "a mapping"
    return "see docs/site.md"
