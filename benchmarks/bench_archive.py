"""The archive's targets (docs/archive.md, issue 30): what writing it costs the pipeline, how fast a
search scores 100k / 1M / 5M stored decisions, and how much a camera-day takes on disk.

1. Write cost: random-weights bundles (the tiny test model, and --model, ViT-B-32 by default) run
   --reps times each way, interleaved, over --streams copies of the clip read as fast as possible:
   decisions to a sink that drops them, and the same plus the archive (its defaults: a thumbnail
   every 10 s of media time, commits every 1 s on the writer thread). Reported: decisions/s and
   CPU ms per decision (all threads), medians, and their ratios (the order of the two runs
   alternates); and the accounted cost: the CPU time spent in the archive's calls on the
   pipeline's threads plus the archive writer thread's own CPU (its `writer_cpu_s`), per decision,
   over a plain decision's CPU, which a loaded machine does not blur.
2. Search: archives of N decisions of --dim embeddings (each of --encodings) (random vectors, 4 cameras, one
   decision a second) are written in the archive's own layout (blocks of PACK rows, as a run packs
   them) by a bulk writer here, then `search.search` scores all of them against one query row and
   merges the hits: its wall time and the process's CPU time, best of --search-reps, per N (the
   page cache warm: the file was just written), with search's OpenCV conversion to float32 and,
   interleaved, with numpy's cast in its place (what search used before). The query's text encoding (one call to the
   bundle's text encoder) is not included.
3. Storage: one camera-day at one decision a second (86,400 decisions of --dim float16) through
   the Archive class, with thumbnails of the clip's frames every 10 s and without: the database's
   used bytes.
Usage:
    python benchmarks/bench_archive.py [--model ViT-B-32] [--reps 3] [--sizes 100000,1000000,5000000] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
CLIP = ROOT / "examples" / "clips" / "stgcn_clean_and_jerk.mp4"


class Drop:
    def emit(self, decision) -> None:
        pass

    def close(self) -> None:
        pass


def timed_calls(obj, names: tuple[str, ...]) -> dict[str, float]:
    """Wrap obj's methods `names` to add up the CPU time their calling threads spend in them (the
    pipeline's own threads: the decision loop's emit, the frame threads' frame). Thread CPU time, not
    wall time: a call's wall time also counts the waits for the GIL while any other thread runs."""
    spent = dict.fromkeys(names, 0.0)
    for name in names:
        method = getattr(obj, name)

        def timed(*args, _method=method, _name=name, **kwargs):
            t = time.thread_time()
            try:
                return _method(*args, **kwargs)
            finally:
                spent[_name] += time.thread_time() - t

        setattr(obj, name, timed)
    return spent


def one_run(bundle: Path, opened, streams: int, decisions: int, archive_file: Path | None) -> dict:
    from froster_edge.bundle import manifest as mf
    from froster_edge.runtime.options import CameraOptions, CaptureOptions, RunOptions
    from froster_edge.runtime.pipeline import Pipeline
    from froster_edge.runtime.site.archive import Archive, ArchiveOptions

    options = RunOptions(cameras=[CameraOptions(f"cam{i}", str(CLIP)) for i in range(streams)],
                         capture=CaptureOptions(loop=True), max_decisions=decisions)
    sinks: list = [Drop()]
    frame_sinks: list = []
    archive = None
    if archive_file is not None:
        model = mf.read_manifest(bundle)["model"]
        archive = Archive(ArchiveOptions(file=archive_file), model["fingerprint"], int(model["embed_dim"]))
        calls = timed_calls(archive, ("emit", "frame"))
        sinks.append(archive)
        frame_sinks.append(archive)
    pipeline = Pipeline(bundle, options, sinks, frame_sinks, opened=opened)
    cpu = time.process_time()
    stats = pipeline.run().to_dict()
    cpu = time.process_time() - cpu
    out = {"decisions": stats["decisions"], "decisions_per_s": stats["decisions_per_s"],
           "cpu_ms_per_decision": round(1000 * cpu / max(1, stats["decisions"]), 3)}
    if archive is not None:
        archive.close()  # the writer's last commit counted
        out["archive"] = archive.stats()
        out["writer_cpu_ms_per_decision"] = round(1000 * out["archive"]["writer_cpu_s"] / max(1, stats["decisions"]), 4)
        out["calls_ms_per_decision"] = round(1000 * sum(calls.values()) / max(1, stats["decisions"]), 4)
    return out


