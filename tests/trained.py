"""A tiny student that has really learned three of the bundled clips, for the tests whose verdict
needs a model that knows what it sees (the archive's search by meaning, issue 30's "done when").

It is trained with the real `froster-edge train` (configs/tiny_search.yaml, the recipe the docs'
worked example uses) on those very clips and exported with the real `froster-edge export`. Before anything uses it,
`check_learned` runs the bundle over each clip and requires the clip's action to win every
decision by a wide margin: if training did not learn, that is said at once, and no later assert
passes or fails by luck. Trained and searched on the same clips, it shows the plumbing end to end,
not generalisation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from froster_edge.prompts import read_class_texts
from froster_edge.train.config import load_recipe

from .helpers import CLIPS, ROOT, cli

SEARCH_RECIPE = ROOT / "configs" / "tiny_search.yaml"

# camera name -> (clip, its action); the action is also the class name the student learns
CAMERAS = {
    "gym": ("mmaction2_demo_arm_wrestling.mp4", "arm wrestling"),
    "yard": ("stgcn_clean_and_jerk.mp4", "clean and jerk"),
    "court": ("v_Basketball_g01_c02.mp4", "playing basketball"),
}
# the clip's action must beat the runner-up's probability by this much in every decision (seen: ~0.65)
MARGIN = 0.3


def train_bundle(root: Path) -> tuple[Path, dict[str, int]]:
    """Train (configs/tiny_search.yaml), export and check the tiny student under `root`;
    (bundle, decisions a plain run makes per camera)."""
    cfg = load_recipe(SEARCH_RECIPE)
    listing = [line.split() for line in Path(cfg.data.train_list).read_text().splitlines()]
    names = [c.name for c in read_class_texts(cfg.data.classes)]
    assert {clip: names[int(label)] for clip, label in listing} == dict(CAMERAS.values()), "the recipe's clips changed"
    r = cli("train", str(SEARCH_RECIPE), "--out", str(root / "run"), "--set", "train.progress=false")
    assert r.returncode == 0, r.stderr
    bundle = root / "bundle"
    r = cli("export", "--student", str(root / "run" / "student"), "--classes", cfg.data.classes, "-o", str(bundle),
            "--videos", str(CLIPS / CAMERAS["yard"][0]), "--max-parity-clips", "1", "--no-fp16")
    assert r.returncode == 0, r.stderr
    return bundle, check_learned(bundle)


def check_learned(bundle: Path) -> dict[str, int]:
    """Each clip's action wins every unsmoothed decision of a plain run over it by MARGIN; else fail
    here, saying what the model decided. Returns the number of decisions per camera."""
    counts = {}
    for camera, (clip, action) in CAMERAS.items():
        r = cli("run", "--bundle", str(bundle), "--source", str(CLIPS / clip), "--smoothing", "none", "--jsonl")
        assert r.returncode == 0, r.stderr
        decisions = [json.loads(line) for line in r.stdout.splitlines()]
        for d in decisions:
            (first, second) = d["top"][:2]
            if first["label"] != action or first["score"] - second["score"] < MARGIN:
                pytest.fail(f"the trained tiny bundle has not learned {clip} ({action!r}): at {d['media_time']} s it "
                            f"decided {[(t['label'], round(t['score'], 3)) for t in d['top']]}")
        assert decisions, clip
        counts[camera] = len(decisions)
    return counts
