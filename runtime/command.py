"""`froster-edge run` behind the CLI: sinks from the flags or the site file, the pipeline, stats at the end.

Every output destination is checked (`io.check_outputs`) before anything loads. From start to end
SIGINT and SIGTERM only ask the run to stop: threads stop, the recording is finished, stats are
printed and written, exit code 0. A source that failed during the run is the one error line after
the stats, exit 1. With a site file, SIGHUP reloads its cameras. Site services: events, clips, metrics, MQTT, the
web view and the archive (--archive). `prepare` holds every check that needs no model and opens no
camera; `check_request` is `run --check` (docs/site.md).

Signals are handled in runtime/signals.py. See docs/runtime.md and docs/robustness.md.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from ..bundle import manifest as mf
from ..errors import MissingCapability
from ..io import Output, atomic_write_json, check_outputs
from .options import RunOptions, camera_list
from .pipeline import Pipeline
from .signals import RunSignals
from .sinks import JsonlSink, RecordSink, ShowSink, TextSink, require_display
from .site.config import Site, SiteReloader, metrics_beside_web
from .site.events import EventOptions, EventSegmenter, JsonlEventSink, check_events_file
from .site.mqtt import MqttOptions, MqttSink, check_mqtt_options
from .site.web import HttpOptions, resolve_token, start_web
from .site.web.live import Hub
from .sources import SourceError, parse_source

log = logging.getLogger(__name__)


@dataclass
class RunRequest:
    bundle: Path
    options: RunOptions
    jsonl: bool = False
    show: bool = False
    record: Path | None = None
    stats_json: Path | None = None
    mqtt: MqttOptions | None = None
    site: Site | None = None  # events, clips, metrics; a site file (reloaded on SIGHUP)
    http: HttpOptions | None = None  # the web view, when asked for
    outputs: list[Output] = field(default_factory=list)  # more destinations to check at start (events, clips)


def run(req: RunRequest) -> dict:
    """Run until the sources end or a signal; returns the stats dict (raises SourceError after
    printing them when a source failed)."""
    stop = threading.Event()
    with RunSignals(stop) as signals:
        http = prepare(req)
        cameras = camera_list(req.options)
        names = [c.name for c in cameras]
        frame_sinks: list = []
        if req.record is not None:  # a stream's fps is known once the pipeline has opened it
            frame_sinks.append(RecordSink(req.record, len(cameras), lambda i: pipeline.stats.streams[i].fps))
        sinks: list = [JsonlSink() if req.jsonl else TextSink(len(cameras))]
        site = req.site or Site()
        check_outputs(run_outputs(req, [*sinks, *frame_sinks]) + site_outputs(site), run_inputs(req))
        segmenter, clips = _event_sinks(site, sinks, frame_sinks, lambda: pipeline, events_for_mqtt=req.mqtt is not None)
        event_files = [s for s in (segmenter.sinks if segmenter is not None else ()) if isinstance(s, JsonlEventSink)]
        signals.on_hangup.extend(s.reopen for s in event_files)  # a rotated events file is opened again
        hub = Hub(names, http) if http is not None else None
        if hub is not None:
            sinks.append(hub)
            frame_sinks.append(hub)
        archive = _archive_sink(site, req.bundle, sinks, frame_sinks, segmenter)
        pipeline = Pipeline(req.bundle, req.options, sinks, frame_sinks, stop=stop)
        if hub is not None and archive is not None:  # the page searches it
            hub.archive = archive.path
            hub.clips_dir = Path(site.clips.folder) if site.clips is not None else None
        web = None
        if req.show:
            frame_sinks.append(ShowSink(names, stop))
        if hub is not None and segmenter is not None:  # the page lists each camera's recent events
            segmenter.sinks.append(hub)
            hub.events_enabled = True
            hub.clips_dir = Path(site.clips.folder) if site.clips is not None else None
        mqtt = None
        if req.mqtt is not None:  # connects in the background: a broker that is down only delays delivery
            mqtt = MqttSink(req.mqtt, names, pipeline.camera_labels())
            sinks.append(mqtt)
            if segmenter is not None:
                segmenter.sinks.append(mqtt)  # event start/end messages
        reloader = None
        if site.path is not None:
            reloader = SiteReloader(site.path, site.base or req.options, pipeline,
                                    on_camera_events=(lambda d: setattr(segmenter, "per_camera", dict(d))) if segmenter else None)
            signals.on_hangup.append(reloader.request)
        pipeline.on_idle = idle_tick([reloader.poll if reloader else None, segmenter.poll if segmenter else None])
        metrics = web_metrics = None
        if site.metrics is not None:
            from .site.metrics import MetricsServer, RunCollector, exposition, registry_of

            collector = RunCollector(pipeline, segmenter, clips, reloader)
            if http is None:
                metrics = MetricsServer(site.metrics, collector)
                log.info(f"metrics on http://{metrics.address}/metrics")
            else:  # one port, one token: the web view's server answers /metrics
                registry = registry_of(collector)
                web_metrics = lambda: exposition(registry)  # noqa: E731
        try:
            if hub is not None and http is not None:
                web = start_web(pipeline, hub, http, metrics=web_metrics)
            stats = pipeline.run()
        finally:
            pipeline.backend.close()
            if mqtt is not None:
                mqtt.close()  # the pipeline closed it already unless opening a source failed
            if web is not None:
                web.close()
            if metrics is not None:
                metrics.close()
        if mqtt is not None:
            stats.info["mqtt"] = mqtt.stats()
        lost = sum(s.lost for s in event_files)
        if lost:
            stats.info["events_lost"] = lost
        if archive is not None:
            stats.info["archive"] = archive.stats()
        if signals.received:
            stats.info["interrupted"] = True
            stats.info["signals"] = signals.received
        result = stats.to_dict()
        if result.get("stdout_closed"):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second BrokenPipeError at exit
        if result.get("interrupted"):
            log.info("stopped")
        print(stats.table(), file=sys.stderr, flush=True)
        if req.stats_json is not None:
            atomic_write_json(req.stats_json, result)
    errors = pipeline.errors()
    if errors:
        raise SourceError("; ".join(errors))
    return result


def idle_tick(calls: list) -> Callable[[], None] | None:
    """The pipeline's one between-decisions hook calling each of `calls` (None ones left out)."""
    calls = [c for c in calls if c is not None]
    if not calls:
        return None

    def tick() -> None:
        for call in calls:
            call()

    return tick


