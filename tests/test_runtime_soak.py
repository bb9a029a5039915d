"""Soak: a run at real-time pace (a file played as a camera, looped) for FROSTER_SOAK_S seconds (60 by
default, in the suite; FROSTER_SOAK_S=300 for the longer run recorded in docs/benchmarks.md).

Memory must not grow once warm, and every frame read must be accounted for: taken by the
assembler or dropped (plus at most the one in the slot at the stop), every clip decided or
skipped, so no queue can hide anywhere.
"""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

from .helpers import CLIPS, LiveRun

SOAK_S = float(os.environ.get("FROSTER_SOAK_S", "60"))


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kb / 1024


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process's memory from /proc")
def test_real_time_soak_keeps_memory_and_queues_flat(tiny_bundle, tmp_path):
    live = LiveRun("--bundle", str(tiny_bundle), "--source", str(CLIPS / "stgcn_clean_and_jerk.mp4"), "--realtime",
                   "--loop", "--sample-fps", "8", "--hop", "1", "--stats-json", str(tmp_path / "stats.json"))
    live.decision(timeout=60)
    start = time.monotonic()
    samples: list[tuple[float, float]] = []
    try:
        while (t := time.monotonic() - start) < SOAK_S:
            samples.append((t, rss_mb(live.proc.pid)))
            while not live.decisions.empty():
                live.decision()
            time.sleep(1.0)
    finally:
        code = live.stop()
    assert code == 0, live.stderr
    warm = [m for t, m in samples if t >= min(15.0, SOAK_S / 4)]  # after the first loops of the file
    growth = max(warm) - warm[0]
    assert growth < 16.0, f"resident memory grew {growth:.1f} MiB over {SOAK_S:.0f} s: {samples}"

    stats = json.loads((tmp_path / "stats.json").read_text())
    s = stats["streams"][0]
    taken = stats["stages"]["capture_wait"]["n"]
    assert 0 <= s["frames_read"] - taken - s["frames_dropped"] <= 1, s
    assert 0 <= s["clips"] - s["decisions"] - s["clips_skipped"] <= 1, s
    assert s["frames_read"] >= 0.8 * 29.97 * SOAK_S  # it did run at real-time pace the whole time
    assert stats["stages"]["capture_to_decision"]["p99_ms"] < 2000, stats["stages"]["capture_to_decision"]
    assert "Traceback" not in "\n".join(live.stderr)
    print(f"soak {SOAK_S:.0f} s: {stats['decisions']} decisions, {s['frames_read']} frames, {s['frames_dropped']} dropped, "
          f"rss {warm[0]:.1f} -> {warm[-1]:.1f} MiB (max growth {growth:.1f}), capture-to-decision "
          f"p50 {stats['stages']['capture_to_decision']['p50_ms']:.1f} ms p99 {stats['stages']['capture_to_decision']['p99_ms']:.1f} ms")
