"""Reading a training recipe: YAML file, then `--set KEY=VALUE` overrides, into a RecipeConfig.

`froster_edge.config` holds every default; a recipe states only what differs. Paths in the YAML are
relative to its folder, paths given with --set to the current directory; both end up absolute in
the resolved config the run saves.

See docs/training.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..config import RecipeConfig, apply_overrides, from_mapping, load_yaml, to_dict
from ..io import atomic_write_text

# (section, key) of the path-valued options; model_name only when it names a .json file and
# pretrained only when it names an existing file (otherwise they are open_clip names/tags).
PATH_KEYS = (
    ("data", "root"),
    ("data", "train_list"),
    ("data", "classes"),
    ("data", "val_list"),
    ("data", "val_root"),
    ("data", "val_classes"),
)

# Options that may differ between a run and its --resume (they do not change the result).
RESUMABLE_CHANGES = {"data.num_workers", "train.progress", "train.log_every", "train.device", "train.keep_states"}


def _resolve(value: Any, base: Path, must_exist: bool = False) -> Any:
    if not isinstance(value, str) or not value:
        return value
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = base / path
    if must_exist and not path.exists():
        return value
    return str(path.resolve())


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    """Make the path options of `data` absolute against `base`, in place."""
    for section, key in PATH_KEYS:
        node = data.get(section)
        if isinstance(node, dict) and key in node:
            node[key] = _resolve(node[key], base)
    student = data.get("student")
    if isinstance(student, dict):
        name = student.get("model_name")
        if isinstance(name, str) and name.endswith(".json"):
            student["model_name"] = _resolve(name, base)
        if "pretrained" in student:
            student["pretrained"] = _resolve(student["pretrained"], base, must_exist=True)


def load_recipe(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> RecipeConfig:
    """The recipe of YAML file `path` (None: the defaults) with `overrides` ("a.b=VALUE") applied."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        data = load_yaml(path)
        _resolve_paths(data, path.resolve().parent)
    data = apply_overrides(data, list(overrides))
    _resolve_paths(data, Path.cwd())  # what is still relative came from --set
    return from_mapping(RecipeConfig, data)


def load_saved_recipe(path: str | Path) -> RecipeConfig:
    """The recipe a run directory saved; one saved before `student.spatial` existed ran with the
    legacy transforms (froster_edge.spatial), so resuming it asks for them."""
    path = Path(path)
    data = load_yaml(path)
    if isinstance(data.get("student"), dict):
        data["student"].setdefault("spatial", {"rule": "legacy"})
    _resolve_paths(data, path.resolve().parent)
    return from_mapping(RecipeConfig, data)


def recipe_to_yaml(config: RecipeConfig) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def save_recipe(config: RecipeConfig, path: str | Path) -> None:
    """Write the resolved recipe (every option, absolute paths), atomically."""
    atomic_write_text(path, recipe_to_yaml(config))


def flat(config: RecipeConfig) -> dict[str, Any]:
    """{"section.key": value} of every option."""
    return {f"{section}.{k}": v for section, values in to_dict(config).items() for k, v in values.items()}


def changed_options(old: RecipeConfig, new: RecipeConfig) -> list[str]:
    """Options that differ between `old` and `new` and would change a resumed run's result."""
    a, b = flat(old), flat(new)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in RESUMABLE_CHANGES)
