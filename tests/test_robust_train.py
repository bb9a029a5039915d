"""Attacks on `froster-edge train`'s processes (issue 31): a kill -9 of the trainer leaves none of
its DataLoader processes (the forkserver, its workers, the resource tracker) alive."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .helpers import TINY_RECIPE


def children() -> dict[int, int]:
    """pid -> parent pid of every live process (a zombie has ended: left out)."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if state != "Z":
            out[int(d.name)] = int(ppid)
    return out


def descendants(pid: int) -> set[int]:
    parents = children()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_kill_9_of_the_trainer_leaves_no_dataloader_process_alive(tmp_path):
    trainer = subprocess.Popen([sys.executable, "-m", "froster_edge.cli", "train", str(TINY_RECIPE), "--out",
                                str(tmp_path / "out"), "--set", "train.epochs=100"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, workers = time.monotonic() + 240, set()
        while time.monotonic() < deadline and trainer.poll() is None:
            workers = {p for p in descendants(trainer.pid) if "from multiprocessing." in cmdline(p)}
            if sum("multiprocessing.forkserver" in cmdline(p) for p in workers) >= 3:  # the server, the recipe's 2 workers
                break
            time.sleep(0.5)
        assert len(workers) >= 4, f"the tiny train started no forkserver workers (exit {trainer.poll()})"
        trainer.send_signal(signal.SIGKILL)
        trainer.wait(30)
        deadline = time.monotonic() + 60  # a bound for a hang, not a speed check
        while time.monotonic() < deadline and workers & set(children()):
            time.sleep(0.2)
        left = workers & set(children())
    finally:
        if trainer.poll() is None:
            trainer.kill()
    for pid in left:  # the test's own clean-up, by pid
        os.kill(pid, signal.SIGKILL)
    assert not left, f"alive after the trainer's kill -9: {[cmdline(p)[:120] for p in left]}"
