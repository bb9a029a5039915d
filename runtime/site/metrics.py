"""Prometheus metrics of a run (prometheus-client), read from the run's own counters at scrape time.

Nothing is recorded per decision: a scrape reads RunStats and the event and clip writers' counters.
Names start with `froster_edge_`; per-camera series carry `camera` (and `stream`). The endpoint
binds 127.0.0.1 unless told otherwise; any other address needs a token (Bearer) or `insecure: true`.

Without a token only a loopback Host is answered; with the web view on, its server serves /metrics
(one port, one token). See docs/network.md and docs/site.md.
"""

from __future__ import annotations

import os
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, Iterator
from urllib.parse import urlsplit

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily

from ...errors import ConfigError
from .config import MetricsOptions
from .network import BoundedServer, check_token, is_loopback, read_token_file, refusal

TOKEN_ENV = "FROSTER_EDGE_METRICS_TOKEN"


def metrics_token(options: MetricsOptions) -> str | None:
    """The endpoint's token: from `token_file`, else $FROSTER_EDGE_METRICS_TOKEN; the one token rule."""
    if options.token_file is not None:
        return read_token_file(options.token_file, "metrics.token_file")
    if os.environ.get(TOKEN_ENV):
        return check_token(os.environ[TOKEN_ENV], f"${TOKEN_ENV}")
    return None


def check_metrics(options: MetricsOptions) -> tuple[str, int, str | None]:
    """(host, port, token) of a metrics endpoint of its own, checked before any camera opens."""
    host, port = options.address
    token = metrics_token(options)
    if not is_loopback(host) and token is None and not options.insecure:
        raise ConfigError(f"metrics on {host} (not loopback) needs a token: metrics.token_file (or "
                          f"{TOKEN_ENV}), or metrics.insecure: true / --metrics-insecure to serve it open")
    return host, port, token


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The registry's samples in Prometheus' text format, and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