def write_cost(name: str, bundle: Path, streams: int, decisions: int, reps: int, tmp: Path) -> dict:
    from froster_edge.bundle import manifest as mf
    from froster_edge.runtime.backends import open_backend

    opened = open_backend("auto", bundle, mf.read_manifest(bundle))
    one_run(bundle, opened, streams, decisions, None)  # warm-up
    plain, kept = [], []
    for r in range(reps):
        db = tmp / f"{name}-{r}.db"
        if r % 2:  # alternate which run comes first: a machine slowing or speeding up over a pair favours neither
            kept.append(one_run(bundle, opened, streams, decisions, db))
            plain.append(one_run(bundle, opened, streams, decisions, None))
        else:
            plain.append(one_run(bundle, opened, streams, decisions, None))
            kept.append(one_run(bundle, opened, streams, decisions, db))
        print(f"{name} rep {r}: plain {plain[-1]['decisions_per_s']:.2f}/s {plain[-1]['cpu_ms_per_decision']:.1f} ms CPU; "
              f"archive {kept[-1]['decisions_per_s']:.2f}/s {kept[-1]['cpu_ms_per_decision']:.1f} ms CPU "
              f"({kept[-1]['archive']['rows']} rows, {kept[-1]['archive']['thumbs']} thumbs, "
              f"{kept[-1]['archive']['dropped']} dropped; writer thread {kept[-1]['writer_cpu_ms_per_decision']} ms CPU, "
              f"archive calls {kept[-1]['calls_ms_per_decision']} ms per decision)", file=sys.stderr)
    med = {k: {m: statistics.median(x[m] for x in runs) for m in ("decisions_per_s", "cpu_ms_per_decision")}
           for k, runs in (("plain", plain), ("archive", kept))}
    med["archive_over_plain_decisions_per_s"] = round(med["archive"]["decisions_per_s"] / med["plain"]["decisions_per_s"], 4)
    # what the archive adds to a decision, on the pipeline's threads (its calls' CPU) and beside them (the
    # writer thread's CPU), over a plain decision's CPU: a bound on the decisions/s it can cost a
    # machine whose cores the pipeline keeps busy, and one that a loaded machine does not blur
    med["accounted_cost"] = round(statistics.median(
        (k["calls_ms_per_decision"] + k["writer_cpu_ms_per_decision"]) / p["cpu_ms_per_decision"]
        for p, k in zip(plain, kept, strict=True)), 5)
    med["pair_ratios"] = [round(k["decisions_per_s"] / p["decisions_per_s"], 4) for p, k in zip(plain, kept, strict=True)]
    med["median_pair_ratio"] = round(statistics.median(med["pair_ratios"]), 4)
    med["archive_over_plain_cpu"] = round(med["archive"]["cpu_ms_per_decision"] / med["plain"]["cpu_ms_per_decision"], 4)
    med["runs"] = {"plain": plain, "archive": kept}
    opened.backend.close()
    return med


