"""`froster-edge run` and `bench`: live video through a bundle, and how fast each backend does it.

See docs/cli.md.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import ConfigError
from ..logs import install_cli_handler
from ..runtime.options import BENCH_ORDER, OV_DEVICES, BackendName, Smoothing
from ..runtime.options import RUN_DEFAULTS as _RUN
from .base import command
from .options import JsonOut, readable, write_json

# typer checks a repeatable option's choices through an Enum (a list of Literals it cannot)
BenchBackend = enum.Enum("BenchBackend", {name: name for name in BENCH_ORDER + ("torch",)}, type=str)
OvDevice = enum.Enum("OvDevice", {name: name for name in OV_DEVICES}, type=str)
_OV_DEVICE = OvDevice(_RUN.ov_device)
ov_device_option = typer.Option("--ov-device", help="OpenVINO device of the ov backends: CPU, GPU (Intel graphics), NPU or AUTO; "
                                "exit 3 where OpenVINO does not list it.")


@command("run")
def run_cmd(
    bundle: Annotated[Optional[Path], typer.Option(
        help="The bundle to run (from froster-edge export); or `bundle:` in --config.")] = None,
    source: Annotated[Optional[list[str]], typer.Option(
        "--source", help="Camera index, video file, or rtsp:// / http:// URL; repeat for several streams. A password "
        "in a URL is shown as *** everywhere, but ps shows command lines: give it by a site file's password_env or "
        "password_file (docs/cameras.md).")] = None,
    config: Annotated[Optional[Path], typer.Option(
        "--config", help="Site file (YAML): named cameras with their own hop, threshold, labels; events, clips, metrics, "
        "mqtt, http. The run flags below are its defaults. SIGHUP reloads its cameras.")] = None,
    labels: Annotated[Optional[Path], typer.Option(
        help="Label table (labels.npz) of the bundle's model; default: the bundle's. Watched: a new table is swapped in between decisions.")] = None,
    backend: Annotated[BackendName, typer.Option(
        help="auto: the fastest available, on a CPU the model calibrate kept (ONNX Runtime or OpenVINO); "
             "the int8 ones where calibrate kept an INT8 model; ov/ov-int8 need froster-edge[openvino].")] = _RUN.backend,
    ov_device: Annotated[OvDevice, ov_device_option] = _OV_DEVICE,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="One JSON object per decision on stdout instead of readable lines.")] = False,
    hop: Annotated[int, typer.Option(help="Sampled frames between decisions.", min=1)] = _RUN.sampling.hop,
    sample_fps: Annotated[Optional[float], typer.Option(
        "--sample-fps", help="Sampled frames per second of video; default the bundle's training frames (reference rule: ~1.65).",
        min=0.001)] = _RUN.sampling.fps,
    subsample: Annotated[Optional[int], typer.Option(help="Take every Nth source frame instead of --sample-fps.", min=1)] = _RUN.sampling.subsample,
    threshold: Annotated[float, typer.Option(
        help="Below this smoothed top-1 probability the outcome is 'unknown'.", min=0.0, max=1.0)] = _RUN.classifier.threshold,
    smoothing: Annotated[Smoothing, typer.Option(help="ema, mean (of the last --window decisions) or none.")] = _RUN.classifier.smoothing,
    ema_alpha: Annotated[float, typer.Option(help="EMA weight of the newest decision.", min=0.0, max=1.0)] = _RUN.classifier.ema_alpha,
    window: Annotated[int, typer.Option(help="Decisions averaged by --smoothing mean.", min=1)] = _RUN.classifier.window,
    top_k: Annotated[int, typer.Option("--top-k", help="Classes reported per decision.", min=1)] = _RUN.classifier.top_k,
    realtime: Annotated[bool, typer.Option("--realtime", help="Play files at their own pace, as a camera (frames may drop).")] = _RUN.capture.realtime,
    loop: Annotated[bool, typer.Option("--loop", help="Start files again at their end.")] = _RUN.capture.loop,
    record: Annotated[Optional[Path], typer.Option(help="Write the annotated video here (.mp4/.avi/.mkv; FILE_<i> per stream with several).")] = None,
    show: Annotated[bool, typer.Option("--show", help="Overlay window per stream (needs a display; exit 3 without). q quits.")] = False,
    stats_json: Annotated[Optional[Path], typer.Option(
        "--stats-json", help="Write the run's stats (latency percentiles, drops, decisions/s) here at the end.")] = None,
    max_decisions: Annotated[Optional[int], typer.Option(help="Stop after this many decisions.", min=1)] = _RUN.max_decisions,
    events: Annotated[Optional[Path], typer.Option(
        "--events", help="Append action events (start/end, hysteresis from the site file or its defaults) to this JSONL file.")] = None,
    clips: Annotated[Optional[Path], typer.Option(
        "--clips", help="Write an mp4 and a peak JPEG per action event into this folder (disk budget, pre-roll: site file `clips:`).")] = None,
    archive: Annotated[Optional[Path], typer.Option(
        "--archive", help="Keep every decision's clip embedding, top labels, event and a thumbnail every 10 s in this "
        "SQLite file, for `froster-edge search` (retention: site file `archive:`).")] = None,
    metrics: Annotated[Optional[str], typer.Option(
        "--metrics", help="Serve Prometheus metrics on HOST:PORT (127.0.0.1:9108; another host needs a token, docs/network.md). "
        "With --http: give the same HOST:PORT, the web view's server answers /metrics.")] = None,
    metrics_insecure: Annotated[bool, typer.Option("--metrics-insecure", help="Serve --metrics on a non-loopback address without a token.")] = False,
    http: Annotated[Optional[str], typer.Option(
        "--http", help="Serve the web view (live views, decisions, vocabulary; /metrics when metrics are on) on HOST:PORT, "
        "e.g. 127.0.0.1:8080; another address than loopback needs a token. Its tuning: the site file's http: section.")] = None,
    http_token: Annotated[Optional[str], typer.Option(
        "--http-token", help="Token the web view requires on every request (Authorization: Bearer, or ?token= in the "
        "page's address); at least 16 characters, no spaces. Better: $FROSTER_EDGE_HTTP_TOKEN (a command line is "
        "visible to every user).")] = None,
    mqtt: Annotated[Optional[str], typer.Option(
        "--mqtt", help="Publish states, events and availability to this MQTT broker, HOST[:PORT] "
        "(password or token: $FROSTER_EDGE_MQTT_PASSWORD). Prefix, QoS, discovery, TLS: the site file's mqtt: section.")] = None,
    check: Annotated[bool, typer.Option(
        "--check", help="Check the site file and flags (every key, tokens, addresses, output folders, the bundle's "
        "manifest) and exit: 0 and a summary, or 1 and the one-line error. No model is loaded, no camera opened.")] = False,
) -> None:
    """Classify live video against a label table: cameras, streams, files; several at once.

    Each source has a reader thread (newest frame only, reconnects with backoff); sampled frames
    are resized once into a ring buffer of T; every --hop sampled frames the streams' clips go
    through one encoder call; scores are smoothed and printed. Ctrl-C stops and prints the stats.

    Examples:
      froster-edge run --bundle bundles/b16 --source examples/clips/stgcn_clean_and_jerk.mp4
      froster-edge run --bundle bundles/b16 --source 0 --show --threshold 0.3
      froster-edge run --bundle bundles/b16 --source rtsp://cam1/stream --source rtsp://cam2/stream --jsonl
      froster-edge run --bundle bundles/b16 --source clip.mp4 --realtime --record out.mp4 --stats-json stats.json
      froster-edge run --bundle bundles/b16 --source rtsp://cam1/stream --mqtt 127.0.0.1
      froster-edge run --config examples/site.yaml --check
      froster-edge run --config examples/site.yaml --events events.jsonl --metrics 127.0.0.1:9108
      froster-edge run --bundle bundles/b16 --source rtsp://cam1/stream --http 127.0.0.1:8080
      froster-edge run --bundle bundles/b16 --source rtsp://cam1/stream --archive site.db
      FROSTER_EDGE_HTTP_TOKEN=$(cat token) froster-edge run --bundle bundles/b16 --source 0 --http 0.0.0.0:8080
    """
    from dataclasses import replace as dc_replace

    from ..runtime.command import RunRequest, check_request, run
    from ..runtime.options import ClassifierOptions, SamplingOptions
    from ..runtime.site.config import site_from_flags

    options = dc_replace(
        _RUN, sources=list(source or []), labels=labels, backend=backend, ov_device=ov_device.value, max_decisions=max_decisions,
        sampling=SamplingOptions(fps=sample_fps, subsample=subsample, hop=hop),
        capture=dc_replace(_RUN.capture, realtime=realtime, loop=loop),
        classifier=ClassifierOptions(top_k=top_k, threshold=threshold, smoothing=smoothing, ema_alpha=ema_alpha, window=window),
    )
    site = site_from_flags(options, bundle, config, events=events, clips=clips, metrics=metrics,
                           metrics_insecure=metrics_insecure, http=http, http_token=http_token, mqtt=mqtt,
                           archive=archive)
    install_cli_handler(stamped=True)
    request = RunRequest(site.bundle, site.run, jsonl=jsonl, show=show, record=record, stats_json=stats_json, site=site,
                         http=site.http, mqtt=site.mqtt)
    if check:
        print(f"{config or 'flags'}: ok: {check_request(request)}")
        return
    run(request)


@command("bench")
def bench_cmd(
    bundle: Annotated[Path, typer.Option(help="The bundle to measure.")],
    backend: Annotated[Optional[list[BenchBackend]], typer.Option(
        "--backend", help=f"A backend to measure (repeatable); default: every available one of {', '.join(BENCH_ORDER)}.")] = None,
    ov_device: Annotated[OvDevice, ov_device_option] = _OV_DEVICE,
    clip: Annotated[Optional[Path], typer.Option(help="Video for the pipeline runs; default examples/clips/stgcn_clean_and_jerk.mp4.")] = None,
    hop: Annotated[int, typer.Option(help="Sampled frames between decisions in the pipeline runs.", min=1)] = _RUN.sampling.hop,
    reps: Annotated[int, typer.Option(help="Interleaved pipeline / backend-alone pairs per backend.", min=1)] = 3,
    realtime_check: Annotated[bool, typer.Option(
        "--realtime-check/--no-realtime-check", help="Also play the clip at its own pace for capture-to-decision latency.")] = True,
    realtime_decisions: Annotated[int, typer.Option(help="Decisions of the real-time run.", min=1)] = 8,
    json_out: JsonOut = None,
) -> None:
    """Encoder latency and throughput per backend, and the whole pipeline's decisions/s, in one run.

    Ratios measured in the same run hold on a noisy machine: the pipeline against the backend
    alone on the same clips (runtime overhead), capture-to-decision against encoder latency.

    Examples:
      froster-edge bench --bundle bundles/b32
      froster-edge bench --bundle bundles/b16 --backend trt --backend ort-cuda --json bench.json
      froster-edge bench --bundle bundles/b32 --backend ort-cpu-int8 --backend ov-int8 --backend ov
    """
    from ..runtime.bench import BenchOptions, bench, table

    default_clip = Path(__file__).resolve().parents[2] / "examples" / "clips" / "stgcn_clean_and_jerk.mp4"
    if clip is None and not default_clip.is_file():
        raise ConfigError("give --clip VIDEO (the repository's example clip is not here)")
    options = BenchOptions(clip=clip or default_clip, backends=[b.value for b in backend or []], reps=reps, hop=hop,
                           realtime_check=realtime_check, realtime_decisions=realtime_decisions, ov_device=ov_device.value)
    install_cli_handler(indent="  ")
    result = bench(bundle, options)
    print(table(result), file=readable(json_out))
    write_json(json_out, result)
