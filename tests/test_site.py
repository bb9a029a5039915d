"""A real site: a site file with two cameras (a file looped in real time and an HTTP stream served
by ffmpeg on 127.0.0.1), events, event clips within a disk budget, Prometheus metrics scraped over
HTTP, events over MQTT to a real mosquitto (with Home Assistant discovery), SIGHUP reloads (a camera
added and one removed, in MQTT too; a bad file refused), flat memory."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from froster_edge.errors import ConfigError
from froster_edge.runtime.site.clips import RECORD_FILE, ClipOptions, EventClips
from froster_edge.runtime.site.config import MetricsOptions
from froster_edge.runtime.site.events import ActionEvent
from froster_edge.runtime.sources import Frame

from .helpers import CLASSES, CLIPS, LiveRun, assert_one_line_error, cli, free_port, serve, wait_listening
from .mosquitto import Broker, Subscriber, retained

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (apt-get install ffmpeg)")
needs_linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for the server and RSS")
POOL = CLIPS / "mmaction2_test_cleaning_pool.mp4"
GYM = CLIPS / "stgcn_clean_and_jerk.mp4"
ARM = CLIPS / "mmaction2_demo_arm_wrestling.mp4"


# --- the site file (every bad value: tests/test_site_config.py) ---

def test_the_cli_refuses_a_bad_site_before_opening_a_camera(tiny_bundle, tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text(f"bundle: {tiny_bundle}\ncameras: [{{name: a, source: '7', hop: 0}}]\n")  # camera 7: no such device
    assert_one_line_error(cli("run", "--config", str(path)), 1, f"{path}: cameras[0].hop: must be greater than or equal to 1, not 0")
    path.write_text(f"bundle: {tiny_bundle}\ncameras: [{{name: a, source: {GYM}, labels: [no such class]}}]\n")
    assert_one_line_error(cli("run", "--config", str(path)), 1, "camera a: labels: 'no such class' not in the label table")
    assert_one_line_error(cli("run", "--config", str(path), "--source", str(GYM)), 1, "--source and --config")
    assert_one_line_error(cli("run", "--source", str(GYM)), 1, "give --bundle")
    plain = ("run", "--bundle", str(tiny_bundle), "--source", "7")  # the outputs are refused before camera 7 is tried
    assert_one_line_error(cli(*plain, "--clips", str(tmp_path / "none")), 1, "clips folder")
    assert_one_line_error(cli(*plain, "--events", str(tmp_path / "none" / "ev.jsonl")), 1, "does not exist")
    assert_one_line_error(cli(*plain, "--metrics", f"0.0.0.0:{free_port()}"), 1, "needs a token")
    path.write_text(f"bundle: {tiny_bundle}\nmqtt: {{host: 127.0.0.1, port: x}}\ncameras: [{{name: a, source: '7'}}]\n")
    assert_one_line_error(cli("run", "--config", str(path)), 1, f"{path}: mqtt.port: must be an integer, not 'x'")


# --- event clips: pre-roll, peak snapshot, disk budget, atomic names ---

def real_frames(path: Path, n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < n:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


def frame_count(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n


def test_event_clips_keep_the_disk_budget_oldest_first(tmp_path):
    images = real_frames(POOL, 90)
    budget_mb = 0.3
    opts = ClipOptions(folder=tmp_path, pre_roll_s=2.0, post_roll_s=1.0, fps=10.0, width=160, budget_mb=budget_mb)
    clips = EventClips(opts, camera_of=lambda i: "pool", fps_of=lambda i: 30.0)
    t0 = 1_800_000_000.0
    clock = {"k": 0}

    def play(until: float) -> None:
        """30 fps frames on a known clock up to `until` seconds (the buffer keeps 10 a second)."""
        while clock["k"] / 30 < until:
            k = clock["k"]
            clips.frame(0, Frame(k, k / 30, k / 30, 0.0, t0 + k / 30, images[k % len(images)]), None)
            clock["k"] += 1

    def event(phase: str, start: float, end: float | None, peak: float) -> ActionEvent:
        return ActionEvent(f"pool-{start}", "pool", "cleaning pool", phase, t0 + start, start,
                           None if end is None else t0 + end, end, 0.9, 0.8, t0 + peak)

    starts = [4.05, 11.05, 15.05, 19.05]
    for start in starts:  # each: 2 s pre-roll, 1 s of event, 1 s post-roll
        play(start)
        clips.event(event("start", start, None, start))
        play(start + 2.0)
        clips.event(event("end", start, start + 1.0, start + 0.5))
        play(start + 3.0)  # past the post-roll: the clip closes
    clips.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert not [n for n in names if n.startswith(".") and n != RECORD_FILE]  # no temporary file left
    names.remove(RECORD_FILE)  # the clips this run wrote, by name
    total = sum((tmp_path / n).stat().st_size for n in names)
    assert clips.counters.clips == 4 and clips.counters.snapshots == 4 and clips.counters.dropped_frames == 0
    assert total <= budget_mb * 2**20 and clips.counters.deleted >= 1
    stems = [f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(t0 + s))}.050-pool-cleaning-pool" for s in starts]
    assert names == [n for stem in stems for n in (f"{stem}.jpg", f"{stem}.mp4")][-len(names):]  # oldest went first
    newest = tmp_path / f"{stems[-1]}.mp4"
    # wall times 17.1 .. 21.0 s at 10 fps: the 2 s pre-roll from 17.05, to 20.05 + 1 s post-roll
    assert frame_count(newest) == 40
    snap = cv2.imread(str(newest.with_suffix(".jpg")))
    assert snap is not None and snap.shape[1] == 160


def test_the_first_clip_covers_pre_roll_to_post_roll_and_its_snapshot_is_the_peak(tmp_path):
    images = real_frames(GYM, 60)
    opts = ClipOptions(folder=tmp_path, pre_roll_s=1.0, post_roll_s=0.5, fps=10.0, width=640)  # the clip is 340 px wide: kept
    clips = EventClips(opts, camera_of=lambda i: "gym", fps_of=lambda i: 10.0)
    t0 = 1_800_000_000.0
    for k in range(40):  # 10 fps: frame k at t0 + k / 10
        if k == 20:
            clips.event(ActionEvent("gym-a", "gym", "clean and jerk", "start", t0 + 1.45, 1.45, None, None, 0.5, 0.5,
                                    t0 + 1.45))
            clips.peak(ActionEvent("gym-a", "gym", "clean and jerk", "start", t0 + 1.45, 1.45, None, None, 0.9, 0.7,
                                   t0 + 1.7))
        if k == 30:
            clips.event(ActionEvent("gym-a", "gym", "clean and jerk", "end", t0 + 1.45, 1.45, t0 + 2.45, 2.45, 0.9, 0.7,
                                    t0 + 1.7))
        clips.frame(0, Frame(k, k / 10, k / 10, 0.0, t0 + k / 10, images[k]), None)
    clips.close()
    (clip,) = [p for p in tmp_path.iterdir() if p.suffix == ".mp4"]
    assert frame_count(clip) == 25  # wall times 0.5 .. 2.9 s: pre-roll from 1.45 - 1.0, post-roll to 2.45 + 0.5
    cap = cv2.VideoCapture(str(clip))
    ok, first = cap.read()
    cap.release()
    snap = cv2.imread(str(clip.with_suffix(".jpg")))
    ref_first, ref_peak = (cv2.cvtColor(images[k], cv2.COLOR_RGB2BGR) for k in (5, 17))
    # the clip starts with frame 5 (0.5 s) and the snapshot is frame 17 (1.7 s): lossy, but far closer to those
    # frames than to their neighbours two frames away
    def err(a, b):
        return float(np.mean(np.abs(a.astype(np.float32) - b.astype(np.float32))))
    assert err(first, ref_first) < err(first, cv2.cvtColor(images[8], cv2.COLOR_RGB2BGR))
    assert err(snap, ref_peak) < min(err(snap, cv2.cvtColor(images[k], cv2.COLOR_RGB2BGR)) for k in (14, 20))


# --- metrics endpoint policy ---

def test_metrics_need_a_token_off_loopback_and_check_it(tmp_path):
    from froster_edge.runtime.site.metrics import MetricsServer

    class Empty:
        def collect(self):
            return iter(())

    with pytest.raises(ConfigError, match="needs a token"):
        MetricsServer(MetricsOptions(listen=f"0.0.0.0:{free_port()}"), Empty())
    token = tmp_path / "token"
    token.write_text("s3cret-token-of-32-characters-xx\n")
    port = free_port()
    server = MetricsServer(MetricsOptions(listen=f"0.0.0.0:{port}", token_file=token), Empty())
    try:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert e.value.code == 401
        req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                     headers={"Authorization": "Bearer s3cret-token-of-32-characters-xx"})
        assert urllib.request.urlopen(req, timeout=10).status == 200
    finally:
        server.close()


# --- a real two-camera site ---

def scrape(port: int) -> dict[tuple[str, str], float]:
    """The endpoint's samples as {(name, camera): value}, parsed by hand from the text format."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        head, value = line.rsplit(" ", 1)
        name, _, labels = head.partition("{")
        camera = next((kv.split("=", 1)[1].strip('"') for kv in labels.rstrip("}").split(",") if kv.startswith("camera=")), "")
        if "quantile" not in labels:
            out[(name, camera)] = float(value)
    return out


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def site_doc(bundle: Path, cameras: list[dict], tmp_path: Path, port: int, mqtt_port: int) -> dict:
    return {"bundle": str(bundle), "defaults": {"sample_fps": 8, "hop": 1, "top_k": 12},
            "cameras": cameras,
            # enter 0: the two classes are "on" from the first decisions; they end when a camera goes or the run stops
            "events": {"file": str(tmp_path / "events.jsonl"), "enter": 0.0, "exit": 0.0, "enter_decisions": 2,
                       "labels": ["yoga", "fencing"]},
            "clips": {"folder": str(tmp_path / "clips"), "pre_roll_s": 1, "post_roll_s": 0.5, "max_clip_s": 20,
                      "budget_mb": 3, "width": 160, "fps": 5},
            "metrics": {"listen": f"127.0.0.1:{port}"},
            "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "prefix": "site", "discovery": True, "client_id": "box"}}


def run_site(bundle: Path, tmp_path: Path, seconds: float) -> None:
    """The site for `seconds` (at least the reloads), checked throughout and at the end."""
    (tmp_path / "clips").mkdir()
    broker = Broker(tmp_path).start()  # skips, with the reason, where mosquitto is not installed
    sub = Subscriber(broker.watch_port)
    http_port, metrics_port = free_port(), free_port()
    server = serve(http_port)
    live = None
    try:
        wait_listening(http_port)
        url = f"http://127.0.0.1:{http_port}/live.ts"
        file_cam = {"name": "yard", "source": str(POOL), "realtime": True, "loop": True}
        net_cam = {"name": "door", "source": url}
        site = tmp_path / "site.yaml"
        site.write_text(yaml.safe_dump(site_doc(bundle, [file_cam, net_cam], tmp_path, metrics_port, broker.port)))
        live = LiveRun("--config", str(site), "--stats-json", str(tmp_path / "stats.json"))
        seen: list[dict] = []
        while min(sum(d["camera"] == c for d in seen) for c in ("yard", "door")) < 3:  # events start at the 2nd
            seen.append(live.decision(timeout=60))
        m = scrape(metrics_port)
        assert m[("froster_edge_decisions_total", "yard")] >= 1 and m[("froster_edge_decisions_total", "door")] >= 1
        assert m[("froster_edge_camera_up", "door")] == 1.0 and ("froster_edge_stage_seconds_count", "door") in m
        # SIGHUP: "door" removed, "arm" added; "yard" goes on undisturbed
        site.write_text(yaml.safe_dump(site_doc(bundle, [file_cam, {"name": "arm", "source": str(ARM), "realtime": True,
                                                                    "loop": True}], tmp_path, metrics_port, broker.port)))
        live.proc.send_signal(signal.SIGHUP)
        live.wait_stderr("reload:", timeout=60)
        # MQTT follows the reload: "arm" announced (availability, a Home Assistant device), "door" offline
        # and its entities removed (empty retained configs)
        sub.wait(lambda ms: [m for m in ms if m.topic == "site/arm/availability" and m.payload == b"online"]
                 and [m for m in ms if m.topic == "site/door/availability" and m.payload == b"offline"]
                 and [m for m in ms if m.topic == "homeassistant/sensor/box/arm_label/config"], 60, "arm added, door removed")
        while "arm" not in {d["camera"] for d in seen[-1:]}:
            seen.append(live.decision(timeout=60))
        for _ in range(6):
            seen.append(live.decision(timeout=60))
        # a bad file is refused in one line and the site kept
        site.write_text(site.read_text().replace("sample_fps", "sample_fsp"))
        live.proc.send_signal(signal.SIGHUP)
        refused = live.wait_stderr("reload: refused", timeout=60)
        assert "defaults.sample_fsp: unknown key" in refused
        rss, end = [], time.monotonic() + seconds
        while time.monotonic() < end or len(rss) < 9:  # the short run too: enough samples to compare thirds
            for _ in range(2):
                seen.append(live.decision(timeout=60))
            rss.append(rss_mb(live.proc.pid))
        m2 = scrape(metrics_port)
        assert live.stop() == 0, live.stderr
        sub.wait(lambda ms: any(m.topic == "site/availability" and m.payload == b"offline" for m in ms), 30, "offline")
        door_configs = [t for t in {m.topic for m in sub.messages} if t.startswith("homeassistant/") and "/door_" in t]
        cleared = {t: retained(broker.watch_port, t, timeout=2) for t in door_configs[:1]}  # None after 2 s: nothing retained
        last_availability = {cam: retained(broker.watch_port, f"site/{cam}/availability") for cam in ("yard", "door", "arm")}
    finally:
        if live is not None:
            live.kill()
        sub.close()
        broker.kill()
        server.kill()
        server.wait(10)
    err = "\n".join(live.stderr)
    assert "Traceback" not in err
    assert [line for line in live.stderr if "reload:" in line and "added arm; removed door; changed none; kept yard" in line]
    cams = [d["camera"] for d in seen]
    assert max(i for i, c in enumerate(cams) if c == "door") < cams.index("arm")  # no door decision after the reload
    yard = [d for d in seen if d["camera"] == "yard"]
    assert yard[-1]["time"] > seen[cams.index("arm")]["time"] and all(d["stream"] == 0 for d in yard)
    assert [d["frame"] for d in yard] == sorted(d["frame"] for d in yard)  # never restarted
    assert ("froster_edge_camera_up", "door") not in m2 and m2[("froster_edge_decisions_total", "arm")] >= 1  # removed: gone
    assert m2[("froster_edge_decisions_total", "yard")] > m[("froster_edge_decisions_total", "yard")]
    assert m2[("froster_edge_reloads_total", "")] == 1 and m2[("froster_edge_reloads_refused_total", "")] == 1
    # events: each started once and ended once; door's ended (interrupted) at its removal, the others at the stop
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    starts = {e["id"]: e for e in events if e["phase"] == "start"}
    ends = {e["id"]: e for e in events if e["phase"] == "end"}
    assert set(starts) == set(ends) and {(e["camera"], e["label"]) for e in ends.values()} == \
        {(c, label) for c in ("yard", "door", "arm") for label in ("yoga", "fencing")}
    by_cam: dict[str, list[dict]] = {}
    for d in seen:
        by_cam.setdefault(d["camera"], []).append(d)
    for e in ends.values():
        assert e["interrupted"]
        decisions = by_cam[e["camera"]]
        assert e["start_time"] == decisions[0]["time"]  # enter 0: the first decision starts it
        inside = [d for d in decisions if e["start_time"] <= d["time"] < e["end_time"] or d["time"] == e["end_time"]]
        scores = [next(t["score"] for t in d["top"] if t["label"] == e["label"]) for d in inside]
        assert e["peak_score"] >= max(scores) - 1e-6  # the events saw at least the decisions we saw
    door_end = next(e for e in ends.values() if e["camera"] == "door")
    assert door_end["end_time"] <= by_cam["arm"][0]["time"]
    # clips: whole files within the budget, named by time, readable
    files = sorted((tmp_path / "clips").iterdir())
    assert [p.name for p in files if p.name.startswith(".")] == [RECORD_FILE]  # no temporary left
    files = [p for p in files if p.name != RECORD_FILE]
    assert sum(p.stat().st_size for p in files) <= 3 * 2**20
    mp4s = [p for p in files if p.suffix == ".mp4"]
    assert mp4s and all(frame_count(p) > 0 for p in mp4s)
    assert all(cv2.imread(str(p)) is not None for p in files if p.suffix == ".jpg")
    written = {e["id"]: e for e in events if e["phase"] == "clip"}  # each ended event's files, once final
    assert set(written) == set(ends) and all(e["clip"] is None and e["snapshot"] is None for e in ends.values())
    assert {p.name for p in files} <= {e[k] for e in written.values() for k in ("clip", "snapshot")}
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert [(s["camera"], s["ended"]) for s in stats["streams"]] == [("yard", "stopped"), ("door", "removed"),
                                                                      ("arm", "stopped")]
    # flat memory: the last third of the samples no higher than the middle third + 32 MiB
    third = len(rss) // 3
    assert len(rss) >= 6 and max(rss[-third:]) <= max(rss[third:2 * third]) + 32, rss
    # MQTT: each camera's event messages are the events file's, in its order; the devices follow the reload
    for cam in ("yard", "door", "arm"):
        sent = [(e["id"], e["phase"]) for e in events if e["camera"] == cam]
        got = [(m.json()["id"], m.json()["phase"]) for m in sub.on(f"site/{cam}/event")]
        assert got == sent and len(sent) == 6, (cam, got, sent)  # yoga and fencing: start, end, clip each
        assert [m.payload for m in sub.on(f"site/{cam}/action/yoga")] == [b"OFF", b"ON", b"OFF"]  # off at the start
    assert {cam: m.payload for cam, m in last_availability.items() if m is not None} == \
        {"yard": b"online", "door": b"offline", "arm": b"online"}
    assert door_configs and all(sub.on(t)[-1].payload == b"" for t in door_configs)  # Home Assistant: entity removed
    assert cleared and all(m is None for m in cleared.values())  # no retained config left for door
    arm_binary = {m.json()["name"] for m in sub.messages if m.topic.startswith("homeassistant/binary_sensor/box/arm_")}
    assert arm_binary == {c.name for c in CLASSES}
    arm_label = json.loads(sub.on("homeassistant/sensor/box/arm_label/config")[-1].payload)
    assert {a["topic"] for a in arm_label["availability"]} == {"site/availability", "site/arm/availability"}
    print(f"site {seconds:.0f} s: {len(seen)} decisions, {len(ends)} events ({sum(len(sub.on(f'site/{c}/event')) for c in ('yard', 'door', 'arm'))} "
          f"event messages over MQTT), {len(mp4s)} clips kept ({sum(p.stat().st_size for p in files) / 2**20:.2f} MiB of 3), "
          f"RSS {rss[0]:.0f} -> {max(rss):.0f} -> {rss[-1]:.0f} MiB over {len(rss)} samples")


@needs_ffmpeg
@needs_linux
def test_a_two_camera_site_with_events_clips_metrics_and_reloads(tiny_bundle, tmp_path):
    run_site(tiny_bundle, tmp_path, seconds=5)


@needs_ffmpeg
@needs_linux
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_two_camera_site_for_ten_minutes(tiny_bundle, tmp_path):
    run_site(tiny_bundle, tmp_path, seconds=float(os.environ.get("FROSTER_SITE_SOAK_S", 600)))
