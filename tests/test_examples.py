"""The Python-API examples in examples/*.py run as written, on the tiny model the tests build.

Each example is loaded as a module and its `main` called with arguments, as `python
examples/NAME.py ARGS` would. Their results are checked against the test's own arithmetic (the
reference sampling rule's decision count), the torch student that made the bundle, or the
`froster-edge labels` command.
"""

from __future__ import annotations

import csv
import json
import math
import runpy

import numpy as np
import pytest

from froster_edge.errors import ConfigError

from .helpers import CLASSES, CLIPS, ROOT, TINY_MODEL, cli, make_student

EXAMPLES = ROOT / "examples"


def example(name: str) -> dict:
    """The example's module namespace (its `if __name__ == "__main__"` block not run)."""
    return runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name=f"example_{name}")


def clip_row(file: str) -> dict:
    with open(CLIPS / "labels.csv", newline="") as f:
        return next(r for r in csv.DictReader(f) if r["file"] == file)


def reference_decisions(file: str, frames_per_clip: int = 4, stride: int = 16, hop: int = 2) -> int:
    """Decisions of a whole file by the reference rule, written out here: frame floor(k P) is
    sampled, P = (T stride fps/30 - 1) / (T - 1); n sampled frames give (n - T) // hop + 1."""
    row = clip_row(file)
    frames, fps = int(row["decoded_frames"]), float(row["fps"])
    spacing = (frames_per_clip * stride * fps / 30 - 1) / (frames_per_clip - 1)
    sampled = sum(1 for k in range(frames) if math.floor(k * spacing) < frames)
    return max(0, (sampled - frames_per_clip) // hop + 1)


def test_every_example_is_tested_here():
    names = sorted(p.stem for p in EXAMPLES.glob("*.py"))
    text = open(__file__).read()
    assert names and all(f'example("{n}")' in text for n in names), names


def test_student_example(tmp_path, capsys):
    logits = example("student")["main"](["--model", str(TINY_MODEL), "--pretrained", "none", "--image-size", "64",
                                          "--frames", "4", "--classes", str(CLIPS / "classes.txt"),
                                          "-o", str(tmp_path / "mine")])
    assert tuple(logits.shape) == (2, len(CLASSES)) and bool(logits.isfinite().all())
    assert (tmp_path / "mine" / "model.safetensors").is_file() and (tmp_path / "mine" / "config.json").is_file()
    assert "saved to" in capsys.readouterr().out


def test_export_example(tmp_path):
    from froster_edge.model.checkpoint import save_student

    save_student(make_student(), tmp_path / "student")
    manifest = example("export_bundle")["main"](["--student", str(tmp_path / "student"),
                                                 "--classes", str(CLIPS / "classes.txt"),
                                                 "--videos", str(CLIPS / "stgcn_clean_and_jerk.mp4"),
                                                 "-o", str(tmp_path / "bundle")])
    assert manifest["parity"]["gates"] and all(g["passed"] for g in manifest["parity"]["gates"])
    assert json.loads((tmp_path / "bundle" / "manifest.json").read_text())["model"]["fingerprint"] == manifest["model"]["fingerprint"]


def test_classify_clip_example(tiny_bundle, capsys):
    clip = "stgcn_clean_and_jerk.mp4"
    decisions = example("classify_clip")["main"]([str(tiny_bundle), str(CLIPS / clip), "--top-k", "3"])
    assert len(decisions) == reference_decisions(clip)
    names = {c.name for c in CLASSES}
    for d in decisions:
        scores = [s for _, s in d.top]
        assert len(d.top) == 3 and {label for label, _ in d.top} <= names
        assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6
    assert [d.media_time for d in decisions] == sorted(d.media_time for d in decisions)
    out = capsys.readouterr().out
    assert sum(" s  " in line for line in out.splitlines()) == len(decisions)


def test_label_table_example(tiny_bundle, tmp_path):
    """The table through the bundle's ONNX text encoder matches the torch student that made the
    bundle (make_student(), seed 0) encoding the same class texts."""
    import torch

    from froster_edge.prompts import ClassText

    actions = ["climbing a fence", "Waving: raising a hand and moving it from side to side"]
    table = example("label_table")["main"]([str(tiny_bundle), *actions, "-o", str(tmp_path / "mine.npz")])
    assert table.names == ["climbing a fence", "Waving"] and (tmp_path / "mine.npz").is_file()
    with torch.no_grad():
        reference = make_student().class_embeddings([ClassText.parse(a) for a in actions]).numpy()
    cosines = np.sum(table.embeddings * reference, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosines.min() > 0.999, cosines
    # and the same file as the command writes
    (tmp_path / "actions.txt").write_text("\n".join(actions) + "\n")
    r = cli("labels", "--bundle", str(tiny_bundle), "--classes", str(tmp_path / "actions.txt"), "-o", str(tmp_path / "cli.npz"))
    assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "cli.npz") as z:
        assert np.abs(z["embeddings"] - table.embeddings).max() < 1e-6


SITE = """\
bundle: {bundle}
defaults:
  hop: 2
cameras:
  - name: yard
    source: {clips}/stgcn_clean_and_jerk.mp4
  - name: gym
    source: {clips}/mmaction2_demo_arm_wrestling.mp4
    labels: [arm wrestling, yoga]
events:
  file: events.jsonl
  enter: 0.5
  exit: 0.35
  enter_decisions: 1
  exit_decisions: 2
"""


def test_site_run_example(tiny_bundle, tmp_path, capsys):
    site = tmp_path / "site.yaml"
    site.write_text(SITE.format(bundle=tiny_bundle, clips=CLIPS))
    module = example("site_run")
    stats = module["main"]([str(site), "--decisions", "1000"])
    per_camera = {s["camera"]: s["decisions"] for s in stats["streams"]}
    assert per_camera == {"yard": reference_decisions("stgcn_clean_and_jerk.mp4"),
                          "gym": reference_decisions("mmaction2_demo_arm_wrestling.mp4")}
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    gym = [d for d in lines if d["camera"] == "gym"]
    assert gym and all(d["label"] in ("arm wrestling", "yoga") for d in gym)
    # two classes: the first decision's top class has p >= 0.5 = enter, so an event starts at once
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    first = next(e for e in events if e["camera"] == "gym" and e["phase"] == "start")
    assert first["label"] == gym[0]["label"]


def test_site_run_example_checks_the_file_first(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text(SITE.format(bundle=tmp_path / "no-bundle", clips=CLIPS).replace("hop: 2", "hop: two"))
    with pytest.raises(ConfigError, match=r"site\.yaml.*hop"):
        example("site_run")["check"](str(site))


def test_the_example_site_file_passes_the_check():
    """examples/site.yaml, the file docs/site.md and the README point a newcomer at, reads and checks."""
    site = example("site_run")["check"](str(EXAMPLES / "site.yaml"))
    assert [c.name for c in site.run.cameras] == ["yard", "gym"] and site.bundle.name == "demo-bundle"
    assert site.events is not None and site.clips is not None and site.metrics is not None
