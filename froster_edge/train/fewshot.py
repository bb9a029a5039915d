"""K-shot training lists (B2N trains on 16 videos per base class) drawn from a full list with a seed.

Within each class the videos are shuffled by a generator seeded with (seed, class) and the first
`shots` kept, so a class's pick depends only on the seed and its own videos; class order is kept.
A class with fewer videos keeps all of them (`short_classes`).

    python -m froster_edge.train.fewshot FULL_LIST --root VIDEOS --shots 16 --seed 1 -o fs_s1.txt

See docs/training.md.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Protocol, Sequence, TypeVar

import numpy as np

from ..errors import ConfigError, FrosterError
from ..io import atomic_write_text


class _Labelled(Protocol):
    path: Path
    label: int


Item = TypeVar("Item", bound=_Labelled)


def few_shot(items: Sequence[Item], shots: int, seed: int) -> list[Item]:
    """`shots` items per label (all of a label's items when it has fewer), chosen with `seed`."""
    if shots < 1:
        raise ConfigError(f"shots must be >= 1, got {shots}")
    by_label: dict[int, list[Item]] = defaultdict(list)
    for item in items:
        by_label[item.label].append(item)
    out: list[Item] = []
    for label in sorted(by_label):
        group = by_label[label]
        order = np.random.default_rng([seed, label]).permutation(len(group))
        out.extend(group[i] for i in order[:shots])
    return out


def short_classes(items: Sequence[_Labelled], shots: int) -> dict[int, int]:
    """Labels with fewer than `shots` items, and how many they have."""
    counts: dict[int, int] = defaultdict(int)
    for item in items:
        counts[item.label] += 1
    return {label: n for label, n in sorted(counts.items()) if n < shots}


def write_list(items: Sequence[_Labelled], path: str | Path, root: str | Path | None = None) -> None:
    """Write `relative/path label` lines (paths relative to `root` when they are under it)."""
    lines = []
    for item in items:
        p = Path(item.path)
        if root is not None:
            try:
                p = p.relative_to(root)
            except ValueError:
                pass
        if any(c.isspace() for c in str(p)):
            raise ConfigError(f"cannot write {p} to a space-separated list: the path contains whitespace")
        lines.append(f"{p.as_posix()} {item.label}\n")
    atomic_write_text(path, "".join(lines))


def main(argv: list[str] | None = None) -> None:
    from ..data import read_video_list

    ap = argparse.ArgumentParser(description="Write a K-shot-per-class list drawn from a full video list.")
    ap.add_argument("list", type=Path, help="the full list: `relative/path label` lines")
    ap.add_argument("--root", type=Path, required=True, help="the folder the list's paths are relative to")
    ap.add_argument("--shots", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args(argv)
    try:
        items = read_video_list(args.list, root=args.root)
        picked = few_shot(items, args.shots, args.seed)
        write_list(picked, args.out, root=args.root)
    except FrosterError as e:
        sys.exit(f"fewshot: error: {e}")
    short = short_classes(items, args.shots)
    note = f"; {len(short)} classes have fewer than {args.shots} videos and keep all" if short else ""
    print(f"wrote {args.out}: {len(picked)} videos, {len({i.label for i in picked})} classes{note}")


if __name__ == "__main__":
    main()
