"""Cameras with passwords, against a real RTSP server (GStreamer's, with authentication): the
password opens the stream and shows nowhere else; faults are named for what they are."""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import quote, urlsplit

import pytest
import yaml

from froster_edge.errors import ConfigError
from froster_edge.runtime.options import CameraOptions, RunOptions, camera_list
from froster_edge.runtime.source_url import read_password, redact, redact_text, with_password
from froster_edge.runtime.sources import parse_source

from .helpers import CLIPS, LiveRun, assert_one_line_error, cli, free_port
from .mosquitto import Broker, Subscriber
from .rtsp_server import RtspServer, encode_clip, gstreamer_missing
from .test_web_browser import browser  # noqa: F401  (the fixture: headless chromium)

PASSWORD = "Zq7-secret-Pw4x"  # unique enough that any hit is a leak
USER = "viewer"


@pytest.fixture(scope="module")
def rtsp_video(tmp_path_factory) -> Path:
    why = gstreamer_missing()
    if why:
        pytest.skip(why)
    return encode_clip(CLIPS / "stgcn_clean_and_jerk.mp4", tmp_path_factory.mktemp("rtsp") / "cam.mp4", repeat=12)


# --- the redaction rule, against urllib's reading of the same URLs ---

def _assert_nowhere_after(live, out: Path, surfaces: dict[str, str]) -> None:
    """The run's stderr, its decisions, every file and file name it wrote, and the live surfaces."""
    surfaces |= {f"stderr {i}": line for i, line in enumerate(live.stderr)}
    surfaces |= {f"decision {i}": json.dumps(d) for i, d in enumerate(live.seen)}
    for name, content in _files_and_names(out):
        surfaces[f"file name {name}"] = name
        surfaces[f"file {name}"] = content
    _assert_nowhere(surfaces)


@pytest.mark.parametrize("url", [
    "rtsp://admin:hunter2@10.0.0.7:554/Streaming/Channels/101",
    "rtsp://admin:p%40ss%2Fw@cam.local/live?x=1",
    "http://u:pw@[::1]:8080/video.mjpg",
    "rtsp://user@host/path",
    "rtsp://host/path",
])
def test_redact_hides_exactly_the_password(url):
    ref = urlsplit(url)
    shown = redact(url)
    if ref.password is not None:
        assert ref.password not in shown and f"{ref.username}:***@" in shown
        assert urlsplit(shown).hostname == ref.hostname and urlsplit(shown).path == ref.path
        assert redact_text(f"cannot open {url} now") == f"cannot open {shown} now"
    else:
        assert shown == url


def test_a_password_from_a_file_or_the_environment_goes_into_the_url_encoded(tmp_path, monkeypatch):
    secret = "p@ss:w/rd?#"
    url = with_password("rtsp://admin@cam.local:554/live", secret, "cameras[a]")
    ref = urlsplit(url)
    assert ref.username == "admin" and ref.password == quote(secret, safe="") and ref.path == "/live"
    f = tmp_path / "pw"
    f.write_text(secret + "\n")
    assert read_password("cameras[a]", None, f) == secret
    monkeypatch.setenv("CAM_A_PW", secret)
    assert read_password("cameras[a]", "CAM_A_PW", None) == secret
    spec = parse_source("rtsp://admin@cam.local:554/live", secret)
    assert spec.target == url and secret not in spec.text and quote(secret, safe="") not in spec.text
    assert quote(secret, safe="") not in repr(spec) and spec.text == "rtsp://admin:***@cam.local:554/live"
    for args, message in [((None, tmp_path / "missing"), "cannot be read"), (("NOT_SET_X", None), "NOT_SET_X is not set"),
                          (("CAM_A_PW", f), "not both")]:
        monkeypatch.delenv("NOT_SET_X", raising=False)
        with pytest.raises(ConfigError, match=message):
            read_password("cameras[a]", *args)
    with pytest.raises(ConfigError, match="user name"):
        with_password("rtsp://cam.local/live", secret, "cameras[a]")
    with pytest.raises(ConfigError, match="already has a password"):
        with_password("rtsp://a:b@cam.local/live", secret, "cameras[a]")


