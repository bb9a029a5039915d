"""Decoding cost of the runtime's capture: CPU seconds per second of video, against ffmpeg alone.

For each resolution (H.264 720p30 and 1080p30 made from a bundled clip, scaled), three ffmpeg
servers send the same file at its own pace (-re, looped) as MPEG-TS over HTTP on 127.0.0.1, read
at the same time by: `ffmpeg -f null` (decoding alone); the runtime's capture path in a child
process (sources.Reader + the pipeline's Assembler: decode, sampling at the training's 1.875 fps,
resize/crop to 224, the clip ring; no encoder); and the same capture converting every frame to
RGB (what --record/--show need, and what it did for every live frame before it skipped the
frames no clip uses). Their CPU time is read from /proc over the same wall-clock window after a
warm-up, so a shared, loaded machine affects all alike: the ratios are what counts. Cameras per
core = 1 / (CPU s per second of video).

Usage:
    python benchmarks/bench_capture.py [--seconds 20] [--heights 720 1080] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "examples" / "clips" / "stgcn_clean_and_jerk.mp4"
TICK = os.sysconf("SC_CLK_TCK")


def make_stream_file(height: int, folder: Path) -> Path:
    """The clip scaled to `height`p (16:9 padded), 30 fps, H.264 (x264 veryfast, GOP 60), 10 s (the server loops it)."""
    out = folder / f"h264_{height}p30.mp4"
    width = height * 16 // 9
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(CLIP),
                    "-vf", f"scale=-2:{height},pad={width}:{height}:(ow-iw)/2:0,fps=30", "-an", "-c:v", "libx264",
                    "-preset", "veryfast", "-g", "60", "-pix_fmt", "yuv420p", str(out)], check=True)
    return out


def serve(path: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "quiet", "-re", "-stream_loop", "-1",
                             "-i", str(path), "-c", "copy", "-f", "mpegts", "-listen", "1", f"http://127.0.0.1:{port}/s.ts"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def child(url: str, convert_all: bool) -> None:
    """The runtime's capture path on `url` until SIGTERM; prints its counters as JSON at the end."""
    from froster_edge.runtime.assembly import ClipAssembler, SampleRule
    from froster_edge.runtime.options import CaptureOptions, SamplingOptions
    from froster_edge.runtime.pipeline import Assembler, ClipBoard
    from froster_edge.runtime.sources import FrameSlot, Reader, capture_fps, open_first, parse_source
    from froster_edge.runtime.stats import RunStats, StreamCounters

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    spec, options = parse_source(url), CaptureOptions()
    cap = open_first(spec, options)
    fps = capture_fps(cap) or options.fallback_fps
    rule = SampleRule.from_options(SamplingOptions(), {"sampling": {"stride": 16, "reference_fps": 30.0}})
    period = rule.period_frames(fps)
    stats, counters = RunStats(), StreamCounters(url, spec.kind, fps, rule.describe(fps))
    board, slot = ClipBoard(1), FrameSlot(keep_newest=True)
    # the pipeline's own choice for a live source without frame sinks (see Pipeline._streams)
    from froster_edge.runtime.pipeline import reader_filter

    # convert_all: as with --record/--show, every frame is converted to RGB and handed on (the runtime
    # did that for every live frame before it grabbed without retrieving)
    want = reader_filter(convert_all, True, period, rule.spec.rounding, fps)  # a live source, as Pipeline does
    reader = Reader(spec, cap, slot, stop, options, stats, counters, want)
    assembler = Assembler(0, slot, board, ClipAssembler(8, 224, 2, period, rule.spec.rounding, fps), 224, True, [], stats,
                          counters, stop)
    reader.start()
    assembler.start()
    signal.signal(signal.SIGUSR1, lambda *a: print(f"frames {counters.frames_read}", flush=True))
    print("ready", flush=True)
    while not stop.is_set():
        board.collect(False, 0.2)  # the encoder's place: take the clips, drop them
    reader.join(5)
    assembler.join(5)
    print(json.dumps({"frames_read": counters.frames_read, "sampled": counters.frames_sampled, "clips": counters.clips,
                      "dropped": counters.frames_dropped}), flush=True)


