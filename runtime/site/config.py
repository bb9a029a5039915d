"""A site file (`froster-edge run --config site.yaml`): named cameras and the sinks, from YAML.

The file is read by the project's YAML 1.2 loader and checked as a `SiteFile` (strict models,
froster_edge/schema.py), every key and cross-field rule, before any camera opens: a problem is one
ConfigError line naming the file and the key path. The run's CLI options are the defaults under the
file (`defaults:`, then each camera's keys); the output and address flags (--events, --clips,
--metrics, --http, --http-token, --mqtt) change single fields of the file's sections. SIGHUP
reloads it (SiteReloader): changed cameras restart while the others go on, a file that does not
load is refused in one log line, and other sections take effect at the next start.
`examples/site-reference.yaml` is generated from these models (`reference_site()`).

See docs/site.md.

See docs/site.md.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ...errors import ConfigError, shorten
from ...io import read_yaml
from ...schema import FilePath, Model, Name, Text, check_name, updated, validate
from ..options import BackendName, CameraOptions, ClassifierOptions, RunOptions, SamplingOptions, camera_index, check_options
from ..source_url import read_password, with_camera_options
from .archive import ArchiveOptions
from .clips import ClipOptions
from .events import EventOptions
from .mqtt import MqttOptions
from .mqtt import parse_address as mqtt_address
from .network import LOOPBACK, parse_address, reason
from .web.options import HttpOptions

log = logging.getLogger(__name__)

CAMERA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # used (fullmatch) in file names, metric labels, topics
METRICS_PORT = 9108
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Count = Annotated[int, Field(ge=1)]
Rate = Annotated[float, Field(gt=0)]


class MetricsOptions(Model):
    """The Prometheus endpoint. Loopback by default; any other address needs a token (a file
    holding it, sent as `Authorization: Bearer ...`) or `insecure: true` said explicitly. With the
    web view on, /metrics is served by the web view's server (one port, one token) instead."""

    listen: Text | None = Field(None, description="HOST:PORT; left out: 127.0.0.1:9108, or the web view's address when it is on")
    token_file: FilePath | None = Field(None, description="a file holding the token; left out: $FROSTER_EDGE_METRICS_TOKEN")
    insecure: bool = False

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_address(value, "listen", listen=True)
            except ConfigError as e:
                raise reason(e, "listen") from None
        return value

    @property
    def address(self) -> tuple[str, int]:
        host, port = parse_address(self.listen or f"{LOOPBACK}:{METRICS_PORT}", "metrics.listen", listen=True)
        return host, int(port or 0)


class Sampling(Model):
    """Keys that change which frames a camera samples (the defaults' and each camera's)."""

    hop: Count | None = None
    sample_fps: Rate | None = None
    subsample: Count | None = None

    @model_validator(mode="after")
    def _one_rate(self) -> "Sampling":
        if self.sample_fps is not None and self.subsample is not None:
            raise ValueError("give sample_fps or subsample, not both")
        return self

    def over(self, base: SamplingOptions) -> SamplingOptions:
        s = base
        if self.sample_fps is not None or self.subsample is not None:  # one of the two replaces the other
            s = replace(s, fps=self.sample_fps, subsample=self.subsample)
        return replace(s, hop=self.hop) if self.hop is not None else s


class Defaults(Sampling):
    """`defaults:`: every camera's values unless it says otherwise (over the CLI's run flags)."""

    threshold: Probability | None = None
    smoothing: Literal["ema", "mean", "none"] | None = None
    ema_alpha: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    window: Count | None = None
    top_k: Count | None = None
    realtime: bool | None = None
    loop: bool | None = None