def prepare(req: RunRequest):
    """Every check of a run's request that needs no model and opens no camera: the MQTT options,
    a display for --show, the web view's token rule, the metrics endpoint's token and address, and
    prometheus-client where metrics are asked for. Returns the web view's options (token resolved)."""
    site = req.site or Site()
    if req.mqtt is not None:
        check_mqtt_options(req.mqtt)
    if req.show:
        require_display()
    http = resolve_token(req.http) if req.http is not None else None
    if site.metrics is not None:
        try:  # prometheus-client only where metrics are asked for
            from .site.metrics import check_metrics
        except ImportError as e:
            raise MissingCapability(f"metrics need prometheus-client ({e.name} is not installed): "
                                    "pip install 'froster-edge[site]'") from e
        if http is None:
            check_metrics(site.metrics)
        else:
            metrics_beside_web(site.metrics, http)
    return http


def check_request(req: RunRequest) -> str:
    """`run --check`: everything checked before a run starts (prepare, the output destinations, the
    bundle's manifest), nothing loaded or opened; returns a one-line summary."""
    prepare(req)
    site = req.site or Site()
    check_outputs(run_outputs(req) + site_outputs(site), run_inputs(req))
    if site.events is not None and site.events.file is not None:
        check_events_file(Path(site.events.file))
    if site.clips is not None:
        from .site.clips import check_clips_folder  # cv2's module: only where clips are asked for

        check_clips_folder(site.clips)
    names = [c.name for c in camera_list(req.options)]
    parts = [name for name, on in (("events", site.events), ("clips", site.clips), ("metrics", site.metrics),
                                   ("mqtt", req.mqtt), ("web view", req.http)) if on is not None]
    return f"{len(names)} camera{'s' * (len(names) != 1)} ({', '.join(names)}); {', '.join(parts) or 'no site services'}"


