"""Attacks on `froster-edge run` with signals (issue 31): bursts of SIGHUP and SIGTERM back to back
never deadlock the run (it still stops with its stats); SIGHUP without a site file (an ssh session
that dropped) is a no-op said once, never a kill; SIGHUP after the events file was rotated away
makes the run write to a new file at the path; a reload that removes a camera removes it from the
web API."""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.error
import urllib.request

import pytest
import yaml

from .helpers import CLIPS, LiveRun, free_port

CLIP = CLIPS / "stgcn_clean_and_jerk.mp4"


def burst(pid: int, sig: int, n: int) -> None:
    for _ in range(n):
        os.kill(pid, sig)


def site_file(tmp_path, bundle, events) -> str:
    doc = {"bundle": str(bundle), "defaults": {"sample_fps": 8, "hop": 1},
           "cameras": [{"name": "yard", "source": str(CLIP), "realtime": True, "loop": True}],
           # enter 0: both classes are "on" from the second decision; they end when the run stops
           "events": {"file": str(events), "enter": 0.0, "exit": 0.0, "enter_decisions": 2, "labels": ["yoga", "fencing"]}}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_bursts_of_sighup_and_sigterm_never_deadlock_the_run(tiny_bundle, tmp_path):
    stats_json = tmp_path / "stats.json"
    live = LiveRun("--config", site_file(tmp_path, tiny_bundle, tmp_path / "events.jsonl"),
                   "--stats-json", str(stats_json))
    try:
        live.decision(60)
        for _ in range(3):  # reload requests by the hundred while decisions go on
            burst(live.proc.pid, signal.SIGHUP, 200)
            live.decision(60)
        burst(live.proc.pid, signal.SIGTERM, 300)
        assert live.stop(signal.SIGTERM, timeout=60) == 0, live.stderr
    finally:
        live.kill()
    err = "\n".join(live.stderr)
    assert "Traceback" not in err and "froster-edge: stopped" in err
    assert sum("SIGTERM: stopping" in line for line in live.stderr) == 1
    stats = json.loads(stats_json.read_text())
    assert stats["interrupted"] and stats["signals"] >= 1 and stats["decisions"] >= 4
    assert any("reload:" in line for line in live.stderr)  # the bursts were reloads, coalesced


def test_sighup_without_a_site_file_is_ignored_and_said_once(tiny_bundle, tmp_path):
    record, stats_json = tmp_path / "out.mp4", tmp_path / "stats.json"
    live = LiveRun("--bundle", str(tiny_bundle), "--source", str(CLIP), "--realtime", "--loop", "--sample-fps", "8",
                   "--hop", "1", "--record", str(record), "--stats-json", str(stats_json))
    try:
        live.decision(60)
        burst(live.proc.pid, signal.SIGHUP, 5)
        live.wait_stderr("SIGHUP: nothing to reload")
        burst(live.proc.pid, signal.SIGHUP, 5)
        before = len(live.seen)
        for _ in range(3):  # still deciding after both bursts
            live.decision(60)
        assert len(live.seen) == before + 3 and live.proc.poll() is None
        assert live.stop(signal.SIGTERM, timeout=60) == 0, live.stderr
    finally:
        live.kill()
    assert sum("SIGHUP" in line for line in live.stderr) == 1, live.stderr
    assert json.loads(stats_json.read_text())["decisions"] >= 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "stats.json"]  # no .partial.mp4 left


def test_sighup_reopens_a_rotated_events_file(tiny_bundle, tmp_path):
    events, rotated = tmp_path / "events.jsonl", tmp_path / "events.jsonl.1"
    live = LiveRun("--config", site_file(tmp_path, tiny_bundle, events))
    try:
        deadline = time.monotonic() + 60
        while not (events.exists() and events.read_text().count("\n") >= 2):  # both classes started
            live.decision(60)
            assert time.monotonic() < deadline, live.stderr
        events.rename(rotated)  # what logrotate does, then it sends SIGHUP
        live.proc.send_signal(signal.SIGHUP)
        live.wait_stderr("reload:")
        assert live.stop(signal.SIGTERM, timeout=60) == 0, live.stderr
    finally:
        live.kill()
    old = [json.loads(line) for line in rotated.read_text().splitlines()]
    new = [json.loads(line) for line in events.read_text().splitlines()]
    assert {e["phase"] for e in old} == {"start"} and len(old) == 2
    assert {e["phase"] for e in new} == {"end"} and {e["id"] for e in new} == {e["id"] for e in old}


def test_a_reload_that_removes_a_camera_removes_it_from_the_web_api(tiny_bundle, tmp_path):
    port = free_port()
    doc = {"bundle": str(tiny_bundle), "defaults": {"sample_fps": 8, "hop": 1},
           "cameras": [{"name": name, "source": str(CLIP), "realtime": True, "loop": True} for name in ("yard", "door")],
           "http": {"host": "127.0.0.1", "port": port}}
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(doc))
    live = LiveRun("--config", str(site))

    def streams() -> list[str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/streams", timeout=10) as r:
            return [s["camera"] for s in json.loads(r.read())["streams"]]

    try:
        while {d["camera"] for d in live.seen} != {"yard", "door"}:
            live.decision(60)
        assert streams() == ["yard", "door"]
        doc["cameras"] = doc["cameras"][:1]
        site.write_text(yaml.safe_dump(doc))
        live.proc.send_signal(signal.SIGHUP)
        live.wait_stderr("reload:")
        assert streams() == ["yard"]
        with pytest.raises(urllib.error.HTTPError) as gone:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/streams/1.jpg", timeout=10)
        assert gone.value.code == 404
        assert live.stop(signal.SIGTERM, timeout=60) == 0, live.stderr
    finally:
        live.kill()


def test_reload_churn_does_not_grow_the_metrics(tiny_bundle, tmp_path):
    """A camera added and another removed by a SIGHUP reload, many times over: the exposition keeps
    the series of the cameras the site has now, not of every camera it ever had."""
    port = free_port()
    site = tmp_path / "site.yaml"

    def write(k: int) -> None:
        cams = [{"name": name, "source": str(CLIP), "realtime": True, "loop": True} for name in ("yard", f"cam{k}")]
        site.write_text(yaml.safe_dump({"bundle": str(tiny_bundle), "defaults": {"sample_fps": 8, "hop": 1},
                                        "cameras": cams, "metrics": {"listen": f"127.0.0.1:{port}"}}))

    def series() -> list[str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            return [line for line in r.read().decode().splitlines() if line.strip() and not line.startswith("#")]

    write(0)
    live = LiveRun("--config", str(site))
    try:
        while {d["camera"] for d in live.seen} != {"yard", "cam0"}:
            live.decision(60)
        first = series()
        for k in range(1, 7):
            write(k)
            live.proc.send_signal(signal.SIGHUP)
            end = time.monotonic() + 60
            while sum("reload:" in line for line in live.stderr) < k:
                assert time.monotonic() < end, live.stderr
                time.sleep(0.05)
            while not any(d["camera"] == f"cam{k}" for d in live.seen[-50:]):
                live.decision(60)
        now = series()
        assert live.stop(signal.SIGTERM, timeout=60) == 0, live.stderr
    finally:
        live.kill()
    cameras = {re.search(r'camera="([^"]*)"', line).group(1) for line in now if 'camera="' in line}
    assert cameras == {"yard", "cam6"}, cameras
    assert len(now) <= len(first) + 8, (len(first), len(now))  # the same cameras' series (a few more stage series)
