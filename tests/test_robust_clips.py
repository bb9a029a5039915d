"""Attacks on the event clips folder (issue 31): the disk budget deletes only what froster-edge
wrote (a user's video, even one named like a clip, is never touched); a clip whose write failed
(OpenCV's writer does not raise) is neither renamed into place nor named by its event; hidden
temporaries a killed run left are removed at the next start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import cv2
import numpy as np
import yaml

from froster_edge.runtime.site.clips import RECORD_FILE, ClipOptions, EventClips
from froster_edge.runtime.site.events import ActionEvent
from froster_edge.runtime.sources import Frame

from .helpers import CLIPS, LiveRun, run_python

POOL = CLIPS / "mmaction2_test_cleaning_pool.mp4"
T0 = 1_800_000_000.0


def pool_frames(n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(POOL))
    frames = []
    while len(frames) < n and (got := cap.read())[0]:
        frames.append(cv2.cvtColor(got[1], cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


def record_events(clips: EventClips, starts: list[float], images: list[np.ndarray]) -> list[dict]:
    """30 fps frames on a known clock; one event of 1 s at each start; returns the "clip" records
    (clip, snapshot, error) the sink gave once its files were final."""
    k, records = 0, []

    def play(until: float) -> None:
        nonlocal k
        while k / 30 < until:
            clips.frame(0, Frame(k, k / 30, k / 30, 0.0, T0 + k / 30, images[k % len(images)]), None)
            k += 1

    for start in starts:
        play(start)
        clips.event(ActionEvent(f"pool-{start}", "pool", "diving", "start", T0 + start, start, None, None, 0.9, 0.9, T0 + start))
        play(start + 1.0)
        end = ActionEvent(f"pool-{start}", "pool", "diving", "end", T0 + start, start, T0 + start + 1, start + 1, 0.9, 0.9,
                          T0 + start)
        clips.event(end)
        play(start + 2.0)
        records += clips.follow_ups()
    clips.close()
    records += clips.follow_ups()
    assert [r.phase for r in records] == ["clip"] * len(starts)
    return [{"id": r.id, "clip": r.clip, "snapshot": r.snapshot, "error": r.error} for r in records]


def user_video(path, seconds: int = 2) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (320, 240))
    rng = np.random.default_rng(0)
    for _ in range(seconds * 10):
        writer.write(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))
    writer.release()


def test_the_budget_never_deletes_a_users_files_even_named_like_clips(tmp_path):
    user_video(tmp_path / "holiday.mp4")
    user_video(tmp_path / "20200101T000000.000-pool-diving.mp4")  # a name like ours, not in our record
    (tmp_path / "notes.jpg").write_bytes(b"\xff\xd8 not ours")
    mine = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sum(len(b) for b in mine.values()) > 0.2 * 2**20  # the user's files alone exceed the budget
    opts = ClipOptions(folder=tmp_path, pre_roll_s=0.5, post_roll_s=0.5, fps=10.0, width=160, budget_mb=0.2)
    clips = EventClips(opts, camera_of=lambda i: "pool", fps_of=lambda i: 30.0)
    record_events(clips, [2.05, 5.05, 8.05, 11.05, 14.05], pool_frames(60))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name in mine} == mine  # all there, unchanged
    ours = sorted(p.name for p in tmp_path.iterdir() if p.name not in mine and not p.name.startswith("."))
    assert clips.counters.clips == 5 and clips.counters.deleted >= 1
    assert sum((tmp_path / n).stat().st_size for n in ours) <= 0.2 * 2**20  # the budget counts our files only
    assert json.loads((tmp_path / RECORD_FILE).read_text())["files"] == ours
    # a second run over the same folder: trims its own older files by the record, still nothing of the user's
    clips = EventClips(ClipOptions(folder=tmp_path, budget_mb=0.05), camera_of=lambda i: "pool", fps_of=lambda i: 30.0)
    clips.close()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name in mine} == mine
    left = sorted(p.name for p in tmp_path.iterdir() if p.name not in mine and not p.name.startswith("."))
    assert left == ours[len(ours) - len(left):] and len(left) < len(ours)  # oldest of ours went first


def test_a_clip_that_could_not_be_written_whole_is_not_renamed_nor_named(tmp_path):
    """A real RLIMIT_FSIZE in a child process: the mp4 writer fails silently; the clip must not appear."""
    code = textwrap.dedent(f"""
        import json, resource, sys
        sys.path.insert(0, {str(CLIPS.parents[1])!r})
        from tests.test_robust_clips import pool_frames, record_events
        from froster_edge.runtime.site.clips import ClipOptions, EventClips
        import numpy as np
        rng = np.random.default_rng(1)
        noise = [rng.integers(0, 255, (240, 320, 3), dtype=np.uint8) for _ in range(8)]  # big frames
        clips = EventClips(ClipOptions(folder={str(tmp_path)!r}, pre_roll_s=0.5, post_roll_s=0.5, width=320),
                           camera_of=lambda i: "pool", fps_of=lambda i: 30.0)
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        named = record_events(clips, [2.05], noise)
        print(json.dumps({{"named": named, "clips": clips.counters.clips, "errors": clips.counters.errors}}))
    """)
    out = json.loads(run_python(code).stdout.strip().splitlines()[-1])
    assert out["clips"] == 0 and out["errors"] >= 1
    assert not list(tmp_path.glob("*.mp4")) and not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    # its "clip" record names no file and says why
    (record,) = out["named"]
    assert record["clip"] is None and record["snapshot"] is None and "could not be written whole" in record["error"]


def test_hidden_temporaries_of_a_killed_run_are_removed_at_the_next_start(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(gone.stdout)  # a process that has ended
    left = tmp_path / f".20200101T000000.000-pool-diving.mp4.tmp-{pid}-abc.mp4"
    left.write_bytes(b"\0" * 1000)
    live_tmp = tmp_path / f".x.mp4.tmp-{os.getpid()}-abc.mp4"  # a live writer's: kept
    live_tmp.write_bytes(b"\0")
    users = tmp_path / ".my.tmp"
    users.write_bytes(b"mine")
    EventClips(ClipOptions(folder=tmp_path), camera_of=lambda i: "pool", fps_of=lambda i: 30.0).close()
    assert not left.exists() and live_tmp.exists() and users.read_bytes() == b"mine"


def test_a_run_with_clips_in_a_users_video_folder_deletes_nothing_of_theirs(tiny_bundle, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    user_video(videos / "holiday.mp4", seconds=4)
    before = (videos / "holiday.mp4").read_bytes()
    doc = {"bundle": str(tiny_bundle), "defaults": {"sample_fps": 8, "hop": 1},
           "cameras": [{"name": "pool", "source": str(POOL), "realtime": True, "loop": True}],
           "events": {"enter": 0.0, "exit": 0.0, "enter_decisions": 2, "labels": ["yoga"]},
           "clips": {"folder": str(videos), "budget_mb": 0.01, "pre_roll_s": 0.5, "post_roll_s": 0.1, "width": 160}}
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(doc))
    live = LiveRun("--config", str(tmp_path / "site.yaml"))
    try:
        for _ in range(4):
            live.decision(60)
        time.sleep(0.5)
        assert live.stop(timeout=60) == 0, live.stderr
    finally:
        live.kill()
    assert (videos / "holiday.mp4").read_bytes() == before
