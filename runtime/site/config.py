"""A site file (`froster-edge run --config site.yaml`): named cameras and the sinks, from YAML.

Every key is checked before any camera opens; a bad one is one ConfigError naming the file and key.
The run's CLI options are the defaults under the file (`defaults:`, then each camera's keys); output
flags (--events, --clips, --metrics, --archive) replace the file's. SIGHUP reloads it (SiteReloader): changed
cameras restart while the others go on, a file that does not load is refused in one log line, and
other sections take effect at the next start.

See docs/site.md.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

import yaml

from ...config import check_fields
from ...errors import ConfigError
from .archive import ArchiveOptions
from .clips import ClipOptions
from .events import EventOptions
from ..source_url import read_password, with_camera_options
from ..options import BACKENDS, CameraOptions, ClassifierOptions, RunOptions, SamplingOptions, check_options

log = logging.getLogger(__name__)

CAMERA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # used in file names, metric labels, topics


@dataclass(frozen=True)
class MetricsOptions:
    """The Prometheus endpoint. Loopback by default; any other address needs a token (a file
    holding it, sent as `Authorization: Bearer ...`) or `insecure: true` said explicitly."""

    listen: str = "127.0.0.1:9108"
    token_file: Path | None = None
    insecure: bool = False


@dataclass
class Site:
    """What a run is made of beyond RunOptions: the sinks and their options."""

    bundle: Path | None = None
    run: RunOptions = field(default_factory=RunOptions)
    events: EventOptions | None = None  # None: no events (and no clips)
    camera_events: dict[str, EventOptions] = field(default_factory=dict)  # per-camera overrides
    clips: ClipOptions | None = None
    metrics: MetricsOptions | None = None
    mqtt: Any = None  # runtime/site/mqtt.py's MqttOptions (see _optional_section)
    http: Any = None  # the web view's HttpOptions
    archive: ArchiveOptions | None = None  # every decision's embedding kept for `froster-edge search`
    path: Path | None = None  # the site file, for reloads
    base: RunOptions | None = None  # the options the file was read over (the CLI's), for reloads


# --- value checks: each returns the value or raises with the key named ---

def _bad(where: str, what: str, value: Any) -> ConfigError:
    return ConfigError(f"{where} must be {what}, not {value!r}")


def _number(where: str, v: Any, low: float | None = None, high: float | None = None, positive: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _bad(where, "a number", v)
    if (positive and not v > 0) or (low is not None and v < low) or (high is not None and v > high):
        rng = "positive" if positive else f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise _bad(where, f"a number {rng}", v)
    return float(v)


def _int(where: str, v: Any, low: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise _bad(where, f"an integer >= {low}", v)
    return v


def _bool(where: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise _bad(where, "true or false", v)
    return v


def _str(where: str, v: Any) -> str:
    if not isinstance(v, (str, int)) or isinstance(v, bool) or str(v).strip() == "":
        raise _bad(where, "a non-empty string", v)
    return str(v)


def _strings(where: str, v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
        raise _bad(where, "a list of names", v)
    return tuple(v)


def _mapping(where: str, v: Any, known: dict[str, Any]) -> dict[str, Any]:
    """A section as a dict; unknown keys are refused, naming the closest known ones."""
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise _bad(where, "a mapping of keys", v)
    for key in v:
        if key not in known:
            raise ConfigError(f"unknown key {where + '.' if where else ''}{key} (known here: {', '.join(sorted(known))})")
    return v


def _path(base: Path, v: str) -> Path:
    p = Path(v).expanduser()
    return p if p.is_absolute() else base / p


# --- sections ---

SAMPLING_KEYS = {"hop": None, "sample_fps": None, "subsample": None}
CLASSIFIER_KEYS = {"threshold": None, "smoothing": None, "ema_alpha": None, "window": None, "top_k": None}
CAPTURE_KEYS = {"realtime": None, "loop": None}
EVENT_KEYS = {"enter": None, "exit": None, "enter_decisions": None, "exit_decisions": None, "labels": None}
CAMERA_KEYS = {"name": None, "source": None, "labels": None, "events": None, **SAMPLING_KEYS, **CAPTURE_KEYS,
               "threshold": None, "password_env": None, "password_file": None, "rtsp_transport": None}
TOP_KEYS = {"bundle": None, "backend": None, "labels": None, "defaults": None, "cameras": None, "events": None,
            "clips": None, "metrics": None, "mqtt": None, "http": None, "archive": None}


def _sampling(where: str, d: dict, base: SamplingOptions) -> SamplingOptions:
    s = base
    if "sample_fps" in d or "subsample" in d:
        s = replace(s, fps=None, subsample=None)  # one of the two replaces the other
    if "hop" in d:
        s = replace(s, hop=_int(f"{where}hop", d["hop"]))
    if "sample_fps" in d:
        s = replace(s, fps=_number(f"{where}sample_fps", d["sample_fps"], positive=True))
    if "subsample" in d:
        s = replace(s, subsample=_int(f"{where}subsample", d["subsample"]))
    if s.fps is not None and s.subsample is not None:
        raise ConfigError(f"{where}: give sample_fps or subsample, not both")
    return s


def _events(where: str, d: Any, base: EventOptions) -> EventOptions:
    d = _mapping(where, d, {**EVENT_KEYS, **({"file": None} if where == "events" else {})})
    e = base
    if "enter" in d:
        e = replace(e, enter=_number(f"{where}.enter", d["enter"], 0.0, 1.0))
    if "exit" in d:
        e = replace(e, exit=_number(f"{where}.exit", d["exit"], 0.0, 1.0))
    if "enter_decisions" in d:
        e = replace(e, enter_decisions=_int(f"{where}.enter_decisions", d["enter_decisions"]))
    if "exit_decisions" in d:
        e = replace(e, exit_decisions=_int(f"{where}.exit_decisions", d["exit_decisions"]))
    if "labels" in d:
        e = replace(e, labels=_strings(f"{where}.labels", d["labels"]))
    e.check(where)
    return e


def _file_section(name: str, cls: type, d: Any, base_dir: Path, path_key: str, what: str, ints: tuple[str, ...],
                  strs: tuple[str, ...] = ()) -> Any:
    """A section of one required path (relative to the site file) and numbers >= 0 (`ints`: integers
    >= 1; `strs`: strings), every key one of `cls`'s fields; the options checked by their own `check`."""
    d = _mapping(name, d, {f.name: None for f in fields(cls)})
    if path_key not in d:
        raise ConfigError(f"{name}.{path_key} is required ({what})")
    kw: dict[str, Any] = {path_key: _path(base_dir, _str(f"{name}.{path_key}", d[path_key]))}
    for key in d:
        if key in strs:
            kw[key] = _str(f"{name}.{key}", d[key])
        elif key != path_key:
            kw[key] = _int(f"{name}.{key}", d[key]) if key in ints else _number(f"{name}.{key}", d[key], low=0.0)
    options = cls(**kw)
    options.check()
    return options