class CameraEvents(Model):
    """A camera's own hysteresis over the site's `events:` (the same keys, no file)."""

    enter: Probability | None = None
    exit: Probability | None = None
    enter_decisions: Count | None = None
    exit_decisions: Count | None = None
    labels: Annotated[tuple[Name, ...], Field(min_length=1)] | None = None

    @field_validator("labels", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    def over(self, base: EventOptions, where: str) -> EventOptions:
        return updated(base, where, **self.model_dump(exclude_none=True))


class Camera(Sampling):
    """One camera: a name (it names files, metric labels and topics) and a source."""

    name: Text = Field(description="1 to 64 letters, digits, -, _ and .")
    source: Any = Field(description="a camera index (0..1023), a video file or an rtsp://, http:// ... URL")
    labels: Any = Field(None, description="a label table (labels.npz) of its own, or a list of the classes it tells apart")
    events: CameraEvents | None = None
    threshold: Probability | None = None
    realtime: bool | None = None
    loop: bool | None = None
    password_env: Text | None = Field(None, description="the source's password from this environment variable")
    password_file: FilePath | None = Field(None, description="or from this file's first line")
    rtsp_transport: Literal["tcp", "udp"] | None = Field(None, description="rtsp:// only; left out: TCP")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not CAMERA_NAME.fullmatch(value):
            raise ValueError("use 1 to 64 letters, digits, '-', '_' and '.' (it names files, metrics and topics)")
        return value

    @field_validator("source")
    @classmethod
    def _source(cls, value: Any, info: ValidationInfo) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.strip() or value != value.strip() or "\n" in value or "\x00" in value:
            raise ValueError("must be a camera index, a video file or a URL")
        try:
            camera_index(value)
        except ConfigError as e:
            raise reason(e, "source") from None
        if "://" in value or value.isdigit() or value.startswith("/"):
            return value
        base = (info.context or {}).get("base")
        return str(base / value) if base is not None else value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and value.strip():
            path = Path(value).expanduser()
            base = (info.context or {}).get("base")
            return path if path.is_absolute() or base is None else base / path
        if isinstance(value, list) and value:
            return _names(value)
        raise ValueError("must be a label table (a labels.npz path) or a non-empty list of class names")


def _names(values: list[Any]) -> tuple[str, ...]:
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise ValueError(f"[{i}] must be a class name (a text), not {shorten(repr(value))}")
        try:
            check_name(value)
        except ValueError as e:
            raise ValueError(f"[{i}] {e}, not {shorten(repr(value))}") from None
    return tuple(values)


class SiteFile(Model):
    """The site file as written: every key of every section (docs/site.md)."""

    bundle: FilePath | None = None
    backend: BackendName = "auto"
    labels: FilePath | None = None
    defaults: Defaults | None = None
    cameras: Annotated[list[Camera], Field(min_length=1)]
    events: EventOptions | None = None
    clips: ClipOptions | None = None
    metrics: MetricsOptions | None = None
    mqtt: MqttOptions | None = None
    http: HttpOptions | None = None
    archive: ArchiveOptions | None = None

    @model_validator(mode="after")
    def _across(self) -> "SiteFile":
        names = [c.name for c in self.cameras]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"cameras[{i}].name {name!r} is given twice (each camera needs its own name)")
        try:
            for i, cam in enumerate(self.cameras):
                if cam.events is not None:
                    cam.events.over(self.events or EventOptions(), f"cameras[{i}].events")
            if self.http is not None and self.metrics is not None:
                metrics_beside_web(self.metrics, self.http)
        except ConfigError as e:
            raise ValueError(str(e)) from None
        return self


REFERENCE_EXAMPLES = {
    "bundle": "../runs/demo-bundle",
    "cameras[].name": "yard",
    "cameras[].source": "clips/stgcn_clean_and_jerk.mp4",
    "clips.folder": "../runs/clips",
    "archive.file": "../runs/site.db",
}


def reference_site() -> str:
    """examples/site-reference.yaml: every key of the site file with its default, generated from
    SiteFile (a test keeps the file equal to this)."""
    from ...schema import reference_yaml

    return ("# Every key of a site file (froster-edge run --config FILE), generated from the models in\n"
            "# runtime/site/config.py; docs/site.md says what each does. Values are the defaults; a key shown as a\n"
            "# comment is left out by default. Relative paths are relative to the file.\n"
            + reference_yaml(SiteFile, REFERENCE_EXAMPLES) + "\n")


