"""helpers.cli, the in-process CLI runner most command tests use: it must see what a user's shell
sees from the console script (exit code, stdout, stderr), and leave this process as it found it."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import cli


def test_in_process_runs_see_what_the_console_script_shows(tmp_path):
    script = Path(sys.executable).parent / "froster-edge"
    if not script.is_file():
        pytest.skip(f"no console script next to {sys.executable}: the package is not installed in this environment")
    # a one-line error (exit 1) and a usage error from click (exit 2), on the torch-free `run` command
    for args, code in ((["run", "--source", str(tmp_path / "x.mp4")], 1),
                       (["run", "--bundle", str(tmp_path), "--source", "x.mp4", "--backend", "gpu"], 2)):
        here = cli(*args)
        there = subprocess.run([str(script), *args], capture_output=True, text=True, timeout=120)
        assert (here.returncode, here.stdout, here.stderr) == (there.returncode, there.stdout, there.stderr)
        assert here.returncode == code and "froster-edge" in here.stderr


def test_everything_a_command_writes_is_captured_and_the_process_state_is_restored(monkeypatch, tmp_path):
    def command():
        print("python out")
        print("python err", file=sys.stderr)
        os.write(1, b"fd out\n")  # what a C library writes
        os.write(2, b"fd err\n")
        subprocess.run(["sh", "-c", "echo child out; echo child err >&2"], check=True)  # ffmpeg, workers
        logging.getLogger().addHandler(logging.StreamHandler())  # bound to the captured stderr
        logging.getLogger().setLevel(logging.DEBUG)
        logging.getLogger("froster_edge.x").setLevel(logging.CRITICAL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        os.environ["FROSTER_EDGE_CLI_RUNNER_TEST"] = "1"
        os.chdir(tmp_path)
        sys.exit(4)

    monkeypatch.setattr("froster_edge.cli.base.app", command)
    before = (sys.stdout, sys.stderr, list(sys.argv), os.getcwd(), signal.getsignal(signal.SIGINT),
              list(logging.getLogger().handlers), logging.getLogger().level)
    result = cli("anything")
    assert result.returncode == 4
    assert result.stdout.splitlines() == ["python out", "fd out", "child out"]
    assert result.stderr.splitlines() == ["python err", "fd err", "child err"]
    after = (sys.stdout, sys.stderr, list(sys.argv), os.getcwd(), signal.getsignal(signal.SIGINT),
             list(logging.getLogger().handlers), logging.getLogger().level)
    assert after == before
    assert logging.getLogger("froster_edge.x").level == logging.NOTSET
    assert "FROSTER_EDGE_CLI_RUNNER_TEST" not in os.environ
