"""Searching the archive (site/archive.py) with typed actions: no video is read, no video model runs.

The queries are encoded by the bundle's own text encoder with the prompt ensemble of its label
tables (BundleTextEncoder.table: the same rule `labels` and the web view use), so a query that is
a class name of a table gets exactly that class's row. A decision's score for a query is the
classifier's similarity, embedding . text (the clip embedding is the mean of its frames' unit
features, so this is the mean cosine of its frames to the query); its order over decisions is the
order of that class's logit. With several queries they compete as the classifier's classes do: a
decision's scores are the softmax of logit_scale x similarity over the queries, and a decision
belongs to the query it scores highest for.

Hits and ranges: for each query, the decisions it wins (all of them with one query) whose score is
among the best `hits` fraction of the range's decisions (at least `top`) are hits; consecutive
hits of one camera (no other decision of that camera between them in the order they were made,
at most `gap_s` apart) merge into one time range, ranked by its best score.

Embeddings are read block by block, in place (float16, or int8 codes with a per-row scale: meta's
`encoding`), and converted to float32 (float16 by OpenCV) a CHUNK_ROWS chunk at a time into one
reused buffer; an int8 row's similarity is its codes' product times its
scale: a small chunk stays in the CPU's cache and its matrix product runs on one BLAS thread, where
converting everything at once spends most of its time on fresh pages and a large product on idle
BLAS threads. Memory stays bounded by the per-decision scores.

See docs/archive.md.
"""

from __future__ import annotations

import itertools
import json
import re
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ...errors import ConfigError, shorten
from ...opencv import cv2
from ..classifier import softmax
from .archive import check_space, connect, decode_rows, read_meta

CHUNK_ROWS = 512  # embeddings converted to float32 and scored per numpy call: in cache, and one BLAS thread
THUMB_REACH_S = 60.0  # a range's thumbnail: its camera's nearest to the best decision, at most this far outside it
_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, "w": 604_800.0}


@dataclass(frozen=True)
class SearchOptions:
    camera: str | None = None
    start: float | None = None  # Unix seconds, inclusive
    end: float | None = None
    top: int = 10  # ranges per query
    hits: float = 0.05  # fraction of the range's decisions that can be hits (at least `top`)
    gap_s: float = 10.0  # consecutive hits of a camera at most this far apart merge


@dataclass
class Hit:
    """One time range of one camera for one query."""

    camera: str
    start: float  # wall time (Unix seconds) of its first decision
    end: float
    start_media: float
    end_media: float
    score: float  # its best decision's score
    best_id: int  # that decision's row id
    decisions: int
    best_time: float
    first_id: int
    last_id: int
    thumb_id: int | None = None  # the decision whose thumbnail shows the range (its camera's nearest the best one)
    clip: str | None = None
    snapshot: str | None = None
    event_id: str | None = None
    top: list = field(default_factory=list)  # the best decision's top labels as the run scored them


def parse_since(text: str) -> float:
    """'24h', '90m', '7d', '30s', '2w' -> seconds; anything else is a ConfigError."""
    m = _SINCE.match(text or "")
    if not m or not float(m.group(1)) > 0:
        raise ConfigError(f"--since {shorten(text)!r}: give a positive duration such as 30m, 24h or 7d")
    return float(m.group(1)) * _UNIT_S[m.group(2).lower()]


def parse_when(text: str, flag: str) -> float:
    """An ISO-8601 date/time (UTC unless it says otherwise) or Unix seconds -> Unix seconds."""
    value = (text or "").strip()
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{flag} {shorten(text)!r}: give a date/time such as 2026-12-07T21:00 (UTC) or Unix seconds") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def time_range(since: str | None, start: str | None, end: str | None, now: float | None = None) -> tuple[float | None, float | None]:
    """The (start, end) of --since or --from/--to; one ConfigError line for a bad combination or value."""
    if since is not None and (start is not None or end is not None):
        raise ConfigError("give --since or --from/--to, not both")
    if since is not None:
        return (time.time() if now is None else now) - parse_since(since), None
    lo = parse_when(start, "--from") if start is not None else None
    hi = parse_when(end, "--to") if end is not None else None
    if lo is not None and hi is not None and hi < lo:
        raise ConfigError("--to is before --from")
    return lo, hi