def test_an_unnamed_source_is_named_by_its_redacted_url():
    opts = RunOptions(sources=[f"rtsp://{USER}:{PASSWORD}@127.0.0.1:8554/cam"],
                      cameras=[CameraOptions("door", "rtsp://x@h/p", password_env="X")])
    assert [c.name for c in camera_list(opts)] == ["door", f"rtsp://{USER}:***@127.0.0.1:8554/cam"]


# --- the attack: a real run over a real password-protected stream, every surface searched ---

def _get(port: int, path: str) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10).read().decode()


def _files_and_names(root: Path) -> list[tuple[str, bytes]]:
    out = []
    for p in root.rglob("*"):
        out.append((str(p.relative_to(root)), p.read_bytes() if p.is_file() else b""))
    return out


def _assert_nowhere(texts: dict[str, str | bytes]) -> None:
    forms = {PASSWORD, quote(PASSWORD, safe="")}
    leaks = [(where, form) for where, text in texts.items() for form in forms
             if (form.encode() if isinstance(text, bytes) else form) in text]
    assert not leaks, leaks[:10]


def _surfaces(live: LiveRun, sub: Subscriber, metrics_port: int, http_port: int) -> dict[str, str | bytes]:
    return {"metrics": _get(metrics_port, "/metrics"),
            **{f"web {p}": _get(http_port, p) for p in ("/api/streams", "/api/decisions", "/api/events", "/api/stats")},
            **{f"mqtt topic {i}": m.topic for i, m in enumerate(sub.messages)},
            **{f"mqtt payload {i} ({m.topic})": m.payload for i, m in enumerate(sub.messages)}}


@dataclass
class Attacked:
    """What a leak test's run works with: its output folder, the broker and a subscriber to every
    topic, the password-protected RTSP server, one port for the web view and /metrics, and the run."""

    out: Path
    broker: Broker
    sub: Subscriber
    server: RtspServer
    port: int
    live: LiveRun | None = None


@contextlib.contextmanager
def attacked_run(tmp_path: Path, rtsp_video: Path) -> Iterator[Attacked]:
    """The parts a leak test's run talks to, started; at the end the run is killed if still there,
    the subscriber closed, the broker killed, then the RTSP server stopped."""
    out = tmp_path / "out"
    (out / "clips").mkdir(parents=True)
    broker = Broker(tmp_path).start()  # skips, with the reason, where mosquitto is not installed
    sub = Subscriber(broker.watch_port)
    with RtspServer(rtsp_video, USER, PASSWORD) as server:
        run = Attacked(out, broker, sub, server, free_port())  # one port: the web view's server answers /metrics
        try:
            yield run
        finally:
            if run.live is not None:
                run.live.kill()
            sub.close()
            broker.kill()


def test_a_password_shows_in_no_log_file_name_topic_payload_metric_or_api(rtsp_video, tiny_bundle, tmp_path,
                                                                       monkeypatch):
    secret_file = tmp_path / "secrets" / "gate.pw"
    secret_file.parent.mkdir()
    secret_file.write_text(PASSWORD + "\n")
    monkeypatch.setenv("DOOR_PASSWORD", PASSWORD)
    with attacked_run(tmp_path, rtsp_video) as run:
        out, server = run.out, run.server
        cameras = [{"name": "door", "source": server.url(USER), "password_env": "DOOR_PASSWORD"},
                   {"name": "gate", "source": server.url(USER), "password_file": str(secret_file),
                    "rtsp_transport": "tcp"},
                   {"name": "yard", "source": server.url(USER, PASSWORD)}]  # the way examples/site.yaml used to show
        site = tmp_path / "site.yaml"
        site.write_text(yaml.safe_dump({
            "bundle": str(tiny_bundle), "defaults": {"sample_fps": 8, "hop": 1}, "cameras": cameras,
            "events": {"file": str(out / "events.jsonl"), "enter": 0.0, "exit": 0.0, "enter_decisions": 1},
            "clips": {"folder": str(out / "clips"), "pre_roll_s": 1, "post_roll_s": 0.5, "width": 160, "fps": 5},
            "metrics": {"listen": f"127.0.0.1:{run.port}"},
            "http": {"port": run.port},
            "mqtt": {"host": "127.0.0.1", "port": run.broker.port, "prefix": "site", "discovery": True,
                     "client_id": "box"}}))
        live = run.live = LiveRun("--config", str(site), "--stats-json", str(out / "stats.json"))
        seen: list[dict] = []
        while min(sum(d["camera"] == c for d in seen) for c in ("door", "gate", "yard")) < 3:
            seen.append(live.decision(timeout=90))
        run.sub.wait(lambda ms: any(m.topic == "site/yard/state" for m in ms), 30, "a state of yard")
        surfaces = _surfaces(live, run.sub, run.port, run.port)
        assert live.stop() == 0, live.stderr
    _assert_nowhere_after(live, out, surfaces)
    # not vacuous: every camera decided, events and clips were written, and the inline source shows redacted
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert {e["camera"] for e in events} == {"door", "gate", "yard"}
    assert any(p.suffix == ".mp4" for p in (out / "clips").iterdir())
    yard = [d for d in seen if d["camera"] == "yard"]
    assert yard[0]["source"] == server.url(USER, "***")
    stats = json.loads((out / "stats.json").read_text())
    assert [s["source"] for s in stats["streams"]] == [server.url(USER, "***")] * 3