def metrics_beside_web(metrics: MetricsOptions, http: HttpOptions, where: str = "metrics.listen") -> None:
    """With the web view on, /metrics is on its server (one port, one auth): a metrics address of
    its own or a token of its own would be a second one, and is refused. `where`: what gave the
    address (the file's key or the flag)."""
    if metrics.listen is not None and metrics.address != (http.host, http.port):
        raise ConfigError(f"{where}: with the web view on, /metrics is served on its address ({http.host}:{http.port}), "
                          f"not {metrics.listen}: leave the metrics address out or give the same one")
    if metrics.token_file is not None or metrics.insecure:
        raise ConfigError("metrics: with the web view on, /metrics uses the web view's token: leave metrics.token_file, "
                          "metrics.insecure and --metrics-insecure out")


@dataclass
class Site:
    """What a run is made of beyond RunOptions: the sinks and their options."""

    bundle: Path | None = None
    run: RunOptions = field(default_factory=RunOptions)
    events: EventOptions | None = None  # None: no events (and no clips)
    camera_events: dict[str, EventOptions] = field(default_factory=dict)  # per-camera overrides
    clips: ClipOptions | None = None
    metrics: MetricsOptions | None = None
    mqtt: MqttOptions | None = None
    http: HttpOptions | None = None  # the web view
    archive: ArchiveOptions | None = None  # every decision's embedding kept for `froster-edge search`
    path: Path | None = None  # the site file, for reloads
    base: RunOptions | None = None  # the options the file was read over (the CLI's), for reloads


def site_of(doc: SiteFile, base: RunOptions, path: Path | None = None) -> Site:
    """A checked site file over the CLI's run options -> the run's Site."""
    d = doc.defaults or Defaults()
    c = base.classifier
    run = replace(
        base, sources=[], cameras=[], backend=doc.backend, labels=doc.labels or base.labels,
        sampling=d.over(base.sampling),
        capture=replace(base.capture, **{k: getattr(d, k) for k in ("realtime", "loop") if getattr(d, k) is not None}),
        classifier=ClassifierOptions(**{**c.__dict__, **d.model_dump(include=set(c.__dict__), exclude_none=True)}))
    site = Site(run=run, path=path, bundle=doc.bundle, events=doc.events, clips=doc.clips, metrics=doc.metrics,
                mqtt=doc.mqtt, http=doc.http, archive=doc.archive)
    for i, cam in enumerate(doc.cameras):
        sampling = cam.over(run.sampling) if cam.model_fields_set & {"hop", "sample_fps", "subsample"} else None
        table, labels = (cam.labels, None) if isinstance(cam.labels, Path) else (None, cam.labels)
        options = CameraOptions(name=cam.name, source=cam.source, sampling=sampling, realtime=cam.realtime,
                                loop=cam.loop, threshold=cam.threshold, labels=labels, table=table,
                                password_env=cam.password_env, password_file=cam.password_file,
                                rtsp_transport=cam.rtsp_transport)
        # credentials and transport checked with the file (the password is read again when the camera opens)
        where = f"cameras[{i}]"
        with_camera_options(options.source, read_password(where, options.password_env, options.password_file),
                            options.rtsp_transport, where)
        run.cameras.append(options)
        if cam.events is not None:
            site.camera_events[cam.name] = cam.events.over(site.events or EventOptions(), f"cameras[{i}].events")
    if site.clips is not None and site.events is None:
        site.events = EventOptions()  # clips are of events: the default hysteresis
    check_options(run)
    return site


def load_site(path: Path, base: RunOptions) -> Site:
    """Read and check a site file; every problem is one ConfigError starting with the file's name."""
    path = Path(path)
    doc = validate(SiteFile, read_yaml(path, "site file"), path, base=path.parent)
    try:
        site = site_of(doc, base, path)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e
    site.base = base
    return site


