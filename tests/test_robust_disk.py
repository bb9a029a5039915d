"""Attacks on the events file (issue 31): a write that fails (a file-size limit, EFBIG; a file made
read-only) neither stops the run nor leaves a cut-off line that later events glue onto."""

from __future__ import annotations

import json
import resource
import signal
import textwrap
import time

import yaml

from .helpers import CLIPS, LiveRun, run_python

CLIP = CLIPS / "stgcn_clean_and_jerk.mp4"


def test_a_file_size_limit_loses_events_but_leaves_only_whole_lines(tmp_path):
    """A real RLIMIT_FSIZE in a child process: writes fail with EFBIG part-way through a line; once
    the limit is lifted, writing goes on with whole lines."""
    path = tmp_path / "events.jsonl"
    code = textwrap.dedent(f"""
        import json, resource
        from froster_edge.runtime.site.events import ActionEvent, JsonlEventSink
        sink = JsonlEventSink({str(path)!r})
        def ev(i):
            return ActionEvent(f"cam-{{i:04d}}", "cam", "label " * 20, "start", float(i), 0.0, None, None, 0.5, 0.5, 0.0)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, hard))
        for i in range(10):
            sink.event(ev(i))
        lost_under_limit = sink.lost
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        for i in range(10, 15):
            sink.event(ev(i))
        sink.close()
        print(json.dumps([lost_under_limit, sink.lost]))
    """)
    proc = run_python(code)
    lost_under_limit, lost = json.loads(proc.stdout.strip().splitlines()[-1])
    raw = path.read_bytes()
    lines = raw.decode().splitlines()
    ids = [json.loads(line)["id"] for line in lines]  # every line is whole JSON
    assert raw.endswith(b"\n") and len(raw) <= 1000 + 5 * 400
    assert 0 < lost_under_limit < 10 and lost == lost_under_limit
    # the reference: the events that fitted under the limit, in order, then the five after it
    assert ids == [f"cam-{i:04d}" for i in range(10 - lost)] + [f"cam-{i:04d}" for i in range(10, 15)]
    assert sum("File too large" in line for line in proc.stderr.splitlines()) == 1
    assert sum("writing again" in line for line in proc.stderr.splitlines()) == 1


def test_a_run_whose_events_file_cannot_grow_goes_on_and_ends_with_its_stats(tiny_bundle, tmp_path):
    events = tmp_path / "events.jsonl"
    doc = {"bundle": str(tiny_bundle), "defaults": {"sample_fps": 8, "hop": 1},
           "cameras": [{"name": "yard", "source": str(CLIP), "realtime": True, "loop": True}],
           "events": {"file": str(events), "enter": 0.0, "exit": 0.0, "enter_decisions": 2, "labels": ["yoga", "fencing"]}}
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(doc))
    events.write_text("")

    def limit() -> None:  # the run's files may not grow beyond 300 bytes: not even one event line
        resource.setrlimit(resource.RLIMIT_FSIZE, (300, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    live = LiveRun("--config", str(site), preexec_fn=limit)
    try:
        live.wait_stderr("File too large", timeout=90)
        before = len(live.seen)
        for _ in range(3):  # the camera goes on deciding
            live.decision(60)
        assert len(live.seen) == before + 3
        assert live.stop(signal.SIGTERM, timeout=60) == 0, live.stderr
    finally:
        live.kill()
    time.sleep(0.1)
    assert "Traceback" not in "\n".join(live.stderr) and any("decisions in" in line for line in live.stderr)
    assert sum("File too large" in line for line in live.stderr) == 1
    assert events.read_bytes() == b""  # nothing cut off left behind