def clean_queries(queries: list[str]) -> list[str]:
    """The queries with runs of white space as one; an empty one is a ConfigError."""
    out = [" ".join(str(q).split()) for q in queries]
    if not out or any(not q for q in out):
        raise ConfigError("give a query: the action to look for, in words (e.g. \"someone climbing a fence\")")
    return out


def open_for_search(path: Path) -> tuple[sqlite3.Connection, dict[str, str]]:
    """The archive opened read-only, its meta read; a missing or foreign file is one ConfigError line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--archive {path}: no such file")
    try:
        conn = connect(path, readonly=True)
    except sqlite3.Error as e:
        raise ConfigError(f"--archive {path}: cannot be opened ({e})") from None
    return conn, read_meta(conn, path)


def _blocks(conn: sqlite3.Connection, o: SearchOptions, dim: int, encoding: str,
            codes: dict[str, int]) -> Iterator[tuple[np.ndarray, np.ndarray, int, np.ndarray, np.ndarray | None]]:
    """(ids, times, camera code, stored values (n, D), per-row scales or None: decode_rows) of the
    decisions in range, one block at
    a time (read in place, no copy): the blocks in the order they were written, then the rows not
    yet packed, so each camera's decisions come in the order they were made. `codes` is filled
    with camera -> code."""
    lo = -np.inf if o.start is None else o.start
    hi = np.inf if o.end is None else o.end
    bounds = [float(max(lo, -1e300)), float(min(hi, 1e300))]
    where, args = "", []
    if o.camera is not None:
        where, args = " AND camera = ?", [o.camera]
    blocks = conn.execute("SELECT camera, ids, times, embeddings FROM blocks WHERE t1 >= ? AND t0 <= ?" + where
                          + " ORDER BY id", [*bounds, *args])
    # CROSS JOIN: the few pending rows drive the join, not a scan of every decision's time in range
    loose = conn.execute("SELECT p.camera, p.decision, d.time, p.embedding FROM pending p CROSS JOIN decisions d ON d.id = "
                         "p.decision WHERE d.time >= ? AND d.time <= ?" + where.replace("camera", "p.camera")
                         + " ORDER BY p.decision", [*bounds, *args])
    packed = ((cam, np.frombuffer(ids, np.int64), np.frombuffer(times, np.float64), emb) for cam, ids, times, emb in blocks)
    single = ((cam, np.array([i], np.int64), np.array([t], np.float64), emb) for cam, i, t, emb in loose)
    for cam, ids, times, emb in itertools.chain(packed, single):
        vectors, scales = decode_rows(emb, len(ids), dim, encoding)
        keep = (times >= lo) & (times <= hi)
        if not keep.all():
            ids, times, vectors = ids[keep], times[keep], vectors[keep]
            scales = None if scales is None else scales[keep]
        if len(ids):
            yield ids, times, codes.setdefault(cam, len(codes)), vectors, scales


def to_float32(values: np.ndarray, out: np.ndarray) -> None:
    """Stored float16 values or int8 codes (n, D) into the float32 rows `out`. float16 goes through
    OpenCV, whose conversion runs on the CPU's vector instructions (F16C) where numpy's cast goes
    value by value; numpy's int8 cast is as fast as OpenCV's."""
    if values.dtype != np.float16:
        np.copyto(out, values)
        return
    got = cv2.multiply(values, 1.0, dst=out, dtype=cv2.CV_32F)
    if not np.shares_memory(got, out):  # OpenCV allocates a new array when `out` does not fit it
        np.copyto(out, got)


def score(embeddings: np.ndarray, texts: np.ndarray, logit_scale: float, scales: np.ndarray | None = None) -> np.ndarray:
    """(N, D) embeddings (times their per-row `scales` when given), (K, D) query rows -> (N, K)
    scores: the similarity with one query, the classifier's softmax over the queries with several."""
    sim = embeddings @ texts.T  # (N, K)
    if scales is not None:
        sim *= scales[:, None]
    if texts.shape[0] == 1:
        return sim
    return softmax(logit_scale * sim.astype(np.float64))