def test_an_unnamed_source_with_a_password_leaks_nowhere_either(rtsp_video, tiny_bundle, tmp_path):
    with attacked_run(tmp_path, rtsp_video) as run:
        out, server = run.out, run.server
        live = run.live = LiveRun("--bundle", str(tiny_bundle), "--source", server.url(USER, PASSWORD), "--sample-fps",
                                  "8", "--hop", "1", "--stats-json", str(out / "stats.json"), "--events",
                                  str(out / "events.jsonl"), "--clips", str(out / "clips"), "--metrics",
                                  f"127.0.0.1:{run.port}", "--http", f"127.0.0.1:{run.port}", "--mqtt",
                                  f"127.0.0.1:{run.broker.port}")
        for _ in range(3):
            live.decision(timeout=90)
        run.sub.wait(lambda ms: any(m.topic.endswith("/state") for m in ms), 30, "a state")
        surfaces = _surfaces(live, run.sub, run.port, run.port)
        assert live.stop() == 0, live.stderr
    _assert_nowhere_after(live, out, surfaces)
    assert live.seen[0]["camera"] == live.seen[0]["source"] == server.url(USER, "***")
    assert any(f"camera=\"{server.url(USER, '***')}\"" in line for line in surfaces["metrics"].splitlines())


# --- faults named for what they are; a camera that is down reads as down ---

@pytest.mark.parametrize("auth", ["basic", "digest"])
def test_each_fault_of_a_stream_is_named_by_the_servers_own_answer(rtsp_video, tiny_bundle, auth):
    with RtspServer(rtsp_video, USER, PASSWORD, auth) as server:
        cases = [(server.url(USER, "not-the-password"), f"refused user '{USER}' and its password (401"),
                 (server.url(), "needs a user name and password (401"),
                 (server.url(USER, PASSWORD, path="nope"), "no stream at path '/nope' on this server (404"),
                 (f"rtsp://127.0.0.1:{free_port()}/cam", "connection refused by 127.0.0.1")]
        for url, said in cases:
            r = cli("run", "--bundle", str(tiny_bundle), "--source", url, "--max-decisions", "1")
            assert_one_line_error(r, 1, said)
            assert "not-the-password" not in r.stderr


def _scrape(port: int) -> dict[str, float]:
    out = {}
    for line in _get(port, "/metrics").splitlines():
        if line and not line.startswith("#"):
            head, value = line.rsplit(" ", 1)
            out[head] = float(value)
    return out


