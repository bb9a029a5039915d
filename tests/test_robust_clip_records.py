"""The attack on event records (issue 31): a real run whose clips hit a file-size limit
(RLIMIT_FSIZE, what a full disk does to a growing file) during the post-roll. No record in the
events file or the archive may name a clip or snapshot that is not on disk, and each ended
event's "clip" record says which files were written and why one was not."""

from __future__ import annotations

import json
import resource
import sqlite3
import time
from pathlib import Path

import cv2
import yaml

from froster_edge.runtime.options import CameraOptions, ClassifierOptions, RunOptions, SamplingOptions
from froster_edge.runtime.pipeline import Pipeline

from .helpers import CLIPS, Collect, LiveRun
from .test_events import crossing_class, thresholds

POOL = CLIPS / "mmaction2_test_cleaning_pool.mp4"
LIMIT = 300_000  # bytes a file of the run may grow to: an event line, a snapshot, a short clip fit; a long clip does not


def test_clips_that_hit_a_size_limit_after_their_event_ended_are_never_named(tiny_bundle, tmp_path):
    sink = Collect()
    Pipeline(tiny_bundle, RunOptions(cameras=[CameraOptions("pool", str(POOL))], sampling=SamplingOptions(fps=8, hop=1),
                                     classifier=ClassifierOptions(smoothing="none")), [sink]).run()
    enter, exit = thresholds(sink.decisions)  # a class that goes on and off over this clip
    label = crossing_class(sink.decisions)[1]
    clips, events, archive = tmp_path / "clips", tmp_path / "events.jsonl", tmp_path / "archive.db"
    clips.mkdir()
    doc = {"bundle": str(tiny_bundle), "defaults": {"sample_fps": 8, "hop": 1, "smoothing": "none"},
           "cameras": [{"name": "pool", "source": str(POOL), "realtime": True, "loop": True}],
           "events": {"file": str(events), "enter": enter, "exit": exit, "enter_decisions": 1, "exit_decisions": 1,
                      "labels": [label]},
           "clips": {"folder": str(clips), "pre_roll_s": 1, "post_roll_s": 1, "width": 640, "fps": 10},
           "archive": {"file": str(archive), "thumb_every_s": 0, "commit_s": 0.2}}
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(doc))

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    live = LiveRun("--config", str(site), preexec_fn=limit)
    try:
        end = time.monotonic() + 15  # several events, each ending a few seconds after it started
        while time.monotonic() < end:
            live.decision(60)
        assert live.stop(timeout=90) == 0, live.stderr
    finally:
        live.kill()
    records = [json.loads(line) for line in events.read_text().splitlines()]  # every line whole
    named = [(r["phase"], r[key]) for r in records for key in ("clip", "snapshot") if r[key] is not None]
    assert all((clips / name).is_file() for _, name in named), named  # the attack: nothing named is missing
    assert {phase for phase, _ in named} <= {"clip"}  # a start or end names no file: none is final then
    conn = sqlite3.connect(archive)
    archived = conn.execute("SELECT DISTINCT clip, snapshot FROM decisions WHERE clip IS NOT NULL OR snapshot IS NOT NULL")
    archived = [p for row in archived.fetchall() for p in row if p is not None]
    assert conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] > 0
    conn.close()
    assert all(Path(p).is_file() and Path(p).parent == clips for p in archived), archived
    # each ended event has one "clip" record, after its end, saying what was written and what not
    order = {(r["phase"], r["id"]): i for i, r in enumerate(records)}
    ends = {r["id"]: r for r in records if r["phase"] == "end"}
    follow = {r["id"]: r for r in records if r["phase"] == "clip"}
    assert ends and set(follow) == set(ends) and all(order["clip", i] > order["end", i] for i in ends)
    for i, r in follow.items():
        assert r == {**ends[i], "phase": "clip", "clip": r["clip"], "snapshot": r["snapshot"], "error": r["error"]}
        assert (r["clip"] is None) == (r["error"] is not None)
    failed = [r for r in follow.values() if r["clip"] is None]
    assert any(not r["interrupted"] for r in failed), records  # failed after the end line was written
    assert all("could not be written whole" in r["error"] for r in failed)
    written = {r["clip"] for r in follow.values() if r["clip"]}
    assert {p.name for p in clips.glob("*.mp4")} == written  # every clip on disk is named, no other
    for name in written:  # and opens: its first frame decodes
        cap = cv2.VideoCapture(str(clips / name))
        assert cap.read()[0], name
        cap.release()
    # the archive (which the limit stops too, after its first rows) names only files a "clip" record named
    assert set(archived) <= {str(clips / n) for r in follow.values() for n in (r["clip"], r["snapshot"]) if n}
