"""What action events, MQTT and event clips cost the pipeline: decisions/s with and without them, in one run.

A random-weights bundle of --model is exported (speed does not depend on the weights), then the
pipeline runs --reps times each way, interleaved, on --streams copies of the clip read as fast
as possible: (a) decisions to a sink that drops them; (b) the same plus the event segmenter with
a JSONL events file, event clips written by the clip writer and an MQTT sink publishing states
and events to a real mosquitto on 127.0.0.1 (started here; without mosquitto, (b) runs without
MQTT and says so), every camera recording two events all the time (enter 0 on two classes: the
worst steady case, a clip always open). (b) / (a) is the overhead. (d) is (b) on a quiet site: enter
1.0, no event ever starts, so the cost is that of the pre-roll buffers, the segmenter and MQTT's
state messages, a site's usual state. A fourth variant, (c) a frame
sink that does nothing and draws every frame (each one converted to RGB and handed on, the read
path event clips needed before they said their rate), answers whether a run without frame sinks
is slower than one with (it was measured so once).

Each run reports decisions/s and the process's CPU seconds per decision (all threads: decoding,
the encoder, the clip writer, paho): on a machine shared with other jobs, wall-clock rates follow
the CPU share the process happens to get, while CPU per decision is what the work costs; on a
CPU-bound box decisions/s is its inverse. Usage:
    python benchmarks/bench_site.py [--model ViT-B-32] [--streams 2] [--reps 3] [--bundle DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
CLIP = ROOT / "examples" / "clips" / "stgcn_clean_and_jerk.mp4"
CLASSES = [line.strip() for line in (ROOT / "examples" / "clips" / "classes.txt").read_text().splitlines() if line.strip()]


def start_broker(folder: Path):
    """The tests' mosquitto (tests/mosquitto.py), or None where it is not installed."""
    import pytest

    from tests.mosquitto import Broker

    try:
        return Broker(folder).start()
    except pytest.skip.Exception as e:
        print(f"no MQTT in (b): {e}", file=sys.stderr)
        return None


class Drop:
    """Takes decisions (and frames) and does nothing with them."""

    def emit(self, decision) -> None:
        pass

    def frame(self, stream, frame, decision) -> None:
        pass

    def close(self) -> None:
        pass


class ThreadCpu:
    """CPU seconds of the site's own threads (the clip writer, the MQTT publisher, paho's loop), read
    from /proc (Linux) while they live: what they cost does not depend on how busy the machine is."""

    NAMES = ("clip-writer", "mqtt-publisher", "paho-mqtt-client")

    def __init__(self):
        self.seconds: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(0.05):
            for t in threading.enumerate():
                if t.native_id and t.name.startswith(self.NAMES):
                    try:
                        fields = Path(f"/proc/self/task/{t.native_id}/stat").read_text().rsplit(")", 1)[1].split()
                    except OSError:
                        continue
                    self.seconds[t.native_id] = (t.name.split("-")[0], (int(fields[11]) + int(fields[12])) / self._tick)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        out: dict[str, float] = {}
        for name, sec in self.seconds.values():
            out[name] = out.get(name, 0.0) + sec
        return out


class EveryFrame(Drop):
    """A no-op frame sink that draws every frame (as a recorder or a window does)."""

    needs_every_frame = True