def test_a_camera_whose_password_changed_reads_down_everywhere_and_comes_back(rtsp_video, tiny_bundle, tmp_path):
    pw_file = tmp_path / "door.pw"
    pw_file.write_text(PASSWORD + "\n")
    broker = Broker(tmp_path).start()
    sub = Subscriber(broker.watch_port)
    http_port = free_port()
    metrics_port = http_port  # one port: with the web view on, its server answers /metrics
    server = RtspServer(rtsp_video, USER, PASSWORD).start()
    live = None
    up = 'froster_edge_camera_up{camera="door",stream="0"}'
    attempts = 'froster_edge_reconnect_attempts_total{camera="door",stream="0"}'
    try:
        site = tmp_path / "site.yaml"
        site.write_text(yaml.safe_dump({
            "bundle": str(tiny_bundle), "defaults": {"sample_fps": 8, "hop": 1},
            "cameras": [{"name": "door", "source": server.url(USER), "password_file": str(pw_file)}],
            "metrics": {"listen": f"127.0.0.1:{metrics_port}"}, "http": {"port": http_port},
            "mqtt": {"host": "127.0.0.1", "port": broker.port, "prefix": "site", "client_id": "box"}}))
        live = LiveRun("--config", str(site), "--stats-json", str(tmp_path / "stats.json"))
        live.decision(timeout=90)
        assert _scrape(metrics_port)[up] == 1.0
        sub.wait(lambda ms: [m for m in ms if m.topic == "site/door/availability" and m.payload == b"online"], 30, "online")
        # the camera's password is changed: the stream drops and every reconnection gets a 401
        server.kill()
        server.start(password="a-new-password-9")
        refused = live.wait_stderr(f"refused user '{USER}' and its password", timeout=60)
        assert "unreachable" in refused  # the line names the cause, once, not "unreachable" alone on every retry
        sub.wait(lambda ms: [m for m in ms if m.topic == "site/door/availability"][-1].payload == b"offline", 30,
                 "door offline")
        first = _scrape(metrics_port)
        streams = json.loads(_get(http_port, "/api/streams"))["streams"]
        stats = json.loads(_get(http_port, "/api/stats"))["run"]["streams"][0]
        live.wait_stderr("retrying", timeout=30)
        end = 0
        while _scrape(metrics_port)[attempts] <= first[attempts] and end < 200:  # reconnection attempts move
            end += 1
            time.sleep(0.1)
        second = _scrape(metrics_port)
        assert first[up] == 0.0 and second[attempts] > first[attempts]
        assert streams[0]["up"] is False and "401" in streams[0]["down_reason"]
        assert stats["up"] is False and "401" in stats["down_reason"] and stats["outages"] == 1
        # the new password is put in the file: the next reconnection uses it, and the camera is back
        pw_file.write_text("a-new-password-9\n")
        live.wait_stderr("reconnected to", timeout=60)
        live.decision(timeout=60)
        sub.wait(lambda ms: [m for m in ms if m.topic == "site/door/availability"][-1].payload == b"online", 30,
                 "door online again")
        assert _scrape(metrics_port)[up] == 1.0
        assert json.loads(_get(http_port, "/api/streams"))["streams"][0]["up"] is True
        assert sum("refused user" in line for line in live.stderr) == 1, live.stderr
        assert live.stop() == 0
    finally:
        if live is not None:
            live.kill()
        sub.close()
        broker.kill()
        server.kill()
    stats = json.loads((tmp_path / "stats.json").read_text())["streams"][0]
    assert stats["reconnects"] == 1 and stats["outages"] == 1 and "Traceback" not in "\n".join(live.stderr)


def test_a_silent_stream_is_dropped_at_the_read_timeout_not_three_of_them(rtsp_video, tiny_bundle, tmp_path):
    """The server is frozen (SIGSTOP: its connection open, nothing sent, a network black hole)."""
    live = None
    with RtspServer(rtsp_video) as server:
        try:
            live = LiveRun("--bundle", str(tiny_bundle), "--source", server.url(), "--sample-fps", "8", "--hop", "1")
            live.decision(timeout=90)
            server.pause()
            dropped = live.wait_stderr("dropped, reconnecting", timeout=60)
            server.resume()
            live.wait_stderr("reconnected to", timeout=60)
            assert live.stop() == 0
        finally:
            if live is not None:
                live.kill()
    assert "no frame for 5 s (the read timeout)" in dropped