def registry_of(collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


class RunCollector:
    """A prometheus-client collector over a Pipeline (and the optional event/clip/reload parts)."""

    def __init__(self, pipeline, segmenter=None, clips=None, reloader=None):
        self.pipeline, self.segmenter, self.clips, self.reloader = pipeline, segmenter, clips, reloader

    def collect(self) -> Iterator[Any]:
        stats = self.pipeline.stats
        # a camera a reload removed leaves the exposition: churn must not grow it without bound
        cams = [c for c in self.pipeline.cameras if not c.removed]
        labels = ["camera", "stream"]
        counters = {
            "frames_read": "Frames read from the source", "frames_dropped": "Frames replaced before use (live)",
            "frames_sampled": "Frames sampled into clips", "clips_skipped": "Clips replaced before the encoder took them",
            "decisions": "Decisions made", "reconnects": "Reconnections of a live source",
            "reconnect_attempts": "Tries to reconnect a live source, failed ones included",
            "outages": "Times the camera's stream went down"}
        families = {k: CounterMetricFamily(f"froster_edge_{k}", v, labels=labels) for k, v in counters.items()}
        up = GaugeMetricFamily("froster_edge_camera_up",
                               "1 while the camera's frames come, 0 while it is down or ended (a removed camera leaves)",
                               labels=labels)
        rate = GaugeMetricFamily("froster_edge_decisions_per_second", "Decisions per second since the camera started",
                                 labels=labels)
        # one summary: quantiles over the newest samples, count and sum over all (a `quantile` label on a gauge is
        # refused by promtool)
        summary = Metric("froster_edge_stage_seconds", "Stage latency: quantiles over the newest samples, count and "
                         "sum of all samples", "summary")
        now = time.monotonic()
        per_stream = stats.stream_summaries()
        for cam in cams:
            i = cam.index
            if i not in stats.streams:
                continue
            s, lv = stats.streams[i], [cam.name, str(i)]
            for key, family in families.items():
                family.add_metric(lv, getattr(s, key))
            up.add_metric(lv, 1.0 if (s.up and not s.ended) else 0.0)
            rate.add_metric(lv, s.decisions / max(now - stats.started, 1e-9))
            for stage, window in per_stream.get(i, {}).items():
                if not window.count:
                    continue
                key = {"camera": cam.name, "stream": str(i), "stage": stage}
                if window.samples:
                    q = np.percentile(np.asarray(window.samples), [50, 95, 99])
                    for name, value in zip(("0.5", "0.95", "0.99"), q, strict=False):
                        summary.add_sample("froster_edge_stage_seconds", {**key, "quantile": name}, float(value))
                summary.add_sample("froster_edge_stage_seconds_count", key, float(window.count))
                summary.add_sample("froster_edge_stage_seconds_sum", key, float(window.total))
        yield from families.values()
        yield from (up, rate, summary)
        encode = stats.stages["encode"]
        yield CounterMetricFamily("froster_edge_encoder_calls", "Encoder calls (all cameras batched)", value=stats.batches)
        enc = SummaryMetricFamily("froster_edge_encode_seconds", "Encoder call latency (all cameras)")
        enc.add_metric([], encode.count, encode.total)
        yield enc
        if self.segmenter is not None:
            ev = CounterMetricFamily("froster_edge_events", "Action events started", labels=["camera", "label"])
            present = {c.name for c in cams}
            for (camera, label), n in sorted(self.segmenter.counts.items()):
                if camera in present:
                    ev.add_metric([camera, label], n)
            yield ev
            yield GaugeMetricFamily("froster_edge_events_open", "Action events now open",
                                    value=len(self.segmenter.open_events()))
        if self.clips is not None:
            c = self.clips.counters
            for key, help_ in (("clips", "Event clips written"), ("snapshots", "Peak snapshots written"),
                               ("dropped_frames", "Clip frames dropped: the writer's queue was full"),
                               ("dropped_clips", "Event clips dropped: the writer's queue was full"),
                               ("errors", "Clip writing errors"), ("deleted", "Files deleted for the disk budget")):
                yield CounterMetricFamily(f"froster_edge_clip_{key}", help_, value=getattr(c, key))
            yield GaugeMetricFamily("froster_edge_clip_bytes", "Bytes of clips and snapshots on disk",
                                    value=c.bytes_on_disk)
        if self.reloader is not None:
            yield CounterMetricFamily("froster_edge_reloads", "Site file reloads applied", value=self.reloader.reloads)
            yield CounterMetricFamily("froster_edge_reloads_refused", "Site file reloads refused",
                                      value=self.reloader.refused)


class _MetricsHandler(BaseHTTPRequestHandler):
    """GET /metrics behind the network layer's request check; nothing else is served."""

    endpoint: "MetricsServer"
    server_version = "froster-edge"
    sys_version = ""

    def log_message(self, format: str, *args) -> None:  # the run's stderr is for the run
        pass

    def do_GET(self) -> None:
        problem = None if self.endpoint.open else refusal(self.endpoint.token, self.headers)
        if problem is not None:
            self._send(problem[0], problem[1].encode() + b"\n", "text/plain", {"WWW-Authenticate": "Bearer"})
        elif urlsplit(self.path).path != "/metrics":
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
        else:
            body, kind = exposition(self.endpoint.registry)
            self._send(HTTPStatus.OK, body, kind)

    def _send(self, status: int, body: bytes, kind: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


class MetricsServer:
    """The /metrics endpoint of its own (the web view is off) on its own threads; `close()` stops it.
    Connections are capped and time out (network.BoundedServer), like the web view's."""

    MAX_CONNECTIONS = 32
    TIMEOUT_S = 10.0

    def __init__(self, options: MetricsOptions, collector: RunCollector):
        host, port, self.token = check_metrics(options)
        self.open = options.insecure and self.token is None  # served to any Host on purpose
        self.registry = registry_of(collector)
        handler = type("Handler", (_MetricsHandler,), {"endpoint": self})
        try:
            self.server = BoundedServer((host, port), handler, self.MAX_CONNECTIONS, self.TIMEOUT_S)
        except OSError as e:
            raise ConfigError(f"metrics: cannot listen on {host}:{port} ({e.strerror or e})") from e
        self.address = f"{host}:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