class SiteReloader:
    """SIGHUP -> reload the site file between two decisions (Pipeline.on_idle): cameras added,
    removed or changed are applied; a bad file is refused in one log line and the site kept."""

    def __init__(self, path: Path, base: RunOptions, pipeline,
                 on_camera_events: Callable[[dict[str, EventOptions]], None] | None = None):
        self.path, self.base, self.pipeline = Path(path), base, pipeline
        self.on_camera_events = on_camera_events
        self.requested = threading.Event()
        self.reloads = 0
        self.refused = 0

    def request(self) -> None:
        """Ask for a reload at the next poll (the run's SIGHUP watcher calls this, never a handler)."""
        self.requested.set()

    def poll(self) -> None:
        if self.requested.is_set():
            self.requested.clear()
            self.reload()

    def reload(self) -> None:
        try:
            site = load_site(self.path, self.base)
            wanted = {c.name: c for c in site.run.cameras}
            running = self.pipeline.running_cameras()
            add = [c for n, c in wanted.items() if n not in running or running[n] != c]
            for cam in add:  # every new camera's source, labels and sampling checked before any change
                self.pipeline.prepare(cam)
        except ConfigError as e:
            self.refused += 1
            log.warning(f"reload: refused ({e}); the running site is kept")
            return
        remove = [n for n, c in running.items() if n not in wanted or wanted[n] != c]
        for name in remove:
            self.pipeline.remove_camera(name)
        if self.on_camera_events is not None:
            self.on_camera_events(site.camera_events)
        added = [c.name for c in add if self.pipeline.add_camera(c)]
        self.reloads += 1
        kept = sorted(set(running) & set(wanted) - set(remove))
        log.info(f"reload: {self.path}: added {', '.join(added) or 'none'}; removed "
                 f"{', '.join(n for n in remove if n not in wanted) or 'none'}; changed "
                 f"{', '.join(n for n in remove if n in wanted) or 'none'}; kept {', '.join(kept) or 'none'} "
                 "(sections other than cameras take effect at the next start)")


def site_from_flags(options: RunOptions, bundle: Path | None, config: Path | None, events: Path | None = None,
                    clips: Path | None = None, metrics: str | None = None, metrics_insecure: bool = False,
                    http: str | None = None, http_token: str | None = None, mqtt: str | None = None,
                    archive: Path | None = None) -> Site:
    """The run's Site from the CLI: the site file read over the run flags, then each output and
    address flag changing its one field of the file's section (the section's other keys kept)."""
    if config is not None:
        if options.sources:
            raise ConfigError("--source and --config: the cameras come from the site file (its cameras: list)")
        site = load_site(config, options)
    else:
        check_options(options)
        site = Site(run=options)
    site.bundle = bundle or site.bundle
    if site.bundle is None:
        raise ConfigError("give --bundle (or bundle: in the --config site file)")
    if events is not None:
        site.events = updated(site.events or EventOptions(), "--events", file=events)
    if clips is not None:
        site.clips = updated(site.clips, "--clips", folder=clips) if site.clips else ClipOptions(folder=clips)
    if site.clips is not None and site.events is None:
        site.events = EventOptions()  # clips are of events: the default hysteresis
    if archive is not None:
        site.archive = updated(site.archive, "--archive", file=archive) if site.archive else ArchiveOptions(file=archive)
    if metrics is not None:
        parse_address(metrics, "--metrics", listen=True)
        site.metrics = updated(site.metrics or MetricsOptions(), "--metrics", listen=metrics)
    if metrics_insecure:
        site.metrics = updated(site.metrics or MetricsOptions(), "--metrics-insecure", insecure=True)
    if http is not None:
        from .web.options import parse_listen

        host, port = parse_listen(http)
        site.http = updated(site.http or HttpOptions(), "--http", host=host, port=port)
    if http_token is not None:
        if site.http is None:
            raise ConfigError("--http-token needs --http HOST:PORT (or http: in the site file)")
        site.http = updated(site.http or HttpOptions(), "--http-token", token=http_token)
    if mqtt is not None:
        host, port = mqtt_address(mqtt)
        site.mqtt = updated(site.mqtt or MqttOptions(), "--mqtt", host=host, port=port)
    if site.http is not None and site.metrics is not None:
        metrics_beside_web(site.metrics, site.http, "metrics.listen" if metrics is None else "--metrics")
    return site
