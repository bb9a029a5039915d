"""Class texts and FROSTER's prompt ensemble, as plain strings (no torch).

A class text is a bare name or "Name: description" (FROSTER's rephrased label files). As in the
reference, a templated prompt is the template filled with the name followed by the WHOLE class
text, and the bare prompt is the whole class text; a bare name gets the filled template alone
(the reference would append the name a second time).

See docs/method.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

from .errors import ConfigError
from .io import read_json, read_text

# CLIP's Kinetics prompt set as FROSTER uses it: 4 openings x 7 phrasings = 28 templates.
_OPENINGS = ("a photo of", "a video of", "a example of", "a demonstration of")
_PHRASINGS = (
    "{}.",
    "a person {}.",
    "a person using {}.",
    "a person doing {}.",
    "a person during {}.",
    "a person performing {}.",
    "a person practicing {}.",
)
TEMPLATES: tuple[str, ...] = tuple(f"{o} {p}" for o in _OPENINGS for p in _PHRASINGS)


@dataclass(frozen=True)
class ClassText:
    """One class: the name used in templates and, when described, its whole "Name: description"."""

    name: str
    description: str | None = None

    @property
    def text(self) -> str:
        """The class text as written: "Name: description", or the bare name."""
        return f"{self.name}: {self.description}" if self.description else self.name

    @classmethod
    def parse(cls, text: str) -> "ClassText":
        """Split "Name: description" at the first colon; a text without one is a bare name."""
        text = " ".join(text.split())
        if not text:
            raise ConfigError("empty class text")
        name, sep, description = text.partition(":")
        if sep and name.strip() and description.strip():
            return cls(name.strip(), description.strip())
        return cls(text)

    @property
    def bare(self) -> str:
        """The prompt without a template: the whole class text."""
        return self.text


def prompts_for(cls: ClassText, templates: tuple[str, ...] = TEMPLATES) -> list[str]:
    """All prompts of one class at test time: every template, then the bare prompt."""
    out = [template_prompt(cls, t) for t in templates]
    out.append(cls.bare)
    return out


Encoded = TypeVar("Encoded")  # a numpy array or a torch tensor: anything with .shape and .reshape


def encode_per_class(prompts: Sequence[Sequence[str]], encode: Callable[[list[str]], Encoded]) -> Encoded:
    """Encode every prompt of every class in one flat call, given back per class.

    `prompts` holds C classes of P prompts each; `encode` maps the C*P prompts, class by class, to an
    array of shape (C*P, ...) (token ids, text features); the result is (C, P, ...). The one place
    that flattens a prompt ensemble and folds it back, for numpy and torch alike (it only calls
    .reshape), so the student, the label tables and training cannot disagree on the order.
    """
    sizes = {len(ps) for ps in prompts}
    if len(sizes) != 1:
        raise ConfigError(f"every class needs the same number of prompts, got sizes {sorted(sizes)}")
    out = encode([p for ps in prompts for p in ps])
    return out.reshape(len(prompts), sizes.pop(), *out.shape[1:])


def template_prompt(cls: ClassText, template: str) -> str:
    """`template` filled with the name, then the whole class text after a space (if described)."""
    filled = template.format(cls.name)
    return f"{filled} {cls.text}" if cls.description else filled


def repeated_name(names: Iterable[str]) -> tuple[int, int] | None:
    """(first, second) index of the first class name that repeats, case folded; None when all differ.

    The one rule for "the same class twice", used by every reader of class names and label tables.
    """
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        key = name.casefold()
        if key in seen:
            return seen[key], i
        seen[key] = i
    return None


def read_class_texts(path: str | Path) -> list[ClassText]:
    """Read classes from a names file (one a line) or a JSON {"0": "Name: description", ...}.

    JSON keys are class indices and must be exactly 0..C-1; names must be unique.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        texts = _texts_from_json(read_json(path, "class file"), path)
    else:
        texts = [line.strip() for line in read_text(path, "class file").splitlines() if line.strip()]
    if not texts:
        raise ConfigError(f"{path} holds no classes")
    classes = [ClassText.parse(t) for t in texts]
    if (dup := repeated_name(c.name for c in classes)) is not None:
        first, second = dup
        raise ConfigError(f"{path}: class {classes[second].name!r} appears twice (entries {first} and {second})")
    return classes


def _texts_from_json(data: object, path: Path) -> list[str]:
    if isinstance(data, list):
        return [str(x) for x in data]
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object of index -> class text")
    try:
        items = sorted((int(k), str(v)) for k, v in data.items())
    except ValueError as e:
        raise ConfigError(f"{path}: JSON keys must be class indices: {e}") from e
    indices = [i for i, _ in items]
    if indices != list(range(len(items))):
        raise ConfigError(f"{path}: class indices must be 0..{len(items) - 1} without gaps")
    return [v for _, v in items]
