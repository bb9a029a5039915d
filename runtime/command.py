"""`froster-edge run` behind the CLI: sinks from the flags or the site file, the pipeline, stats at the end.

With a site (runtime/site.py): action events (--events), event clips (--clips), the metrics
endpoint (--metrics) and, with a site file, SIGHUP reloading its cameras.

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

from ..errors import MissingCapability
from ..io import atomic_write_json
from .events import EventOptions, EventSegmenter, JsonlEventSink
from .options import RunOptions, camera_list
from .pipeline import Pipeline, stderr
from .site import Site, SiteReloader
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
    site: Site | None = None  # events, clips, metrics; a site file (reloaded on SIGHUP)
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
        frame_sinks.append(RecordSink(req.record, len(camera_list(req.options)), lambda i: pipeline.stats.streams[i].fps))
    sinks: list = [JsonlSink() if req.jsonl else TextSink(len(camera_list(req.options)))]
    site = req.site or Site()
    segmenter, clips = _event_sinks(site, sinks, frame_sinks, lambda: pipeline)
    hub = Hub([c.name for c in camera_list(req.options)], http) if http is not None else None
    if hub is not None:
        sinks.append(hub)
        frame_sinks.append(hub)
    pipeline = Pipeline(req.bundle, req.options, sinks, frame_sinks, stop=stop)
    web = None
    if req.show:
        frame_sinks.append(ShowSink([c.name for c in camera_list(req.options)], stop))
    reloader = None
    if site.path is not None:
        reloader = SiteReloader(site.path, site.base or req.options, pipeline, stderr,
                                on_camera_events=(lambda d: setattr(segmenter, "per_camera", dict(d))) if segmenter else None)
        pipeline.on_idle = reloader.poll
        reloader.install()
    metrics = None
    if site.metrics is not None:
        try:  # prometheus-client only where metrics are asked for
            from .metrics import MetricsServer, RunCollector
        except ImportError as e:
            raise MissingCapability(f"metrics need prometheus-client ({e.name} is not installed): "
                                    "pip install 'froster-edge[site]'") from e

        metrics = MetricsServer(site.metrics, RunCollector(pipeline, segmenter, clips, reloader))
        stderr(f"metrics on http://{metrics.address}/metrics")
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
        if reloader is not None:
            reloader.uninstall()
        if metrics is not None:
            metrics.close()
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


def _event_sinks(site: Site, sinks: list, frame_sinks: list, pipeline_of) -> tuple:
    """The event segmenter (a decision sink) and its event sinks: the JSONL file, the clips."""
    if site.events is None and site.clips is None:
        return None, None
    events = site.events or EventOptions()
    event_sinks: list = []
    if events.file is not None:
        event_sinks.append(JsonlEventSink(events.file))
    clips = None
    if site.clips is not None:
        from .clips import EventClips

        clips = EventClips(site.clips, lambda i: pipeline_of().cameras[i].name,
                           lambda i: pipeline_of().stats.streams[i].fps, stderr)
        event_sinks.append(clips)
        frame_sinks.append(clips)
    segmenter = EventSegmenter(events, event_sinks, clip_names=clips is not None, per_camera=site.camera_events)
    sinks.append(segmenter)
    return segmenter, clips


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