def bulk_archive(path: Path, rows: int, dim: int, encoding: str, seed: int = 0) -> None:
    """An archive of `rows` random decisions in the layout a run leaves (meta, decision rows, blocks
    of PACK per camera, embeddings as `encoding`), written in bulk."""
    from froster_edge.runtime.site.archive import PACK, encode_rows, open_archive

    conn = open_archive(path, "bench", dim, encoding)
    conn.execute("PRAGMA synchronous=OFF")
    rng = np.random.default_rng(seed)
    cameras, t0 = 4, 1.8e9
    per_block = PACK * cameras
    next_id = 1
    for start in range(0, rows, per_block):
        with conn:  # a transaction per round: the WAL stays small (one transaction of 5M rows filled a disk)
            n = min(per_block, rows - start)
            ids = np.arange(next_id, next_id + n, dtype=np.int64)
            times = t0 + (start + np.arange(n)) / cameras  # each camera one decision a second
            cams = (np.arange(n) % cameras)
            emb = rng.standard_normal((n, dim)).astype(np.float32)
            emb /= np.linalg.norm(emb, axis=1, keepdims=True)
            for c in range(cameras):
                sel = cams == c
                if not sel.any():
                    continue
                cur = conn.execute("INSERT INTO blocks (camera, first_id, last_id, t0, t1, ids, times, embeddings) "
                                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                   (f"cam{c}", int(ids[sel][0]), int(ids[sel][-1]), float(times[sel].min()),
                                    float(times[sel].max()), ids[sel].tobytes(), times[sel].tobytes(),
                                    b"".join(encode_rows(emb[sel], encoding))))
                block = cur.lastrowid
                conn.executemany("INSERT INTO decisions (id, camera, media_time, time, top, block) VALUES (?, ?, ?, ?, ?, ?)",
                                 [(int(i), f"cam{c}", float(t - t0), float(t), '[["x", 0.5]]', block)
                                  for i, t in zip(ids[sel], times[sel], strict=False)])
            next_id += n
    conn.close()


def _numpy_cast(values: np.ndarray, out: np.ndarray) -> None:
    np.copyto(out, values)  # the conversion search used before OpenCV's


