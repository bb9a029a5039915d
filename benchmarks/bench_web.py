"""The web view's cost to the pipeline, and how fast a typed action reaches the decisions, in one run.

1. Throughput, interleaved pairs: the pipeline over a clip read as fast as possible (a fixed
   number of decisions), without the web view, then with it and a client watching, which reads
   the live view (MJPEG) and polls decisions and stats at the page's own rates (0.5 s, 2 s). The
   client is a separate process (as a browser on another machine would be; chromium on this box
   would take CPU a deployed page never takes). Reported: decisions/s with / without, per pair
   and the median ratio (the issue's bar: >= 0.95); and, less dependent on other load on the
   machine, decisions per CPU second of the process with / without (median of the pairs) and the
   CPU time the web view's threads spent as a share of the process's CPU time in that run.
2. Vocabulary: the clip played at its own pace and looped (a camera), the web view on; actions
   are added through the API one after another; for each, the time the POST took (encoding the
   prompts through the bundle's text encoder and writing the table) and from submitting to the
   first decision made with the new table (the hub's `submit_to_decision_s`). Twice, from the
   same table: first with the text encoder hashed and opened again for every change (as before
   the web view kept one), then with the run's kept encoder (as `run --http` does now).
Usage:
    python benchmarks/bench_web.py [--model configs/models/tiny-vit.json | ViT-B-32] [--frames 4]
        [--bundle DIR] [--decisions 40] [--reps 5] [--adds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_runtime import CLIP, ROOT, export_random  # noqa: E402

CLIENT = r"""
import sys, threading, time, urllib.request
# one process for the whole benchmark (its start-up never overlaps a measured run): for each URL
# read from stdin, watch the live view and poll as the page does until that server goes away
def live(base, up):
    try:
        with urllib.request.urlopen(base + "api/streams/0.mjpg", timeout=600) as r:
            up.set()
            while r.read(65536):
                pass
    except OSError:
        pass
for line in sys.stdin:
    base, up, n = line.strip(), threading.Event(), 0
    threading.Thread(target=live, args=(base, up), daemon=True).start()
    up.wait(30)
    print("watching", flush=True)
    try:
        while True:
            for path in ["api/decisions?since=0"] + (["api/stats"] if n % 4 == 0 else []):
                urllib.request.urlopen(base + path, timeout=60).read()
            n += 1
            time.sleep(0.5)
    except OSError:
        pass
"""


class ReloadedEncoder:
    """The web view's text encoder as it was before it was kept: hashed and opened on every change."""

    def __init__(self, bundle: Path):
        self.bundle = Path(bundle)

    def check_current(self, manifest: dict) -> None:
        pass  # loaded afresh below

    def table(self, classes):
        from froster_edge.bundle.relabel import BundleTextEncoder

        return BundleTextEncoder.load(self.bundle).table(classes)