def one_run(bundle: Path, opened, sources: list[str], hop: int, decisions: int, folder: Path | None,
            frame_sink: bool = False, mqtt_port: int | None = None, enter: float = 0.0) -> dict:
    from froster_edge.runtime.options import CameraOptions, CaptureOptions, RunOptions, SamplingOptions
    from froster_edge.runtime.pipeline import Pipeline
    from froster_edge.runtime.site.clips import ClipOptions, EventClips
    from froster_edge.runtime.site.events import EventOptions, EventSegmenter, JsonlEventSink

    options = RunOptions(cameras=[CameraOptions(f"cam{i}", s) for i, s in enumerate(sources)],
                         sampling=SamplingOptions(hop=hop), capture=CaptureOptions(loop=True), max_decisions=decisions)
    sinks: list = [Drop()]
    frame_sinks: list = [EveryFrame()] if frame_sink else []
    clips = None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        clips = EventClips(ClipOptions(folder=folder), lambda i: pipeline.cameras[i].name,
                           lambda i: pipeline.stats.streams[i].fps)
        frame_sinks.append(clips)
        names = ["yoga", "fencing"]
        segmenter = EventSegmenter(EventOptions(enter=enter, exit=0.0, labels=tuple(names), file=folder / "events.jsonl"),
                                   [JsonlEventSink(folder / "events.jsonl"), clips])
        sinks.append(segmenter)
        if mqtt_port is not None:  # as command.py wires it: states from the decisions, events from the segmenter
            from froster_edge.runtime.site.mqtt import MqttOptions, MqttSink

            mqtt = MqttSink(MqttOptions(host="127.0.0.1", port=mqtt_port, discovery=True),
                            [c.name for c in options.cameras], CLASSES)
            sinks.append(mqtt)
            segmenter.sinks.append(mqtt)
    pipeline = Pipeline(bundle, options, sinks, frame_sinks, opened=opened)
    threads = ThreadCpu() if sys.platform.startswith("linux") else None
    cpu = time.process_time()
    stats = pipeline.run().to_dict()
    cpu = time.process_time() - cpu
    site_threads = threads.stop() if threads is not None else {}
    out = {"decisions": stats["decisions"], "decisions_per_s": stats["decisions_per_s"],
           "cpu_ms_per_decision": round(1000 * cpu / max(1, stats["decisions"]), 3),
           "site_threads_ms_per_decision": {k: round(1000 * v / max(1, stats["decisions"]), 3) for k, v in site_threads.items()}}
    if clips is not None:
        c = clips.counters
        out.update(clips=c.clips, dropped_frames=c.dropped_frames, dropped_clips=c.dropped_clips, errors=c.errors)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="ViT-B-32")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--streams", type=int, default=2)
    p.add_argument("--bundle", type=Path, help="measure this bundle instead of exporting one")
    p.add_argument("--clip", type=Path, default=CLIP)
    p.add_argument("--hop", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--decisions", type=int, default=120, help="decisions per run (the clip is looped)")
    p.add_argument("--no-mqtt", action="store_true", help="(b) without the MQTT sink")
    p.add_argument("--json", type=Path)
    args = p.parse_args()

    from froster_edge.bundle import manifest as mf
    from froster_edge.io import atomic_write_json
    from froster_edge.runtime.backends import open_backend

    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle
        if bundle is None:
            from bench_runtime import export_random

            bundle = export_random(args.model, args.frames, args.streams, Path(tmp))
        broker = None if args.no_mqtt else start_broker(Path(tmp))
        port = broker.port if broker is not None else None
        opened = open_backend("auto", bundle, mf.read_manifest(bundle))
        sources = [str(args.clip)] * args.streams
        one_run(bundle, opened, sources, args.hop, args.decisions, None)  # warm-up: caches, the decoder
        plain, framed, site, quiet = [], [], [], []
        try:
            for r in range(args.reps):  # interleaved: a machine's load drifts alike for all
                plain.append(one_run(bundle, opened, sources, args.hop, args.decisions, None))
                framed.append(one_run(bundle, opened, sources, args.hop, args.decisions, None, frame_sink=True))
                site.append(one_run(bundle, opened, sources, args.hop, args.decisions, Path(tmp) / f"site{r}", mqtt_port=port))
                quiet.append(one_run(bundle, opened, sources, args.hop, args.decisions, Path(tmp) / f"quiet{r}",
                                     mqtt_port=port, enter=1.0))
                print(f"rep {r}: plain {plain[-1]['decisions_per_s']:.2f}/s {plain[-1]['cpu_ms_per_decision']:.1f} ms CPU, "
                      f"every frame to a no-op sink {framed[-1]['decisions_per_s']:.2f}/s "
                      f"{framed[-1]['cpu_ms_per_decision']:.1f} ms, events+clips{'+mqtt' if port else ''} "
                      f"{site[-1]['decisions_per_s']:.2f}/s {site[-1]['cpu_ms_per_decision']:.1f} ms "
                      f"({site[-1]['clips']} clips, {site[-1]['dropped_frames']} frames dropped), quiet site "
                      f"{quiet[-1]['decisions_per_s']:.2f}/s {quiet[-1]['cpu_ms_per_decision']:.1f} ms; site threads, "
                      f"ms CPU per decision: {site[-1]['site_threads_ms_per_decision']} (quiet: "
                      f"{quiet[-1]['site_threads_ms_per_decision']})", file=sys.stderr)
        finally:
            if broker is not None:
                broker.kill()
        med = {name: {k: statistics.median(x[k] for x in runs) for k in ("decisions_per_s", "cpu_ms_per_decision")}
               for name, runs in (("plain", plain), ("every_frame", framed), ("site", site), ("quiet_site", quiet))}
        q, cq = med["quiet_site"]["decisions_per_s"], med["quiet_site"]["cpu_ms_per_decision"]
        for name, runs in (("site", site), ("quiet_site", quiet)):
            med[name]["site_threads_ms_per_decision"] = statistics.median(sum(x["site_threads_ms_per_decision"].values())
                                                                          for x in runs)
        a, f, b = (med[n]["decisions_per_s"] for n in ("plain", "every_frame", "site"))
        ca, cf, cb = (med[n]["cpu_ms_per_decision"] for n in ("plain", "every_frame", "site"))
        result = {"model": args.model if args.bundle is None else str(args.bundle), "backend": opened.backend.name,
                  "streams": args.streams, "hop": args.hop, "decisions": args.decisions, "clip": args.clip.name,
                  "reps": args.reps, "mqtt": port is not None, "medians": med,
                  "site_vs_plain_decisions_per_s": round(b / a, 4), "site_vs_plain_cpu_per_decision": round(cb / ca, 4),
                  "quiet_vs_plain_decisions_per_s": round(q / a, 4), "quiet_vs_plain_cpu_per_decision": round(cq / ca, 4),
                  "every_frame_vs_plain_decisions_per_s": round(f / a, 4), "every_frame_vs_plain_cpu_per_decision": round(cf / ca, 4),
                  "runs": {"plain": plain, "every_frame": framed, "site": site, "quiet_site": quiet}}
        opened.backend.close()
    print(f"{result['model']} on {result['backend']}, {args.streams} stream(s), median of {args.reps} interleaved runs: "
          f"plain {a:.2f} decisions/s ({ca:.1f} ms CPU each), every frame to a no-op sink {f:.2f}/s ({cf:.1f} ms), "
          f"events + clips{' + MQTT' if port else ''} {b:.2f}/s ({cb:.1f} ms): site / plain {b / a:.3f} in decisions/s, "
          f"{cb / ca:.3f} in CPU per decision; quiet site {q:.2f}/s ({cq:.1f} ms): {q / a:.3f}, {cq / ca:.3f}; the site's "
          f"own threads {med['site']['site_threads_ms_per_decision']:.2f} ms CPU per decision "
          f"(quiet {med['quiet_site']['site_threads_ms_per_decision']:.2f}) = {med['site']['site_threads_ms_per_decision'] / ca:.3f} "
          f"({med['quiet_site']['site_threads_ms_per_decision'] / ca:.3f}) of plain's CPU per decision")
    if args.json:
        atomic_write_json(args.json, result)


if __name__ == "__main__":
    main()