def _clips(d: Any, base_dir: Path) -> ClipOptions:
    return _file_section("clips", ClipOptions, d, base_dir, "folder", "where event clips and snapshots go",
                         ints=("width", "queue"))


def _archive(d: Any, base_dir: Path) -> ArchiveOptions:
    return _file_section("archive", ArchiveOptions, d, base_dir, "file", "the SQLite file the decisions go to",
                         ints=("thumb_width", "queue"), strs=("encoding",))


def _metrics(d: Any, base_dir: Path) -> MetricsOptions:
    d = _mapping("metrics", d, {f.name: None for f in fields(MetricsOptions)})
    m = MetricsOptions()
    if "listen" in d:
        m = replace(m, listen=_str("metrics.listen", d["listen"]))
    if "token_file" in d:
        m = replace(m, token_file=_path(base_dir, _str("metrics.token_file", d["token_file"])))
    if "insecure" in d:
        m = replace(m, insecure=_bool("metrics.insecure", d["insecure"]))
    parse_listen(m.listen, "metrics.listen")
    return m


def parse_listen(text: str, where: str) -> tuple[str, int]:
    """HOST:PORT (or :PORT for loopback) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where} must be HOST:PORT (e.g. 127.0.0.1:9108), not {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _optional_section(name: str, d: Any) -> Any:
    """The `mqtt:` and `http:` sections, whose options belong to their sinks' modules
    (runtime/site/mqtt.py MqttOptions, the web view's HttpOptions): unknown keys and values of the
    wrong type (by the dataclass's type hints) are one line naming the key."""
    if d is None:
        return None
    module, cls = {"mqtt": ("mqtt", "MqttOptions"), "http": ("web", "HttpOptions")}[name]
    try:
        mod = __import__(f"{__package__}.{module}", fromlist=[cls])
        options_cls = getattr(mod, cls)
    except (ImportError, AttributeError):
        raise ConfigError(f"{name}: this froster-edge has no {name} sink yet (remove the section)") from None
    known = {f.name: None for f in fields(options_cls)}
    return options_cls(**check_fields(options_cls, _mapping(name, d, known), name))


def _camera(i: int, d: Any, base: RunOptions, base_dir: Path) -> tuple[CameraOptions, dict | None]:
    where = f"cameras[{i}]"
    d = _mapping(where, d, CAMERA_KEYS)
    for key in ("name", "source"):
        if key not in d:
            raise ConfigError(f"{where}.{key} is required")
    name = _str(f"{where}.name", d["name"])
    if not CAMERA_NAME.match(name):
        raise ConfigError(f"{where}.name {name!r}: use letters, digits, '-', '_' and '.' (it names files and metrics)")
    where = f"cameras[{name}]"
    source = _str(f"{where}.source", d["source"])
    sampling = _sampling(f"{where}.", d, base.sampling) if any(k in d for k in SAMPLING_KEYS) else None
    labels, table = None, None
    if "labels" in d:
        if isinstance(d["labels"], str):
            table = _path(base_dir, d["labels"])
        else:
            labels = _strings(f"{where}.labels", d["labels"])
    cam = CameraOptions(
        name=name, source=source if "://" in source or source.isdigit() or source.startswith("/")
        else str(_path(base_dir, source)), sampling=sampling,
        realtime=_bool(f"{where}.realtime", d["realtime"]) if "realtime" in d else None,
        loop=_bool(f"{where}.loop", d["loop"]) if "loop" in d else None,
        threshold=_number(f"{where}.threshold", d["threshold"], 0.0, 1.0) if "threshold" in d else None,
        labels=labels, table=table,
        password_env=_str(f"{where}.password_env", d["password_env"]) if "password_env" in d else None,
        password_file=_path(base_dir, _str(f"{where}.password_file", d["password_file"])) if "password_file" in d else None,
        rtsp_transport=_transport(f"{where}.rtsp_transport", d["rtsp_transport"]) if "rtsp_transport" in d else None)
    # credentials and transport checked with the file (the password is read again when the camera opens)
    with_camera_options(cam.source, read_password(where, cam.password_env, cam.password_file), cam.rtsp_transport, where)
    return cam, d.get("events")


def _transport(where: str, v: Any) -> str:
    if v not in ("tcp", "udp"):
        raise _bad(where, "tcp or udp", v)
    return v


def parse_site(doc: Any, base: RunOptions, base_dir: Path, path: Path | None = None) -> Site:
    """A loaded YAML document -> Site, every key checked."""
    d = _mapping("", doc, TOP_KEYS)
    run = replace(base, sources=[], cameras=[])
    if "backend" in d:
        backend = _str("backend", d["backend"])
        if backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        run = replace(run, backend=backend)
    if "labels" in d:
        run = replace(run, labels=_path(base_dir, _str("labels", d["labels"])))
    defaults = _mapping("defaults", d.get("defaults"), {**SAMPLING_KEYS, **CLASSIFIER_KEYS, **CAPTURE_KEYS})
    run = replace(run, sampling=_sampling("defaults.", defaults, run.sampling))
    c: ClassifierOptions = run.classifier
    if "threshold" in defaults:
        c = replace(c, threshold=_number("defaults.threshold", defaults["threshold"], 0.0, 1.0))
    if "smoothing" in defaults:
        if defaults["smoothing"] not in ("ema", "mean", "none"):
            raise _bad("defaults.smoothing", "ema, mean or none", defaults["smoothing"])
        c = replace(c, smoothing=defaults["smoothing"])
    if "ema_alpha" in defaults:
        c = replace(c, ema_alpha=_number("defaults.ema_alpha", defaults["ema_alpha"], 0.0, 1.0))
    for key in ("window", "top_k"):
        if key in defaults:
            c = replace(c, **{key: _int(f"defaults.{key}", defaults[key])})
    capture = run.capture
    for key in CAPTURE_KEYS:
        if key in defaults:
            capture = replace(capture, **{key: _bool(f"defaults.{key}", defaults[key])})
    run = replace(run, classifier=c, capture=capture)

    cams = d.get("cameras")
    if not isinstance(cams, list) or not cams:
        raise ConfigError("cameras must be a list of at least one camera (name and source each)")
    site = Site(run=run, path=path)
    events_raw = d.get("events")
    site.events = _events("events", events_raw, EventOptions()) if "events" in d else None
    if site.events is not None and isinstance(events_raw, dict) and "file" in events_raw:
        site.events = replace(site.events, file=_path(base_dir, _str("events.file", events_raw["file"])))
    for i, raw in enumerate(cams):
        cam, ev = _camera(i, raw, run, base_dir)
        if any(c.name == cam.name for c in run.cameras):
            raise ConfigError(f"cameras[{i}].name {cam.name!r} is given twice (each camera needs its own name)")
        run.cameras.append(cam)
        if ev is not None:
            site.camera_events[cam.name] = _events(f"cameras[{cam.name}].events", ev, site.events or EventOptions())
    if "bundle" in d:
        site.bundle = _path(base_dir, _str("bundle", d["bundle"]))
    if "clips" in d:
        site.clips = _clips(d["clips"], base_dir)
    if "metrics" in d:
        site.metrics = _metrics(d["metrics"], base_dir)
    if "archive" in d:
        site.archive = _archive(d["archive"], base_dir)
    site.mqtt = _optional_section("mqtt", d.get("mqtt"))
    site.http = _optional_section("http", d.get("http"))
    site.run = run
    check_options(run)
    return site


def load_site(path: Path, base: RunOptions) -> Site:
    """Read and check a site file; every problem is one ConfigError starting with the file's name."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror or e})") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{at} ({getattr(e, 'problem', None) or e})") from e
    try:
        site = parse_site(doc, base, path.parent, path)
        site.base = base
        return site
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e


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
                    archive: Path | None = None) -> Site:
    """The run's Site from the CLI: the site file read over the flags, then the output flags on top."""
    if config is not None:
        if options.sources:
            raise ConfigError("--source and --config: the cameras come from the site file (its cameras: list)")
        site = load_site(config, options)
    else:
        site = Site(run=options)
    site.bundle = bundle or site.bundle
    if site.bundle is None:
        raise ConfigError("give --bundle (or bundle: in the --config site file)")
    if events is not None:
        site.events = replace(site.events or EventOptions(), file=events)
    if clips is not None:
        site.clips = replace(site.clips, folder=clips) if site.clips else ClipOptions(folder=clips)
    if site.clips is not None and site.events is None:
        site.events = EventOptions()  # clips are of events: the default hysteresis
    if archive is not None:
        site.archive = replace(site.archive, file=archive) if site.archive else ArchiveOptions(file=archive)
    if metrics is not None:
        site.metrics = replace(site.metrics or MetricsOptions(), listen=metrics)
    if metrics_insecure:
        site.metrics = replace(site.metrics or MetricsOptions(), insecure=True)
    if site.metrics is not None:
        parse_listen(site.metrics.listen, "--metrics")
    return site
