"""`froster-edge run --http` in a subprocess over a real clip, for the web view's API and browser tests:
its address read from its log, its JSON-lines decisions collected as they come; and an action
event made to happen on the tiny random model (whose scores hardly move) by swapping its table."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from froster_edge.bundle.labels import load_labels
from froster_edge.io import atomic_write_bytes

from .helpers import CLIPS

CLIP = CLIPS / "stgcn_clean_and_jerk.mp4"


class WebRun:
    """A looping, real-time run with the web view on an ephemeral loopback port."""

    def __init__(self, bundle: Path, labels: Path, *extra: str, env: dict[str, str] | None = None, top_k: int = 40,
                 site: Path | None = None):
        where = ["--config", str(site)] if site else ["--source", str(CLIP), "--loop", "--realtime", "--http", "127.0.0.1:0"]
        cmd = [sys.executable, "-m", "froster_edge.cli", "run", "--bundle", str(bundle), *where,
               "--labels", str(labels), "--jsonl", "--top-k", str(top_k), *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})
        self.decisions: list[dict] = []
        self.log: list[str] = []
        self._out = threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True)
        self._err = threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True)
        self._out.start()
        self._err.start()
        self.url = self._wait(lambda: next((m.group(1) for line in self.log
                                            if (m := re.search(r"web view on (http://\S+/)", line))), None), 180,
                              "the web view's address")

    def _read(self, stream, decisions: bool) -> None:
        for line in stream:
            (self.decisions.append(json.loads(line)) if decisions else self.log.append(line.rstrip()))

    def _wait(self, found, timeout: float, what: str):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            value = found()
            if value:
                return value
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no {what} within {timeout} s; log:\n" + "\n".join(self.log[-20:]))

    def wait_decision(self, test, timeout: float = 120, after: int = 0) -> dict:
        """The first decision (from the `after`th on) that passes `test`."""
        return self._wait(lambda: next((d for d in self.decisions[after:] if test(d)), None), timeout,
                          "such decision")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._err.join(5)
        return "\n".join(self.log)


def names_in_top(decision: dict) -> list[str]:
    return [t["label"] for t in decision["top"]]


def site_file(root: Path, http: dict, events: Path, clips: Path, archive: Path | None = None) -> Path:
    """A site file (JSON is YAML) with one looping real-time camera "clip", events that start at
    a smoothed probability >= 0.5 and end below 0.35 after one decision each, event clips with a
    short post-roll, the given `http:` section and, when given, an archive with a thumbnail every 2 s."""
    site = {"cameras": [{"name": "clip", "source": str(CLIP), "realtime": True, "loop": True}],
            "events": {"file": str(events), "enter": 0.5, "exit": 0.35, "enter_decisions": 1, "exit_decisions": 1},
            "clips": {"folder": str(clips), "pre_roll_s": 1, "post_roll_s": 0.5},
            "http": http}
    if archive is not None:
        site["archive"] = {"file": str(archive), "thumb_every_s": 2, "commit_s": 0.2}
    path = root / "site.yaml"
    path.write_text(json.dumps(site, indent=1))
    return path


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def fire_event(run: WebRun, labels: Path, events: Path) -> tuple[dict, list[dict]]:
    """One action event, start to end, on the tiny random model, whose class probabilities stay
    under 0.2 over the clip: the watched table is cut to its best and its worst class (the best
    then scores ~0.9, far over the 0.5 to enter), then put back whole (~0.18, far under the 0.35
    to exit). Returns the run's "end" line from --events and the decisions made with the cut table."""
    whole, table = labels.read_bytes(), load_labels(labels)
    n = len(run.decisions)
    ranked = names_in_top(run.wait_decision(lambda d: len(d["top"]) == len(table.names), after=n))
    best, worst = ranked[0], ranked[-1]
    cut = table.select([table.names.index(best), table.names.index(worst)])
    cut.save(labels)
    first = run.wait_decision(lambda d: len(d["top"]) == 2, after=n)
    assert first["label"] == best and first["score"] > 0.7, first  # the margin this relies on
    run._wait(lambda: any(e["phase"] == "start" and e["label"] == best for e in read_events(events)), 120,
              "event start in the --events file")
    atomic_write_bytes(labels, whole)
    back = run.wait_decision(lambda d: len(d["top"]) == len(table.names), after=run.decisions.index(first))
    assert back["score"] < 0.25, back
    end = run._wait(lambda: next((e for e in read_events(events) if e["phase"] == "end" and e["label"] == best), None),
                    120, "event end in the --events file")
    made = run.decisions[run.decisions.index(first):run.decisions.index(back)]
    return end, [d for d in made if len(d["top"]) == 2]