def search_speed(sizes: list[int], dim: int, encoding: str, reps: int, tmp: Path) -> list[dict]:
    from froster_edge.runtime.site import search as search_module
    from froster_edge.runtime.site.search import SearchOptions, open_for_search, search

    converters = {"opencv": search_module.to_float32, "numpy": _numpy_cast}

    out = []
    query = np.random.default_rng(99).standard_normal((1, dim)).astype(np.float32)
    query /= np.linalg.norm(query)
    for n in sizes:
        path = tmp / f"search-{n}.db"
        t = time.perf_counter()
        bulk_archive(path, n, dim, encoding)
        built = time.perf_counter() - t
        best = {c: (float("inf"), float("inf")) for c in converters}
        found = {}
        for _ in range(reps):
            for convert, fn in converters.items():  # interleaved: each rep times every conversion once
                conn, meta = open_for_search(path)
                search_module.to_float32 = fn
                try:
                    t, c = time.perf_counter(), time.process_time()
                    result = search(conn, meta, ["q"], query, 100.0, SearchOptions())
                    wall, cpu = time.perf_counter() - t, time.process_time() - c
                finally:
                    search_module.to_float32 = converters["opencv"]
                    conn.close()
                best[convert] = (min(best[convert][0], wall), min(best[convert][1], cpu))
                found[convert] = [(r["best_id"], r["score"]) for r in result["queries"][0]["ranges"]]
                assert result["archive_rows"] == n
        assert found["opencv"] == found["numpy"], "the two conversions ranked differently"
        wall, cpu = best["opencv"]
        row = {"rows": n, "encoding": encoding, "search_s": round(wall, 3), "search_cpu_s": round(cpu, 3),
               "numpy_cast_search_s": round(best["numpy"][0], 3), "numpy_cast_search_cpu_s": round(best["numpy"][1], 3),
               "file_mb": round(path.stat().st_size / 2**20, 1), "built_s": round(built, 1)}
        print(f"search over {n} {encoding} rows: {wall:.3f} s wall, {cpu:.3f} s CPU (numpy's cast instead: "
              f"{best['numpy'][0]:.3f} s wall, {best['numpy'][1]:.3f} s CPU; file {row['file_mb']} MB)", file=sys.stderr)
        out.append(row)
        path.unlink()
        for suffix in ("-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    return out


def storage(dim: int, tmp: Path) -> dict:
    """One camera-day at a decision a second through the Archive class, with and without thumbnails."""
    from froster_edge.opencv import cv2
    from froster_edge.runtime.site.archive import Archive, ArchiveOptions, used_bytes

    cap = cv2.VideoCapture(str(CLIP))
    frames = []
    while len(frames) < 300:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))

    class F:
        def __init__(self, image):
            self.image = image

    class D:
        def __init__(self, i, emb):
            self.camera, self.stream, self.media_time, self.time = "cam0", 0, float(i), 1.8e9 + i
            self.label, self.top = "arm wrestling", [("arm wrestling", 0.41), ("yoga", 0.22), ("fencing", 0.1)]
            self.embedding = emb

    rng = np.random.default_rng(0)
    out = {}
    for name, every in (("with_thumbnails", 10.0), ("without_thumbnails", 0.0)):
        path = tmp / f"day-{name}.db"
        a = Archive(ArchiveOptions(file=path, thumb_every_s=every, max_mb=0, retain_days=0, queue=200_000), "bench", dim)
        for i in range(86_400):
            if every:
                a.frame(0, F(frames[i % len(frames)]), None)
            a.emit(D(i, rng.standard_normal(dim).astype(np.float32) * 0.05))
            if i % 5000 == 4999:
                time.sleep(0.05)  # let the writer drain: a day's decisions come over a day, not in a burst
        a.close()
        conn = sqlite3.connect(path)
        used = used_bytes(conn)
        conn.close()
        out[name] = {"rows": a.counters.rows, "thumbs": a.counters.thumbs, "dropped": a.counters.dropped,
                     "used_mb": round(used / 2**20, 1), "file_mb": round(path.stat().st_size / 2**20, 1),
                     "bytes_per_decision": round(used / max(1, a.counters.rows), 1)}
        print(f"camera-day {name}: {out[name]}", file=sys.stderr)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="ViT-B-32")
    p.add_argument("--streams", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--decisions", type=int, default=60, help="decisions per ViT run (the tiny runs make 5x as many)")
    p.add_argument("--sizes", default="100000,1000000,5000000")
    p.add_argument("--dim", type=int, default=512, help="embedding size of the search and storage parts (ViT-B: 512)")
    p.add_argument("--search-reps", type=int, default=3)
    p.add_argument("--encodings", default="int8,float16", help="embedding encodings of the search part's archives")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: write, vit (the --model write runs), "
                   "search, storage")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    from froster_edge.io import atomic_write_json

    result: dict = {"machine": {"cpus": os.cpu_count(), "load_before": os.getloadavg()}, "args": vars(args) | {"json": str(args.json)}}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp_s:
        tmp = Path(tmp_s)
        if "write" not in skip:
            from bench_runtime import export_random

            from tests.helpers import export_tiny

            export_tiny(tmp / "tiny", [CLIP], streams=args.streams, max_parity_clips=1)
            result["write_tiny"] = write_cost("tiny", tmp / "tiny", args.streams, 5 * args.decisions, args.reps, tmp)
            if "vit" not in skip:
                (tmp / args.model).mkdir()
                vit = export_random(args.model, 8, args.streams, tmp / args.model)
                result["write_" + args.model] = write_cost(args.model, vit, args.streams, args.decisions, args.reps, tmp)
        if "search" not in skip:
            result["search"] = [row for e in args.encodings.split(",")
                            for row in search_speed([int(s) for s in args.sizes.split(",")], args.dim, e, args.search_reps, tmp)]
        if "storage" not in skip:
            result["camera_day"] = storage(args.dim, tmp)
    result["machine"]["load_after"] = os.getloadavg()
    for key in [k for k in result if k.startswith("write_")]:
        r = result[key]
        print(f"{key}: decisions/s archive/plain {r['archive_over_plain_decisions_per_s']:.3f} (median of pairs "
              f"{r['median_pair_ratio']:.3f}), CPU per decision {r['archive_over_plain_cpu']:.3f}, accounted cost "
              f"{100 * r['accounted_cost']:.3f}% of a decision's CPU", file=sys.stderr)
    if args.json:
        atomic_write_json(args.json, result)


if __name__ == "__main__":
    main()
