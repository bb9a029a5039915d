"""A tiny student that has really learned three of the bundled clips, for the tests whose verdict
needs a model that knows what it sees (the archive's search by meaning, issue 30's "done when").

It is trained with the real `froster-edge train` (the tiny recipe, its settings changed with --set)
on those very clips and exported with the real `froster-edge export`. Before anything uses it,
`check_learned` runs the bundle over each clip and requires the clip's action to win every
decision by a wide margin: if training did not learn, that is said at once, and no later assert
passes or fails by luck. Trained and searched on the same clips, it shows the plumbing end to end,
not generalisation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import CLIPS, TINY_RECIPE, cli

# camera name -> (clip, its action); the action is also the class name the student learns
CAMERAS = {
    "gym": ("mmaction2_demo_arm_wrestling.mp4", "arm wrestling"),
    "yard": ("stgcn_clean_and_jerk.mp4", "clean and jerk"),
    "court": ("v_Basketball_g01_c02.mp4", "playing basketball"),
}
# the tiny recipe over the three clips: one step of all three per epoch, a high learning rate for a
# random model, the last epoch kept (averaging in the early epochs would blur what was learned)
TRAIN_SETTINGS = ("data.num_workers=0", "data.val_list=null", "data.num_classes=3", "train.batch_size=3",
                  "train.epochs=30", "train.average_from=null", "train.eval_every=0", "train.progress=false",
                  "optim.lr=1e-3", "optim.warmup_epochs=2", "optim.end_lr=1e-4")
# the clip's action must beat the runner-up's probability by this much in every decision (seen: ~0.65)
MARGIN = 0.3


def train_bundle(root: Path) -> tuple[Path, dict[str, int]]:
    """Train, export and check the tiny student under `root`; (bundle, decisions a plain run makes per camera)."""
    classes, listing = root / "classes.txt", root / "train.txt"
    actions = [action for _, action in CAMERAS.values()]
    classes.write_text("\n".join(actions) + "\n")
    listing.write_text("".join(f"{clip} {actions.index(action)}\n" for clip, action in CAMERAS.values()))
    sets = [f"data.root={CLIPS}", f"data.train_list={listing}", f"data.classes={classes}", *TRAIN_SETTINGS]
    r = cli("train", str(TINY_RECIPE), "--out", str(root / "run"), *(a for s in sets for a in ("--set", s)))
    assert r.returncode == 0, r.stderr
    bundle = root / "bundle"
    r = cli("export", "--student", str(root / "run" / "student"), "--classes", str(classes), "-o", str(bundle),
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