@pytest.mark.parametrize("transport", ["udp", "tcp", None])
def test_rtsp_transport_is_what_the_camera_is_asked_for(rtsp_video, tiny_bundle, tmp_path, transport):
    """None: the key left out, and the documented default (TCP) is asked for."""
    with RtspServer(rtsp_video) as server:
        site = tmp_path / "site.yaml"
        camera = {"name": "door", "source": server.url(), **({"rtsp_transport": transport} if transport else {})}
        site.write_text(yaml.safe_dump({"bundle": str(tiny_bundle), "defaults": {"sample_fps": 8, "hop": 1},
                                        "cameras": [camera]}))
        live = LiveRun("--config", str(site))
        try:
            live.decision(timeout=90)
            assert live.stop() == 0
        finally:
            live.kill()
        asked = list(server.transports)
    assert asked and all(("RTP/AVP/TCP" in t) == (transport != "udp") for t in asked), asked
    assert all(("client_port=" in t) == (transport == "udp") for t in asked), asked


@pytest.mark.parametrize("camera, message", [
    ({"rtsp_transport": "quic"}, "cameras[0].rtsp_transport: must be 'tcp' or 'udp', not 'quic'"),
    ({"source": "0", "rtsp_transport": "udp"}, "rtsp_transport applies to rtsp:// sources only"),
    ({"password_env": "FROSTER_TEST_UNSET_PW"}, "cameras[0].password_env: the environment variable FROSTER_TEST_UNSET_PW is not set"),
    ({"password_file": "missing.pw"}, "cameras[0].password_file:"),
    ({"source": "rtsp://127.0.0.1:1/cam", "password_env": "HOME"}, "give the user name in the source"),
])
def test_bad_camera_credentials_and_transports_are_one_line_naming_the_key(tiny_bundle, tmp_path, camera, message):
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({"bundle": str(tiny_bundle),
                                    "cameras": [{"name": "door", "source": "rtsp://u@127.0.0.1:1/cam", **camera}]}))
    r = cli("run", "--config", str(site))
    assert_one_line_error(r, 1, message)
    assert f"{site}: cameras[0]" in r.stderr  # the file and the key path, as every site file error


def test_the_web_page_marks_a_camera_down_with_its_cause_and_up_again(browser, rtsp_video, tiny_bundle):  # noqa: F811
    """In a real browser (chromium): the server goes away (closed port), the page says so; it comes back."""
    from .test_web_browser import wait

    http_port = free_port()
    server = RtspServer(rtsp_video).start()
    live = None
    try:
        live = LiveRun("--bundle", str(tiny_bundle), "--source", server.url(), "--sample-fps", "8", "--hop", "1",
                       "--http", f"127.0.0.1:{http_port}")
        live.decision(timeout=90)
        browser.get(f"http://127.0.0.1:{http_port}/")
        wait(browser, "document.querySelectorAll('.camera .topk li').length", 60, "decision")
        server.kill()
        label = wait(browser, "document.querySelector('.camera')?.dataset.down === '1' && "
                              "document.querySelector('.camera .label').textContent", 60, "camera down")
        assert label.startswith("down: ") and "connection refused by 127.0.0.1" in label
        server.start()
        wait(browser, "document.querySelector('.camera') && !document.querySelector('.camera').dataset.down", 60,
             "camera up again")
        assert live.stop() == 0
    finally:
        if live is not None:
            live.kill()
        server.kill()


def test_a_cameras_transport_is_added_to_the_users_own_capture_options(monkeypatch):
    from froster_edge.runtime.sources import CAPTURE_OPTIONS_ENV, _CaptureOptionsEnv

    monkeypatch.setenv(CAPTURE_OPTIONS_ENV, "stimeout;5000000|rtsp_transport;tcp|buffer_size;1024")
    env = _CaptureOptionsEnv()
    parsed = lambda v: dict(kv.split(";", 1) for kv in v.split("|"))  # noqa: E731  (OpenCV's "k;v|k;v")
    assert parsed(env.value_for("udp")) == {"stimeout": "5000000", "rtsp_transport": "udp", "buffer_size": "1024"}
    assert env.value_for(None) == "stimeout;5000000|rtsp_transport;tcp|buffer_size;1024"
    with env.holding("udp"):
        assert parsed(os.environ[CAPTURE_OPTIONS_ENV])["rtsp_transport"] == "udp"