def pipeline_run(bundle: Path, options, web_options=None, adds: list[str] | None = None, client=None,
                 reload_encoder: bool = False) -> dict:
    """One pipeline run (the web view on when `web_options`), as `froster-edge run` wires it;
    `reload_encoder`: the text encoder loaded for every vocabulary change (the old way), for comparison."""
    from froster_edge.runtime.pipeline import Pipeline
    from froster_edge.runtime.site.web import start_web
    from froster_edge.runtime.site.web.live import Hub

    hub = Hub([str(s) for s in options.sources], web_options) if web_options else None
    sinks = [hub] if hub else []
    pipeline = Pipeline(bundle, options, list(sinks), list(sinks))
    web = start_web(pipeline, hub, web_options) if hub else None
    if web is not None and reload_encoder:
        web.vocabulary.loaded.wait()  # its own load done first, or it would replace this one
        web.vocabulary.encoder = ReloadedEncoder(bundle)
    posts: list[float] = []
    cpu0 = time.process_time()
    try:
        if client is not None:
            client.stdin.write(web.url + "\n")
            client.stdin.flush()
            client.stdout.readline()  # connected and waiting before the first frame
        if adds:
            import threading

            def add_all() -> None:
                for name in adds:
                    while len(hub.decisions()) < 2 or hub.summary()["pending_change"]:
                        time.sleep(0.2)
                    t = time.monotonic()
                    req = urllib.request.Request(web.url + "api/vocabulary", json.dumps({"add": name}).encode(),
                                                 {"Content-Type": "application/json"})
                    urllib.request.urlopen(req, timeout=600).read()
                    posts.append(time.monotonic() - t)
                while hub.summary()["pending_change"] or len(hub.changes) < len(adds):
                    time.sleep(0.2)
                pipeline.stop.set()

            threading.Thread(target=add_all, daemon=True).start()
        stats = pipeline.run().to_dict()
        cpu = time.process_time() - cpu0
    finally:
        pipeline.backend.close()
        if web is not None:
            web.close()
    out = {"decisions": stats["decisions"], "decisions_per_s": stats["decisions"] / stats["wall_s"], "cpu_s": cpu}
    if hub is not None:
        out["frames_encoded"], out["web_cpu_s"] = hub.frames_encoded, hub.cpu_s
        out["changes"], out["post_s"] = list(hub.changes), posts
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(ROOT / "configs" / "models" / "tiny-vit.json"))
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--bundle", type=Path)
    p.add_argument("--decisions", type=int, default=150, help="decisions per throughput run")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--adds", type=int, default=3)
    p.add_argument("--json", type=Path)
    args = p.parse_args()

    from froster_edge.bundle import manifest as mf
    from froster_edge.runtime.options import RUN_DEFAULTS
    from froster_edge.runtime.site.web.options import HttpOptions

    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle or export_random(args.model, args.frames, 1, Path(tmp))
        labels = Path(tmp) / "labels.npz"
        labels.write_bytes((bundle / mf.LABELS_FILE).read_bytes())
        fast = replace(RUN_DEFAULTS, sources=[str(CLIP)], labels=labels, max_decisions=args.decisions,
                       capture=replace(RUN_DEFAULTS.capture, loop=True))
        web = HttpOptions(port=0)
        pairs, shares, cpu_ratios = [], [], []
        client = subprocess.Popen([sys.executable, "-c", CLIENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for rep in range(args.reps):  # ABBA order: a drift in the machine's load favours neither side
            order = [False, True] if rep % 2 == 0 else [True, False]
            runs = {w: pipeline_run(bundle, fast, web, client=client) if w else pipeline_run(bundle, fast) for w in order}
            without, with_web = runs[False], runs[True]
            pairs.append((without["decisions_per_s"], with_web["decisions_per_s"], with_web["frames_encoded"]))
            shares.append(with_web["web_cpu_s"] / with_web["cpu_s"])
            # decisions per CPU second of the process, with / without: what the web view's work costs
            # the pipeline, less dependent than wall time on what else the machine runs
            cpu_ratios.append((with_web["decisions"] / with_web["cpu_s"]) / (without["decisions"] / without["cpu_s"]))
            print(f"pair {rep}: {without['decisions_per_s']:.3f} vs {with_web['decisions_per_s']:.3f} decisions/s "
                  f"({with_web['frames_encoded']} frames sent; web threads {with_web['web_cpu_s']:.3f} of "
                  f"{with_web['cpu_s']:.1f} CPU s)", file=sys.stderr)
        client.kill()
        client.wait()
        camera = replace(fast, max_decisions=None, capture=replace(fast.capture, realtime=True))
        texts = [f"new action {i}: a person does thing number {i}" for i in range(args.adds)]
        vocab = {}
        for mode in ("reloaded", "kept") if args.adds else ():  # before this change, then now; same table each
            labels.write_bytes((bundle / mf.LABELS_FILE).read_bytes())
            vocab[mode] = pipeline_run(bundle, camera, web, texts, reload_encoder=mode == "reloaded")
            print(f"{mode} text encoder: POST {vocab[mode]['post_s']}, submit -> decision "
                  f"{[c['submit_to_decision_s'] for c in vocab[mode]['changes']]}", file=sys.stderr)
    ratios = [w / o for o, w, _ in pairs]
    result = {"model": str(args.model if args.bundle is None else args.bundle), "pairs": pairs}
    if pairs:  # --reps 0: the vocabulary part alone
        result.update({"ratio_median": statistics.median(ratios), "ratios": ratios,
                       "cpu_ratio_median": statistics.median(cpu_ratios), "cpu_ratios": cpu_ratios,
                       "web_cpu_share_median": statistics.median(shares), "web_cpu_shares": shares,
                       "without_median": statistics.median(o for o, _, _ in pairs),
                       "with_median": statistics.median(w for _, w, _ in pairs)})
    for mode, run in vocab.items():
        result[mode] = {"post_s": run["post_s"], "submit_to_decision_s": [c["submit_to_decision_s"] for c in run["changes"]]}
    result |= {"command": " ".join(["python", "benchmarks/bench_web.py", *sys.argv[1:]])}
    print(json.dumps(result, indent=2))
    if args.json:
        from froster_edge.io import atomic_write_json

        atomic_write_json(args.json, result)


if __name__ == "__main__":
    main()
