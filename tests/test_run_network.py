"""A real network stream on loopback: ffmpeg serves a real clip as MPEG-TS over HTTP; the server is
killed mid-stream and restarted, and the runtime reconnects and goes on deciding."""

from __future__ import annotations

import json
import shutil
import sys
import socket
import subprocess
import time

import pytest

from .conftest import CLIPS
from .test_run_faults import LiveRun

pytestmark = [
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (apt-get install ffmpeg)"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/net/tcp to see the server listen"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(port: int) -> subprocess.Popen:
    """ffmpeg sending the clip in a loop, at its own pace, to the one client that connects."""
    return subprocess.Popen(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "quiet", "-re", "-stream_loop", "-1",
         "-i", str(CLIPS / "stgcn_clean_and_jerk.mp4"), "-c", "copy", "-f", "mpegts", "-listen", "1",
         f"http://127.0.0.1:{port}/live.ts"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_listening(port: int, timeout: float = 15.0) -> None:
    """Wait until something listens on the port, read from /proc/net/tcp: a probe connection would
    be taken as ffmpeg's one client."""
    end, hex_port = time.monotonic() + timeout, f":{port:04X}"
    while time.monotonic() < end:
        with open("/proc/net/tcp") as f:
            if any(cols[1].endswith(hex_port) and cols[3] == "0A" for cols in (line.split() for line in f)):
                return
        time.sleep(0.05)
    raise AssertionError(f"ffmpeg did not listen on port {port}")


def test_http_stream_survives_its_server_dying(tiny_bundle, tmp_path):
    port = free_port()
    server = serve(port)
    live = None
    try:
        wait_listening(port)
        url = f"http://127.0.0.1:{port}/live.ts"
        live = LiveRun("--bundle", str(tiny_bundle), "--source", url, "--sample-fps", "8", "--hop", "2",
                       "--stats-json", str(tmp_path / "stats.json"))
        first = [live.decision(timeout=40) for _ in range(3)]
        assert all(d["source"] == url for d in first)
        server.kill()
        server.wait(10)
        live.wait_stderr("dropped, reconnecting")
        time.sleep(1.0)  # the runtime retries with backoff while nothing listens
        server = serve(port)
        wait_listening(port)
        live.wait_stderr("reconnected to", timeout=40)
        after = time.time()
        while (d := live.decision(timeout=40))["time"] < after:  # decisions on frames captured after the restart
            pass
        second = [d] + [live.decision(timeout=40) for _ in range(2)]
        assert second[-1]["media_time"] > first[-1]["media_time"]
        assert live.stop() == 0
    finally:
        if live is not None:
            live.kill()
        server.kill()
        server.wait(10)
    stats = json.loads((tmp_path / "stats.json").read_text())
    s = stats["streams"][0]
    assert s["kind"] == "url" and s["reconnects"] >= 1 and s["decisions"] >= 6
    assert "Traceback" not in "\n".join(live.stderr)
