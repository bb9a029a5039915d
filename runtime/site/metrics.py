"""Prometheus metrics of a run (prometheus-client), read from the run's own counters at scrape time.

Nothing is recorded per decision: a scrape reads RunStats and the event and clip writers' counters.
Names start with `froster_edge_`; per-camera series carry `camera` (and `stream`). The endpoint
binds 127.0.0.1 unless told otherwise; any other address needs a token (Bearer) or `insecure: true`.

See docs/site.md.
"""

from __future__ import annotations

import hmac
import os
import threading
import time
from typing import Any, Iterator
from wsgiref.simple_server import make_server

import numpy as np
from prometheus_client import make_wsgi_app
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler

from ...errors import ConfigError
from .config import MetricsOptions, parse_listen
from .web.options import is_loopback

TOKEN_ENV = "FROSTER_EDGE_METRICS_TOKEN"


def read_token(options: MetricsOptions) -> str | None:
    if options.token_file is not None:
        try:
            token = options.token_file.read_text().strip()
        except OSError as e:
            raise ConfigError(f"metrics token file {options.token_file} cannot be read ({e.strerror or e})") from e
        if len(token) < 16:
            raise ConfigError(f"metrics token in {options.token_file} is shorter than 16 characters")
        return token
    return os.environ.get(TOKEN_ENV) or None


class RunCollector:
    """A prometheus-client collector over a Pipeline (and the optional event/clip/reload parts)."""

    def __init__(self, pipeline, segmenter=None, clips=None, reloader=None):
        self.pipeline, self.segmenter, self.clips, self.reloader = pipeline, segmenter, clips, reloader

    def collect(self) -> Iterator[Any]:
        stats = self.pipeline.stats
        cams = list(self.pipeline.cameras)
        labels = ["camera", "stream"]
        counters = {
            "frames_read": "Frames read from the source", "frames_dropped": "Frames replaced before use (live)",
            "frames_sampled": "Frames sampled into clips", "clips_skipped": "Clips replaced before the encoder took them",
            "decisions": "Decisions made", "reconnects": "Reconnections of a live source",
            "reconnect_attempts": "Tries to reconnect a live source, failed ones included",
            "outages": "Times the camera's stream went down"}
        families = {k: CounterMetricFamily(f"froster_edge_{k}", v, labels=labels) for k, v in counters.items()}
        up = GaugeMetricFamily("froster_edge_camera_up", "1 while the camera's frames come, 0 while it is down or gone",
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
            if i >= len(stats.streams):
                continue
            s, lv = stats.streams[i], [cam.name, str(i)]
            for key, family in families.items():
                family.add_metric(lv, getattr(s, key))
            up.add_metric(lv, 1.0 if (s.up and not cam.removed and not s.ended) else 0.0)
            rate.add_metric(lv, s.decisions / max(now - stats.started, 1e-9))
            for stage, window in per_stream.get(i, {}).items():
                if not window.count:
                    continue
                key = {"camera": cam.name, "stream": str(i), "stage": stage}
                if window.samples:
                    q = np.percentile(np.asarray(window.samples), [50, 95, 99])
                    for name, value in zip(("0.5", "0.95", "0.99"), q):
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
            for (camera, label), n in sorted(self.segmenter.counts.items()):
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


def _with_token(app, token: str):
    expected = f"Bearer {token}".encode()

    def guarded(environ, start_response):
        got = environ.get("HTTP_AUTHORIZATION", "").encode()
        if not hmac.compare_digest(got, expected):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
            return [b"unauthorized\n"]
        return app(environ, start_response)

    return guarded


class MetricsServer:
    """The /metrics endpoint on its own threads; `close()` stops it."""

    def __init__(self, options: MetricsOptions, collector: RunCollector):
        host, port = parse_listen(options.listen, "--metrics")
        token = read_token(options)
        if not is_loopback(host) and token is None and not options.insecure:
            raise ConfigError(f"metrics on {host} (not loopback) needs a token: metrics.token_file (or "
                              f"{TOKEN_ENV}), or metrics.insecure: true / --metrics-insecure to serve it open")
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        app = make_wsgi_app(registry)
        if token is not None:
            app = _with_token(app, token)
        try:
            self.server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_SilentHandler)
        except OSError as e:
            raise ConfigError(f"metrics: cannot listen on {host}:{port} ({e.strerror or e})") from e
        self.address = f"{host}:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
