"""`froster-edge run` behind the CLI: sinks from the flags, the pipeline, stats at the end.

Ctrl-C (SIGINT) and SIGTERM stop the run cleanly: threads are stopped, the recording is
finished, the stats are printed (stderr) and written (--stats-json), and the exit code is 0.
A source that failed during the run (a corrupt file) is reported after the stats as the one
error line, exit code 1.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from ..io import atomic_write_json
from .options import RunOptions, camera_list
from .pipeline import Pipeline, stderr
from .sinks import JsonlSink, RecordSink, ShowSink, TextSink, require_display
from .sources import SourceError


@dataclass
class RunRequest:
    bundle: Path
    options: RunOptions
    jsonl: bool = False
    show: bool = False
    record: Path | None = None
    stats_json: Path | None = None


def run(req: RunRequest) -> dict:
    """Run until the sources end or a signal; returns the stats dict (raises SourceError after
    printing them when a source failed)."""
    stop = threading.Event()
    if req.show:
        require_display()  # before any loading: a missing display is said at once
    frame_sinks: list = []
    if req.record is not None:  # a stream's fps is known once the pipeline has opened it
        frame_sinks.append(RecordSink(req.record, len(camera_list(req.options)), lambda i: pipeline.stats.streams[i].fps))
    sinks = [JsonlSink() if req.jsonl else TextSink(len(req.options.sources))]
    pipeline = Pipeline(req.bundle, req.options, sinks, frame_sinks, stop=stop)
    if req.show:
        frame_sinks.append(ShowSink(list(req.options.sources), stop))
    # SIGINT too: a process started in the background by a non-interactive shell inherits SIGINT
    # ignored, and `kill -INT` must still stop it cleanly with its stats
    previous = ({sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
                if threading.current_thread() is threading.main_thread() else {})
    try:
        stats = pipeline.run()
    finally:
        pipeline.backend.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    result = stats.to_dict()
    if result.get("stdout_closed"):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second BrokenPipeError at exit
    if result.get("interrupted"):
        stderr("stopped")
    print(stats.table(), file=sys.stderr, flush=True)
    if req.stats_json is not None:
        atomic_write_json(req.stats_json, result)
    errors = pipeline.errors()
    if errors:
        raise SourceError("; ".join(errors))
    return result


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
