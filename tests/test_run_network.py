"""A real network stream on loopback: ffmpeg serves a real clip as MPEG-TS over HTTP; the server is
killed mid-stream and restarted, and the runtime reconnects and goes on deciding."""

from __future__ import annotations

import json
import shutil
import sys
import time

import pytest

from .helpers import LiveRun, free_port, serve, wait_listening

pytestmark = [
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (apt-get install ffmpeg)"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/net/tcp to see the server listen"),
]


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
