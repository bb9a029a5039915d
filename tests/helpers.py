"""Helpers shared by the test modules (fixtures live in conftest.py): paths, the one way to build the
tiny student, the CLI in this process (`cli`) or a subprocess (`run`), live runs, ports, stream servers, kills.

Test modules import from here, never from one another.
"""

from __future__ import annotations

import io
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from froster_edge.prompts import read_class_texts

ROOT = Path(__file__).resolve().parents[1]
CLIPS = ROOT / "examples" / "clips"
TINY_MODEL = ROOT / "configs" / "models" / "tiny-vit.json"
TINY_RECIPE = ROOT / "configs" / "tiny.yaml"
SHARED_DATA = ROOT.parent / "shared" / "data"

CLASSES = read_class_texts(CLIPS / "classes.txt")
VIDEOS = sorted(p for p in CLIPS.iterdir() if p.suffix in (".mp4", ".avi"))
CLIP_B = CLIPS / "mmaction2_test_v_ApplyEyeMakeup.avi"  # 164 frames at 25 fps

# OpenAI CLIP's pixel mean and std, written out here as the tests' independent reference
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)

PYSLOWFAST_CFG = "DATA:\n  NUM_FRAMES: 8\n  SAMPLING_RATE: 16\nMODEL:\n  ARCH: vitb16\n"


def shared_data(sub: str) -> Path:
    """A folder of ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / sub
    if not path.exists():
        pytest.skip(f"../shared/data/{sub} is not present on this machine")
    return path


# --- the tiny student -------------------------------------------------------------------------------

def tiny_student_config():
    """The tiny student's config: the tiny ViT, random weights, T=4, 64 px."""
    from froster_edge.config import StudentConfig

    return StudentConfig(model_name=str(TINY_MODEL), pretrained=None, num_frames=4, image_size=64)


def make_student(seed: int = 0, config=None):
    """The tiny student (or one of `config`), randomly initialised from `seed`, in eval mode."""
    import torch

    from froster_edge.model.factory import create_student

    torch.manual_seed(seed)
    return create_student(config or tiny_student_config()).eval()


def export_tiny(out: Path, videos: list[Path] = VIDEOS, **options):
    """The tiny student (seed 0) exported to `out` over the example classes and `videos` with
    ExportOptions(**options); returns the ExportResult."""
    from froster_edge.export.bundle import export_bundle
    from froster_edge.export.options import ExportOptions

    return export_bundle(make_student(), out, CLASSES, videos, ExportOptions(**options))


def make_distiller(cfg, noise: float = 0.0):
    """The recipe's distiller from seed 0; `noise` > 0 gives a student that has drifted from its
    teacher, so both distillation terms have work to do."""
    import torch

    from froster_edge.model.factory import create_distiller

    torch.manual_seed(0)
    d = create_distiller(cfg.student, cfg.distill)
    if noise:
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in d.student.parameters():
                if p.ndim >= 2:
                    p.add_(torch.randn(p.shape, generator=g) * noise)
    return d


def release_checkpoint(model_cfg: dict, seed: int = 0):
    """A FROSTER checkpoint in the release's layout: student `model.`, teacher `raw_model.`,
    projectors; returns (checkpoint dict, the student CLIP)."""
    import torch

    from froster_edge.model.clip import build_clip

    torch.manual_seed(seed)
    student = build_clip(model_cfg)
    teacher = build_clip(model_cfg)
    D = model_cfg["embed_dim"]
    state = {f"model.{k}": v for k, v in student.state_dict().items()}
    state.update({f"raw_model.{k}": v for k, v in teacher.state_dict().items()})
    # OpenAI state dicts carry these three non-parameters
    state.update({"model.input_resolution": torch.tensor(64), "model.context_length": torch.tensor(77),
                  "model.vocab_size": torch.tensor(49408)})
    for p in ("projector_v", "projector_t"):
        state[f"{p}.0.weight"] = torch.randn(D, D)
        state[f"{p}.2.weight"] = torch.randn(D, D) * 0.01
    ckpt = {"epoch": 22, "model_state": state, "optimizer_state": {"state": {}, "param_groups": []}, "cfg": PYSLOWFAST_CFG}
    return ckpt, student


# --- the command line ---------------------------------------------------------------------------------

def run_python(code: str, *, timeout: float = 120, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """`python -c CODE` in a fresh interpreter (this test process has torch loaded already);
    with `check`, it must exit 0."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=cwd)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def run(*args: str) -> subprocess.CompletedProcess:
    """`froster-edge ARGS` in a subprocess: for tests about the process itself (signals, kills, a fresh
    interpreter, stdout/stderr of a streaming run); everything else uses `cli`."""
    return subprocess.run([sys.executable, "-m", "froster_edge.cli", *args], capture_output=True, text=True, timeout=300)


@dataclass
class Result:
    """What `cli` saw: the exit code and everything written to stdout and stderr."""

    returncode: int
    stdout: str
    stderr: str


def cli(*args: str) -> Result:
    """`froster-edge ARGS` in this process, through the console entry point `froster_edge.cli.main`
    exactly as the console script calls it (sys.argv set, SystemExit caught), with file descriptors
    1 and 2 redirected to files, so what Python, rich/typer/click, logging handlers, C libraries and
    child processes write is all captured, as a subprocess's pipes would capture it. It saves a fresh
    interpreter's torch + open_clip import (seconds per call) and restores what a command may change
    in the process: sys.argv, __main__, the std streams, cwd, the environment, signal handlers, the logging
    configuration, warning filters and torch's thread count."""
    from froster_edge.cli import main

    saved = _ProcessState()
    outs = [tempfile.TemporaryFile(), tempfile.TemporaryFile()]
    for f in (sys.stdout, sys.stderr):
        f.flush()
    fds = [os.dup(1), os.dup(2)]
    code: int | str | None = 0
    try:
        os.dup2(outs[0].fileno(), 1)
        os.dup2(outs[1].fileno(), 2)
        sys.stdout, sys.stderr = (io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding="utf-8",
                                                   errors="backslashreplace", write_through=True) for fd in (1, 2))
        sys.argv = ["froster-edge", *args]
        sys.modules["__main__"] = types.ModuleType("__main__")  # a console script's: click names the program from argv[0]
        with warnings.catch_warnings():
            try:
                main()
            except SystemExit as e:
                code = e.code
    finally:
        for f in (sys.stdout, sys.stderr):
            f.flush()
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        for fd in fds:
            os.close(fd)
        saved.restore()
    text = [f.seek(0) or f.read().decode("utf-8", "backslashreplace") for f in outs]
    for f in outs:
        f.close()
    if isinstance(code, str):  # sys.exit("message"): the interpreter prints it on stderr and exits 1
        return Result(1, text[0], text[1] + code + "\n")
    return Result(code or 0, *text)


