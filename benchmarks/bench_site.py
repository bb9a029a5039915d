"""What action events and event clips cost the pipeline: decisions/s with and without them, in one run.

A random-weights bundle of --model is exported (speed does not depend on the weights), then the
pipeline runs --reps times each way, interleaved, on --streams copies of the clip read as fast
as possible: (a) decisions to a sink that drops them; (b) the same plus the event segmenter with
a JSONL events file and event clips written by the clip writer, every camera recording two
events all the time (enter 0 on two classes: the worst steady case, a clip always open). The
ratio of the medians is the overhead. A third variant, (c) a frame sink that does nothing,
isolates the read path clips change (every frame converted to RGB and handed to the frame
sinks, instead of only the sampled ones): (b) / (c) is what events and clip writing cost. Usage:
    python benchmarks/bench_site.py [--model ViT-B-32] [--streams 2] [--reps 3] [--bundle DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
CLIP = ROOT / "examples" / "clips" / "stgcn_clean_and_jerk.mp4"


class Drop:
    """Takes decisions (and frames) and does nothing with them."""

    def emit(self, decision) -> None:
        pass

    def frame(self, stream, frame, decision) -> None:
        pass

    def close(self) -> None:
        pass


def one_run(bundle: Path, opened, sources: list[str], hop: int, decisions: int, folder: Path | None,
            frame_sink: bool = False) -> dict:
    from froster_edge.runtime.clips import ClipOptions, EventClips
    from froster_edge.runtime.events import EventOptions, EventSegmenter, JsonlEventSink
    from froster_edge.runtime.options import CameraOptions, CaptureOptions, RunOptions, SamplingOptions
    from froster_edge.runtime.pipeline import Pipeline

    options = RunOptions(cameras=[CameraOptions(f"cam{i}", s) for i, s in enumerate(sources)],
                         sampling=SamplingOptions(hop=hop), capture=CaptureOptions(loop=True), max_decisions=decisions)
    sinks: list = [Drop()]
    frame_sinks: list = [Drop()] if frame_sink else []
    clips = None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        clips = EventClips(ClipOptions(folder=folder), lambda i: pipeline.cameras[i].name,
                           lambda i: pipeline.stats.streams[i].fps, lambda m: print(m, file=sys.stderr))
        frame_sinks.append(clips)
        names = ["yoga", "fencing"]
        sinks.append(EventSegmenter(EventOptions(enter=0.0, exit=0.0, labels=tuple(names), file=folder / "events.jsonl"),
                                    [JsonlEventSink(folder / "events.jsonl"), clips], clip_names=True))
    pipeline = Pipeline(bundle, options, sinks, frame_sinks, opened=opened, log=lambda m: None)
    stats = pipeline.run().to_dict()
    out = {"decisions": stats["decisions"], "decisions_per_s": stats["decisions_per_s"]}
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
        opened = open_backend("auto", bundle, mf.read_manifest(bundle), lambda m: None)
        sources = [str(args.clip)] * args.streams
        one_run(bundle, opened, sources, args.hop, args.decisions, None)  # warm-up: caches, the decoder
        plain, framed, site = [], [], []
        for r in range(args.reps):  # interleaved: a machine's load drifts alike for all
            plain.append(one_run(bundle, opened, sources, args.hop, args.decisions, None))
            framed.append(one_run(bundle, opened, sources, args.hop, args.decisions, None, frame_sink=True))
            site.append(one_run(bundle, opened, sources, args.hop, args.decisions, Path(tmp) / f"site{r}"))
            print(f"rep {r}: plain {plain[-1]['decisions_per_s']:.2f}/s, with a no-op frame sink "
                  f"{framed[-1]['decisions_per_s']:.2f}/s, events+clips {site[-1]['decisions_per_s']:.2f}/s "
                  f"({site[-1]['clips']} clips, {site[-1]['dropped_frames']} frames dropped)", file=sys.stderr)
        a, f, b = (statistics.median(x["decisions_per_s"] for x in runs) for runs in (plain, framed, site))
        result = {"model": args.model if args.bundle is None else str(args.bundle), "backend": opened.backend.name,
                  "streams": args.streams, "hop": args.hop, "decisions": args.decisions, "clip": args.clip.name,
                  "reps": args.reps, "plain_decisions_per_s": a, "frame_sink_decisions_per_s": f,
                  "events_clips_decisions_per_s": b, "ratio_vs_frame_sink": round(b / f, 4), "ratio_vs_plain": round(b / a, 4),
                  "runs": {"plain": plain, "frame_sink": framed, "events_clips": site}}
        opened.backend.close()
    print(f"{result['model']} on {result['backend']}, {args.streams} stream(s), median of {args.reps} interleaved runs: "
          f"plain {a:.2f} decisions/s, with a no-op frame sink (every frame converted, as clips need) {f:.2f}/s, "
          f"with events + clips {b:.2f}/s: events+clips / frame sink {b / f:.3f}, / plain {b / a:.3f}")
    if args.json:
        atomic_write_json(args.json, result)


if __name__ == "__main__":
    main()
