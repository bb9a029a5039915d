"""K-shot lists (B2N's 16 shots per base class) drawn from a full list with a seed."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from froster_edge.errors import ConfigError
from froster_edge.train.fewshot import few_shot, short_classes, write_list


@dataclass(frozen=True)
class Item:  # the shape of froster_edge.data.VideoItem
    path: Path
    label: int


def full_list(per_class: dict[int, int]) -> list[Item]:
    items = [Item(Path(f"videos/c{label}/v{i}.mp4"), label) for label, n in per_class.items() for i in range(n)]
    return items[::-1]  # not grouped in label order, as real lists need not be


def test_shots_per_class_subset_and_seeded():
    items = full_list({0: 40, 1: 25, 2: 16, 3: 5})
    picked = few_shot(items, 16, seed=1)
    assert Counter(i.label for i in picked) == {0: 16, 1: 16, 2: 16, 3: 5}  # a short class keeps all it has
    assert len(set(picked)) == len(picked) and set(picked) <= set(items)
    assert [i.label for i in picked] == sorted(i.label for i in picked)
    assert few_shot(items, 16, seed=1) == picked  # the seed decides
    other = few_shot(items, 16, seed=2)
    assert {i for i in other if i.label == 0} != {i for i in picked if i.label == 0}
    assert {i for i in other if i.label == 2} == {i for i in picked if i.label == 2}  # exactly 16: all of them
    assert short_classes(items, 16) == {3: 5}


def test_a_class_pick_depends_only_on_its_own_videos():
    """Adding another class to the list does not change what an existing class gets."""
    a = few_shot(full_list({0: 30, 1: 30}), 4, seed=3)
    b = few_shot(full_list({0: 30, 1: 30, 7: 9}), 4, seed=3)
    assert [i for i in a if i.label == 0] == [i for i in b if i.label == 0]


def test_bad_shots():
    with pytest.raises(ConfigError, match="shots must be >= 1"):
        few_shot(full_list({0: 3}), 0, seed=1)


def test_write_list_relative_to_root(tmp_path):
    root = tmp_path / "data"
    items = [Item(root / "a" / "x.mp4", 3), Item(root / "y.avi", 0)]
    write_list(items, tmp_path / "fs.txt", root=root)
    assert (tmp_path / "fs.txt").read_text() == "a/x.mp4 3\ny.avi 0\n"
    with pytest.raises(ConfigError, match="whitespace"):
        write_list([Item(root / "a b.mp4", 0)], tmp_path / "bad.txt", root=root)


def test_fewshot_module_command(tmp_path, capsys):
    from froster_edge.train.fewshot import main

    from .helpers import CLIPS, ROOT

    full = tmp_path / "full.txt"  # the five clips twice over: two videos per class
    full.write_text((ROOT / "configs/train/tiny_train.txt").read_text() * 2)
    main([str(full), "--root", str(CLIPS), "--shots", "1", "--seed", "1", "-o", str(tmp_path / "fs.txt")])
    lines = (tmp_path / "fs.txt").read_text().splitlines()
    assert sorted(int(line.split()[1]) for line in lines) == [0, 1, 2, 3, 4]
    assert all((CLIPS / line.split()[0]).is_file() for line in lines)
    assert "5 videos, 5 classes" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="video list not found"):
        main([str(tmp_path / "none.txt"), "--root", str(CLIPS), "-o", str(tmp_path / "x.txt")])