class Frames:
    """The newest frame count a process prints (`frames N` from a child, `frame=N` from ffmpeg -progress)."""

    def __init__(self, proc: subprocess.Popen):
        self.count, self.proc = 0, proc
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            key, _, value = line.strip().replace("=", " ").partition(" ")
            if key in ("frames", "frame") and value.strip().isdigit():
                self.count = int(value)
            elif line.startswith("{"):
                self.final = json.loads(line)

    def now(self) -> int:
        if self.proc.args[0] == sys.executable:
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(0.2)
        return self.count


def measure(path: Path, seconds: float, fps: float = 30.0, warmup: float = 3.0) -> dict:
    """ffmpeg -f null, the runtime's capture, and the capture converting every frame, each on its
    own server of the same file, all at once; CPU and frames decoded over the same window."""
    ports = [_free_port() for _ in range(3)]
    servers = [serve(path, p) for p in ports]
    procs: list[subprocess.Popen] = []
    try:
        time.sleep(1.0)  # the servers listen
        for port, extra in ((ports[0], []), (ports[1], ["--convert-all"])):
            child_proc = subprocess.Popen([sys.executable, __file__, "--child", f"http://127.0.0.1:{port}/s.ts", *extra],
                                          stdout=subprocess.PIPE, text=True)
            procs.append(child_proc)
            if child_proc.stdout.readline().strip() != "ready":
                raise RuntimeError("a runtime child did not start")
        procs.append(subprocess.Popen(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-stats_period", "0.1",
                                       "-progress", "pipe:1", "-i", f"http://127.0.0.1:{ports[2]}/s.ts", "-f", "null", "-"],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
        frames = [Frames(p) for p in procs]
        time.sleep(warmup)
        f0, c0 = [f.now() for f in frames], [cpu_seconds(p.pid) for p in procs]
        time.sleep(seconds)
        f1, c1 = [f.now() for f in frames], [cpu_seconds(p.pid) for p in procs]
        for p in procs[:2]:
            p.send_signal(signal.SIGTERM)
            p.wait(30)
        time.sleep(0.5)  # the readers take the children's last line
    finally:
        for p in procs + servers:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    # CPU seconds per second of video decoded (frames / fps): a server slowed by the load delivers
    # less video per wall second, and this stays right
    per_video = [(b - a) / max(1e-9, (g - e) / fps) for a, b, e, g in zip(c0, c1, f0, f1, strict=False)]
    run, conv, dec = per_video
    return {"file": path.name, "video_s": [round((g - e) / fps, 2) for e, g in zip(f0, f1, strict=False)],
            "ffmpeg_cpu_per_video_s": dec, "runtime_cpu_per_video_s": run, "ratio": run / dec,
            "convert_all_cpu_per_video_s": conv, "convert_all_ratio": conv / dec,
            "runtime_cameras_per_core": 1 / run, "ffmpeg_cameras_per_core": 1 / dec,
            "runtime_counters": getattr(frames[0], "final", {}), "convert_all_counters": getattr(frames[1], "final", {})}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured wall seconds per resolution")
    parser.add_argument("--heights", type=int, nargs="+", default=[720, 1080])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--convert-all", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.convert_all)
        return
    from froster_edge.info import environment

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for height in args.heights:
            r = measure(make_stream_file(height, Path(tmp)), args.seconds)
            results.append(r)
            c = r["runtime_counters"]
            print(f"{r['file']:18s} ffmpeg -f null {r['ffmpeg_cpu_per_video_s']:.3f} CPU s/s ({r['ffmpeg_cameras_per_core']:.1f}/core)"
                  f"  runtime {r['runtime_cpu_per_video_s']:.3f} ({r['runtime_cameras_per_core']:.1f}/core, x{r['ratio']:.3f})"
                  f"  converting every frame {r['convert_all_cpu_per_video_s']:.3f} (x{r['convert_all_ratio']:.3f})"
                  f"  [video s decoded: {r['video_s']}; runtime: {c.get('sampled')} sampled of {c.get('frames_read')}, {c.get('clips')} clips]", flush=True)
    env = environment()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; OpenCV {env.get('opencv', '?')}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "environment": env}, indent=2))


if __name__ == "__main__":
    main()