class _ProcessState:
    """The process-wide state a CLI command may change, saved to be restored after an in-process run."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE)

    def __init__(self):
        self.argv, self.stdout, self.stderr = sys.argv, sys.stdout, sys.stderr
        self.main = sys.modules["__main__"]
        self.cwd, self.environ = os.getcwd(), dict(os.environ)
        self.signals = {s: signal.getsignal(s) for s in self.SIGNALS}
        root = logging.getLogger()
        self.root = (root.level, list(root.handlers))
        self.loggers = {name: (lg.level, list(lg.handlers), lg.propagate, lg.disabled)
                        for name, lg in logging.Logger.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
        self.disable = logging.root.manager.disable
        torch = sys.modules.get("torch")
        self.threads = torch.get_num_threads() if torch else None

    def restore(self) -> None:
        sys.argv, sys.stdout, sys.stderr = self.argv, self.stdout, self.stderr
        sys.modules["__main__"] = self.main
        os.chdir(self.cwd)
        os.environ.clear()
        os.environ.update(self.environ)
        for s, handler in self.signals.items():
            if handler is not None and signal.getsignal(s) is not handler:
                signal.signal(s, handler)
        root = logging.getLogger()
        root.setLevel(self.root[0])
        root.handlers[:] = self.root[1]
        for name, lg in logging.Logger.manager.loggerDict.items():
            if isinstance(lg, logging.Logger):
                level, handlers, propagate, disabled = self.loggers.get(name, (logging.NOTSET, [], True, False))
                lg.setLevel(level)
                lg.handlers[:] = handlers
                lg.propagate, lg.disabled = propagate, disabled
        logging.disable(self.disable)
        torch = sys.modules.get("torch")
        if torch is not None and self.threads is not None and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)


def assert_one_line_error(proc: subprocess.CompletedProcess | Result, code: int, text: str) -> None:
    """Exit `code` and exactly one line on stderr that contains `text` (from `run` or `cli`)."""
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert text in lines[0], lines[0]


def train_cli(*args: str) -> tuple[int, str]:
    """`froster-edge train ARGS` in this process: (exit code, stderr)."""
    r = cli("train", *args)
    return r.returncode, r.stderr


class LiveRun:
    """`froster-edge run` in a subprocess, its JSON lines and stderr read as they come."""

    def __init__(self, *args: str, **popen):
        self.proc = subprocess.Popen([sys.executable, "-m", "froster_edge.cli", "run", *args, "--jsonl"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
        self.decisions: queue.Queue = queue.Queue()
        self.stderr: list[str] = []
        self.seen: list[dict] = []
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read_out(self) -> None:
        for line in self.proc.stdout:
            self.decisions.put(json.loads(line))

    def _read_err(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))

    def decision(self, timeout: float = 30.0) -> dict:
        try:
            d = self.decisions.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise AssertionError(f"no decision within {timeout} s; stderr: {self.stderr}") from None
        self.seen.append(d)
        return d

    def wait_stderr(self, text: str, timeout: float = 30.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            hits = [line for line in self.stderr if text in line]
            if hits:
                return hits[0]
            time.sleep(0.05)
        self.kill()
        raise AssertionError(f"{text!r} not on stderr within {timeout} s: {self.stderr}")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20.0) -> int:
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"no exit within {timeout} s of signal {sig}") from None
        time.sleep(0.1)  # the reader threads drain the pipes
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class Collect:
    """A decision sink that keeps every decision (pipeline tests)."""

    def __init__(self):
        self.decisions = []

    def emit(self, d):
        self.decisions.append(d)

    def close(self):
        pass


def sigkill(proc: subprocess.Popen) -> None:
    """Kill `proc` with SIGKILL (no clean-up code of its own runs) and check that this is how it ended."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the process ended by itself (exit {proc.returncode}) before the kill"


# --- the network --------------------------------------------------------------------------------------

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
    be taken as ffmpeg's one client. A server that already took its client (state 01 on its local
    port: a retrying runtime can connect between two polls, and ffmpeg then stops listening) counts."""
    end, hex_port = time.monotonic() + timeout, f":{port:04X}"
    while time.monotonic() < end:
        with open("/proc/net/tcp") as f:
            if any(cols[1].endswith(hex_port) and cols[3] in ("0A", "01") for cols in (line.split() for line in f)):
                return
        time.sleep(0.05)
    raise AssertionError(f"ffmpeg did not listen on port {port}")
