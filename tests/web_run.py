"""`froster-edge run --http` in a subprocess over a real clip, for the web view's API and browser tests:
its address read from its log, its JSON-lines decisions collected as they come."""

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

from .helpers import CLIPS

CLIP = CLIPS / "stgcn_clean_and_jerk.mp4"


class WebRun:
    """A looping, real-time run with the web view on an ephemeral loopback port."""

    def __init__(self, bundle: Path, labels: Path, *extra: str, env: dict[str, str] | None = None, top_k: int = 40):
        cmd = [sys.executable, "-m", "froster_edge.cli", "run", "--bundle", str(bundle), "--source", str(CLIP),
               "--loop", "--realtime", "--labels", str(labels), "--jsonl", "--top-k", str(top_k),
               "--http", "127.0.0.1:0", *extra]
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