def search(conn: sqlite3.Connection, meta: dict[str, str], queries: list[str], texts: np.ndarray, logit_scale: float,
           options: SearchOptions) -> dict[str, Any]:
    """Score every decision in range, pick each query's hits, merge them into ranges; a JSON-ready dict."""
    dim, encoding = int(meta["embed_dim"]), meta.get("encoding", "float16")
    ids_l, times_l, cams_l, scores_l = [], [], [], []
    codes: dict[str, int] = {}
    t0 = time.perf_counter()
    buf = np.empty((CHUNK_ROWS, dim), np.float32)  # converted a chunk at a time: it stays in the CPU's cache
    sbuf = np.ones(CHUNK_ROWS, np.float32)
    filled = 0

    def flush(n: int) -> None:
        scaled = sbuf[:n] if encoding == "int8" else None
        scores_l.append(score(buf[:n], texts, logit_scale, scaled).astype(np.float32))

    for ids, times, cam, vectors, scales in _blocks(conn, options, dim, encoding, codes):
        ids_l.append(ids)
        times_l.append(times)
        cams_l.append(np.full(len(ids), cam, np.int16))
        start = 0
        while start < len(vectors):
            take = min(CHUNK_ROWS - filled, len(vectors) - start)
            to_float32(vectors[start:start + take], buf[filled:filled + take])
            if scales is not None:
                sbuf[filled:filled + take] = scales[start:start + take]
            filled, start = filled + take, start + take
            if filled == CHUNK_ROWS:
                flush(filled)
                filled = 0
    if filled:
        flush(filled)
    seconds = time.perf_counter() - t0
    n = sum(len(i) for i in ids_l)
    results = []
    if n:
        ids, times, cams = np.concatenate(ids_l), np.concatenate(times_l), np.concatenate(cams_l)
        scores = np.concatenate(scores_l)
        cam_names = sorted(codes, key=codes.get)
        order = np.argsort(cams, kind="stable")  # each camera's decisions together, in the order they were made
        ids, times, cams, scores = ids[order], times[order], cams[order], scores[order]
        winner = scores.argmax(axis=1)
        for k, query in enumerate(queries):
            ranges = _ranges(ids, times, cams, cam_names, scores[:, k], winner == k, options)
            results.append({"query": query, "ranges": [_describe(conn, h) for h in ranges]})
    else:
        results = [{"query": q, "ranges": []} for q in queries]
    return {"archive_rows": n, "score_s": round(seconds, 4), "queries": results,
            "score": "similarity" if len(queries) == 1 else "probability over the queries"}


def _ranges(ids, times, cams, cam_names, s, won, o: SearchOptions) -> list[Hit]:
    n = len(s)
    keep = max(o.top, int(np.ceil(o.hits * n)))
    candidates = np.flatnonzero(won)
    if len(candidates) > keep:
        cut = np.partition(s[candidates], len(candidates) - keep)[len(candidates) - keep]
        candidates = candidates[s[candidates] >= cut]
    positions = np.sort(candidates)
    if len(positions) == 0:
        return []
    # a new range where the hits are not adjacent in their camera's order, change camera, or are too far apart
    new = np.ones(len(positions), bool)
    new[1:] = ((np.diff(positions) != 1) | (np.diff(cams[positions]) != 0)
               | (np.diff(times[positions]) > o.gap_s))
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], len(positions)) - 1
    hs = s[positions]
    best_in = np.maximum.reduceat(hs, starts)
    chosen = np.lexsort((times[positions[starts]], -best_in))[: o.top]  # best first, earlier first on a tie
    out: list[Hit] = []
    for r in chosen:
        a, b = starts[r], ends[r]
        span = positions[a:b + 1]
        best = span[int(np.argmax(s[span]))]
        first, last = positions[a], positions[b]
        out.append(Hit(str(cam_names[cams[first]]), float(times[first]), float(times[last]), 0.0, 0.0, float(s[best]),
                       int(ids[best]), int(len(span)), float(times[best]), int(ids[first]), int(ids[last])))
    return out