def run_outputs(req: RunRequest, sinks: Iterable[object] = ()) -> list[Output]:
    """Every destination the run will write: --stats-json, the request's `outputs`, and each sink's
    `outputs` (a sink that writes files lists them there to be checked at start)."""
    outputs = [Output(req.stats_json, "--stats-json")] if req.stats_json is not None else []
    for sink in sinks:
        outputs.extend(getattr(sink, "outputs", ()))
    return [*outputs, *req.outputs]


def run_inputs(req: RunRequest) -> list[Path]:
    """What the run reads and no output may replace: source files, the label table, the bundle's
    files, the site file and every secret file its sections name (a token, a password)."""
    sources = [c.source for c in camera_list(req.options)]
    inputs = [Path(spec.target) for spec in map(parse_source, sources) if spec.kind == "file"]
    if req.options.labels is not None:
        inputs.append(Path(req.options.labels))
    site = req.site or Site()
    if site.path is not None:
        inputs.append(Path(site.path))
    for section in (site.metrics, site.mqtt, site.http, req.mqtt, req.http):
        inputs += [Path(value) for key, value in vars(section).items()
                   if key.endswith("_file") and value is not None] if hasattr(section, "__dict__") else []
    bundle = Path(req.bundle)
    manifest = mf.read_manifest(bundle)
    inputs += [bundle / mf.MANIFEST_FILE, *(bundle / name for name in manifest["files"])]
    return inputs


def site_outputs(site: Site) -> list[Output]:
    """The site's destinations, checked at start with the others: the events file, the clips folder."""
    outputs = []
    if site.events is not None and site.events.file is not None:
        outputs.append(Output(Path(site.events.file), "--events"))
    if site.clips is not None:
        outputs.append(Output(Path(site.clips.folder), "--clips", folder=True))
    if site.archive is not None:
        outputs.append(Output(Path(site.archive.file), "--archive"))
    return outputs


def _archive_sink(site: Site, bundle: Path, sinks: list, frame_sinks: list, segmenter):
    """The archive (a decision sink after the segmenter, so a decision that starts an event carries
    its id; an event sink for clip paths; a frame sink for thumbnails), or None."""
    if site.archive is None:
        return None
    from .site.archive import Archive

    model = mf.read_manifest(bundle)["model"]
    clips_dir = Path(site.clips.folder).resolve() if site.clips is not None else None
    archive = Archive(site.archive, model["fingerprint"], int(model["embed_dim"]), clips_dir)
    sinks.append(archive)
    if archive.options.thumb_every_s > 0:
        frame_sinks.append(archive)
    if segmenter is not None:
        segmenter.sinks.append(archive)
    return archive


def _event_sinks(site: Site, sinks: list, frame_sinks: list, pipeline_of, events_for_mqtt: bool = False) -> tuple:
    """The event segmenter (a decision sink) and its event sinks: the JSONL file, the clips (and,
    added by the caller, MQTT: with --mqtt, events are segmented by the defaults even without a file)."""
    if site.events is None and site.clips is None and not events_for_mqtt:
        return None, None
    events = site.events or EventOptions()
    event_sinks: list = []
    if events.file is not None:
        event_sinks.append(JsonlEventSink(events.file))
    clips = None
    if site.clips is not None:
        from .site.clips import EventClips

        clips = EventClips(site.clips, lambda i: pipeline_of().cameras[i].name,
                           lambda i: pipeline_of().stats.streams[i].fps)
        event_sinks.append(clips)
        frame_sinks.append(clips)
    segmenter = EventSegmenter(events, event_sinks, per_camera=site.camera_events)
    sinks.append(segmenter)
    return segmenter, clips

