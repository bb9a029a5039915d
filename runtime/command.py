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
from .options import RunOptions
from .pipeline import Pipeline, stderr
from .sinks import JsonlSink, RecordSink, ShowSink, TextSink, require_display
from .sources import SourceError
from .web import HttpOptions, resolve_token, start_web
from .web.hub import Hub


@dataclass
class RunRequest:
    bundle: Path
    options: RunOptions
    jsonl: bool = False
    show: bool = False
    record: Path | None = None
    stats_json: Path | None = None
    http: HttpOptions | None = None  # the web view, when asked for


def run(req: RunRequest) -> dict:
    """Run until the sources end or a signal; returns the stats dict (raises SourceError after
    printing them when a source failed)."""
    stop = threading.Event()
    if req.show:
        require_display()  # before any loading: a missing display is said at once
    http = resolve_token(req.http) if req.http is not None else None  # likewise a missing token
    frame_sinks: list = []
    if req.record is not None:  # a stream's fps is known once the pipeline has opened it
        frame_sinks.append(RecordSink(req.record, len(req.options.sources), lambda i: pipeline.stats.streams[i].fps))
    sinks = [JsonlSink() if req.jsonl else TextSink(len(req.options.sources))]
    hub = Hub(list(req.options.sources), http) if http is not None else None
    if hub is not None:
        sinks.append(hub)
        frame_sinks.append(hub)
    pipeline = Pipeline(req.bundle, req.options, sinks, frame_sinks, stop=stop)
    web = None
    if req.show:
        frame_sinks.append(ShowSink(list(req.options.sources), stop))
    # SIGINT too: a process started in the background by a non-interactive shell inherits SIGINT
    # ignored, and `kill -INT` must still stop it cleanly with its stats
    previous = ({sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
                if threading.current_thread() is threading.main_thread() else {})
    try:
        if hub is not None and http is not None:
            web = start_web(pipeline, hub, http, stderr)
        stats = pipeline.run()
    finally:
        pipeline.backend.close()
        if web is not None:
            web.close()
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