def _describe(conn: sqlite3.Connection, h: Hit) -> dict[str, Any]:
    """A range with what the rows hold: media times, the best decision's labels, event, clip, thumbnail."""
    media = dict(conn.execute("SELECT id, media_time FROM decisions WHERE id IN (?, ?)", (h.first_id, h.last_id)).fetchall())
    h.start_media, h.end_media = float(media.get(h.first_id, 0.0)), float(media.get(h.last_id, 0.0))
    best = conn.execute("SELECT top, event_id, clip, snapshot FROM decisions WHERE id = ?", (h.best_id,)).fetchone()
    if best is not None:
        h.top, h.event_id, h.clip, h.snapshot = json.loads(best[0]), best[1], best[2], best[3]
    if h.clip is None:  # another decision of the range may belong to an event with a clip
        other = conn.execute("SELECT clip, snapshot, event_id FROM decisions WHERE camera = ? AND time >= ? AND time <= ? "
                             "AND clip IS NOT NULL LIMIT 1", (h.camera, h.start, h.end)).fetchone()
        if other is not None:
            h.clip, h.snapshot, h.event_id = other
    thumb = conn.execute("SELECT t.decision FROM thumbs t JOIN decisions d ON d.id = t.decision WHERE d.camera = ? "
                         "AND d.time >= ? AND d.time <= ? ORDER BY ABS(d.time - ?) LIMIT 1",
                         (h.camera, h.start - THUMB_REACH_S, h.end + THUMB_REACH_S, h.best_time)).fetchone()
    h.thumb_id = int(thumb[0]) if thumb is not None else None
    out = asdict(h)
    out["score"] = round(h.score, 6)
    out["start_utc"], out["end_utc"] = utc(h.start), utc(h.end)
    return out


def thumbnail(conn: sqlite3.Connection, decision: int) -> bytes | None:
    row = conn.execute("SELECT jpeg FROM thumbs WHERE decision = ?", (int(decision),)).fetchone()
    return bytes(row[0]) if row is not None else None


def utc(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def check_bundle_space(meta: dict[str, str], path: Path, fingerprint: str, dim: int) -> None:
    check_space(meta, path, fingerprint, dim, "the bundle given")


def query_table(encoder, queries: list[str]):
    """The queries' rows through the bundle's text encoder, as a label table of them (one prompt ensemble rule)."""
    from ...prompts import ClassText

    return encoder.table([ClassText.parse(q) for q in queries])


def search_archive(archive: Path, bundle: Path, queries: list[str], options: SearchOptions,
                   encoder=None) -> dict[str, Any]:
    """The whole search: the archive opened and checked against the bundle's model, the queries
    encoded (`encoder`: a BundleTextEncoder kept by the caller, else one is loaded), ranges found."""
    from ...bundle import manifest as mf
    from ...bundle.relabel import BundleTextEncoder

    queries = clean_queries(queries)
    conn, meta = open_for_search(archive)
    try:
        manifest = mf.read_manifest(bundle)
        model = manifest["model"]
        check_bundle_space(meta, Path(archive), model["fingerprint"], int(model["embed_dim"]))
        encoder = encoder or BundleTextEncoder.load(bundle, manifest=manifest)
        table = query_table(encoder, queries)
        result = search(conn, meta, queries, table.embeddings, table.logit_scale / table.temperature, options)
    finally:
        conn.close()
    result["archive"] = str(archive)
    return result
