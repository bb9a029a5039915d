"""Issue 30's "done when", from the CLI: a site run with an archive over the bundled clips, then
`froster-edge search` for one clip's action returns that clip's camera and time range first.

The bundle is the tiny student trained on these very clips (tests/trained.py; the fixture checks
that it learned them before any test here runs): what this shows is the plumbing end to end, a
typed action finding its camera through the archive, not a model that generalises. The references
read the archive's decision rows straight from the SQLite file.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from .helpers import CLIPS, cli
from .trained import CAMERAS

# float16-stored similarities are ~1e-3 apart at worst; the winning camera must lead by far more (seen: 0.1 to 0.16)
LEAD = 0.05


@pytest.fixture(scope="module")
def site_run(trained_bundle, tmp_path_factory) -> tuple[Path, Path, dict[str, list[float]]]:
    """`run --config site.yaml`: one camera per clip, files read at full speed, the archive on.
    (bundle, archive, each camera's decision times as stored)."""
    bundle, counts = trained_bundle
    root = tmp_path_factory.mktemp("site")
    site = {"bundle": str(bundle),
            "cameras": [{"name": name, "source": str(CLIPS / clip)} for name, (clip, _) in CAMERAS.items()],
            "archive": {"file": "site.db", "commit_s": 0.2}}
    (root / "site.yaml").write_text(json.dumps(site, indent=1))
    r = cli("run", "--config", str(root / "site.yaml"))
    assert r.returncode == 0, r.stderr
    conn = sqlite3.connect(root / "site.db")
    times: dict[str, list[float]] = {}
    for camera, t in conn.execute("SELECT camera, time FROM decisions ORDER BY id"):
        times.setdefault(camera, []).append(t)
    conn.close()
    assert {c: len(ts) for c, ts in times.items()} == counts  # every decision of every camera archived
    return bundle, root / "site.db", times


def search(site_run, *args: str) -> list[dict]:
    bundle, db, _ = site_run
    r = cli("search", *args, "--archive", str(db), "--bundle", str(bundle), "--json", "-")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["queries"]


def within(r: dict, times: list[float]) -> int:
    """The range lies within its camera's decisions; how many of them it spans."""
    assert times[0] <= r["start"] <= r["end"] <= times[-1], (r, times[0], times[-1])
    return sum(r["start"] <= t <= r["end"] for t in times)


@pytest.mark.parametrize("camera", list(CAMERAS))
def test_a_clip_s_action_finds_its_camera_first(site_run, camera):
    _, _, times = site_run
    action = CAMERAS[camera][1]
    (answer,) = search(site_run, action)
    ranges = answer["ranges"]
    best = ranges[0]
    assert best["camera"] == camera, [(r["camera"], r["score"]) for r in ranges]
    assert within(best, times[camera]) == best["decisions"] >= 1
    others = [r["score"] for r in ranges if r["camera"] != camera]
    assert not others or best["score"] - max(others) > LEAD, [(r["camera"], r["score"]) for r in ranges]


def test_several_queries_each_find_only_their_own_camera(site_run):
    _, _, times = site_run
    actions = [action for _, action in CAMERAS.values()]
    args = [actions[0], *(a for action in actions[1:] for a in ("--query", action))]
    answers = search(site_run, *args, "--hits", "1", "--top", "1000")
    assert [a["query"] for a in answers] == actions
    for camera, (_, action) in CAMERAS.items():
        (answer,) = [a for a in answers if a["query"] == action]
        assert answer["ranges"] and {r["camera"] for r in answer["ranges"]} == {camera}, answer
        # every decision of the camera is won by its own action, and only those
        assert sum(within(r, times[camera]) for r in answer["ranges"]) == len(times[camera])
