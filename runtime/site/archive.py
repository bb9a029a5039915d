"""The action archive (`run --archive FILE.db`, a site file's `archive:`): every decision's clip
embedding kept in SQLite, so an action typed later can be searched over the past (site/search.py)
with no model run over the video again.

One row per decision in `decisions`: camera, media time, UTC wall time, the top labels and
scores (JSON), the id of the camera's open action event (the one of the decision's top label,
else the newest), the event's clip and snapshot paths once they are on disk (its "clip" record). Its embedding (the
vector the classifier scored, encoded as `meta`'s `encoding` says: float16 by default, or int8
with a per-row scale, which searches faster; see `encode_rows`) waits in `pending` until the camera has
`PACK` of them, which move in one transaction into one row of `blocks` (their ids, times and
embeddings side by side; the decision rows keep their block number, the pending rows are
deleted, freeing whole pages): a search then reads a few thousand blobs instead of a million rows.
A JPEG thumbnail (`thumbs`) is kept at most every `thumb_every_s` of
a camera's media time (a live source's is its running time; a file read faster than real time
still gets one per that many seconds of video), from the newest frame its frame thread handed over.

The decision loop only copies the embedding (float32) and puts one tuple on a bounded queue; a
writer thread commits what is queued at most every `commit_s`, encodes embeddings and thumbnails, and enforces
retention (`retain_days`, `max_mb`: the oldest decisions first, whole blocks at a time) while the
run goes on. A full queue drops the decision (counted); a write that fails (a full disk, a
read-only file) is said once and counted, the run goes on deciding. WAL mode: a search or the web
view reads while the run writes, and a killed run leaves every committed row readable.

`meta` records the format, the model fingerprint and the embedding size: a run or a search with
another model's bundle is refused (its embeddings live in another space).

See docs/archive.md.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from ...errors import ConfigError
from ...schema import FilePath, Model

log = logging.getLogger(__name__)

FORMAT = "froster-edge-archive"
VERSION = 1
PACK = 256  # decisions of one camera per block
DAY_S = 86_400.0
ENCODINGS = ("float16", "int8")  # a new archive's embeddings (ArchiveOptions.encoding); an existing one keeps its own
MMAP_BYTES = 2**31 - 2**16  # SQLite's default ceiling on a mapping
SCALE_BYTES = 4  # int8: each row is its float32 scale, then its codes

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY,
    camera TEXT NOT NULL,
    media_time REAL NOT NULL,
    time REAL NOT NULL,
    top TEXT NOT NULL,
    event_id TEXT,
    clip TEXT,
    snapshot TEXT,
    block INTEGER
);
CREATE INDEX IF NOT EXISTS decisions_time ON decisions (time);
CREATE TABLE IF NOT EXISTS pending (decision INTEGER PRIMARY KEY, camera TEXT NOT NULL, embedding BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS pending_camera ON pending (camera, decision);
CREATE INDEX IF NOT EXISTS decisions_event ON decisions (event_id) WHERE event_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS blocks (
    id INTEGER PRIMARY KEY,
    camera TEXT NOT NULL,
    first_id INTEGER NOT NULL,
    last_id INTEGER NOT NULL,
    t0 REAL NOT NULL,
    t1 REAL NOT NULL,
    ids BLOB NOT NULL,
    times BLOB NOT NULL,
    embeddings BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS blocks_time ON blocks (t1);
CREATE TABLE IF NOT EXISTS thumbs (decision INTEGER PRIMARY KEY, jpeg BLOB NOT NULL);
"""



def encode_rows(vectors: np.ndarray, encoding: str) -> list[bytes]:
    """(n, D) embeddings -> one stored row each. int8: the row's largest magnitude maps to 127, the
    scale (float32, little-endian) first, then the codes, so a block of rows is their concatenation."""
    v = np.asarray(vectors, np.float32).reshape(len(vectors), -1)
    if encoding == "float16":
        return [r.tobytes() for r in v.astype("<f2")]
    peak = np.abs(v).max(axis=1)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype("<f4")
    codes = np.clip(np.rint(v / scale[:, None]), -127, 127).astype(np.int8)
    return [s.tobytes() + c.tobytes() for s, c in zip(scale, codes, strict=False)]


def decode_rows(blob: bytes, n: int, dim: int, encoding: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Stored rows -> (codes or float16 values (n, D), a view in place; per-row scales or None):
    the embedding is codes x scale."""
    if encoding == "float16":
        return np.frombuffer(blob, "<f2").reshape(n, dim), None
    raw = np.frombuffer(blob, np.uint8).reshape(n, SCALE_BYTES + dim)
    return raw[:, SCALE_BYTES:].view(np.int8), raw[:, :SCALE_BYTES].copy().view("<f4").ravel()


class ArchiveOptions(Model):
    """The archive's file and limits. 0 turns a limit (or the thumbnails) off."""

    file: FilePath
    thumb_every_s: Annotated[float, Field(ge=0)] = 10.0  # at most one thumbnail per camera this often
    thumb_width: Annotated[int, Field(ge=16)] = 160  # thumbnails scaled down to at most this wide
    retain_days: Annotated[float, Field(ge=0)] = 30.0  # decisions older than this are deleted
    max_mb: Annotated[float, Field(ge=0)] = 4096.0  # the database's used pages beyond this: the oldest decisions deleted
    commit_s: Annotated[float, Field(gt=0)] = 1.0  # the writer commits what is queued at most this often
    queue: Annotated[int, Field(ge=1)] = 4096  # decisions waiting for the writer; beyond, dropped (counted)
    encoding: Literal["float16", "int8"] = ENCODINGS[0]  # a new archive's embeddings: float16, or int8 (a per-row scale; half the bytes)


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    """A connection to an archive file (read-only: never creates or changes it)."""
    if readonly:
        conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
        conn.execute(f"PRAGMA mmap_size={MMAP_BYTES}")  # a search's blobs copied from the mapped file, not read a page a call
        return conn
    conn = sqlite3.connect(str(path), check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL: a commit survives a killed process; an OS crash may lose the last
    conn.execute("PRAGMA journal_size_limit=67108864")
    return conn


def read_meta(conn: sqlite3.Connection, path: Path) -> dict[str, str]:
    """The archive's meta table; a file that is not an archive is a ConfigError naming it."""
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError as e:
        raise ConfigError(f"{path} is not a froster-edge archive ({e})") from None
    if meta.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a froster-edge archive (no {FORMAT} record)")
    if meta.get("version") != str(VERSION):
        raise ConfigError(f"{path}: archive version {meta.get('version')} is not supported (this froster-edge reads {VERSION})")
    meta.setdefault("encoding", "float16")
    if meta["encoding"] not in ENCODINGS:
        raise ConfigError(f"{path}: embedding encoding {meta['encoding']!r} is not supported (this froster-edge reads "
                          f"{', '.join(ENCODINGS)})")
    return meta


def check_space(meta: dict[str, str], path: Path, fingerprint: str, dim: int, what: str) -> None:
    """Refuse a bundle whose model is not the one the archive's embeddings came from."""
    if meta.get("fingerprint") != fingerprint or int(meta.get("embed_dim", -1)) != dim:
        raise ConfigError(f"{path} holds embeddings of model {meta.get('fingerprint', '?')[:16]} "
                          f"({meta.get('embed_dim')}-d); {what} is model {fingerprint[:16]} ({dim}-d): "
                          "another embedding space, its scores would be meaningless")


def open_archive(path: Path, fingerprint: str, dim: int, encoding: str = ENCODINGS[0]) -> sqlite3.Connection:
    """Open (or create, its embeddings as `encoding`) an archive for writing, its model checked; one
    ConfigError line on any problem. An existing archive keeps the encoding its meta records."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ConfigError(f"--archive {path}: folder {path.parent} does not exist")
    try:
        conn = connect(path)
        conn.executescript(SCHEMA)
        if conn.execute("SELECT COUNT(*) FROM meta").fetchone()[0] == 0:
            with conn:
                conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                                 [("format", FORMAT), ("version", str(VERSION)), ("fingerprint", fingerprint),
                                  ("embed_dim", str(dim)), ("encoding", encoding), ("created", f"{time.time():.3f}")])
    except sqlite3.DatabaseError as e:
        raise ConfigError(f"--archive {path}: cannot be opened as an archive ({e})") from None
    check_space(read_meta(conn, path), path, fingerprint, dim, "this run's bundle")
    return conn


@dataclass
class ArchiveCounters:
    rows: int = 0  # decisions committed by this run
    thumbs: int = 0
    dropped: int = 0  # found the writer's queue full
    failed: int = 0  # lost to a failed write
    deleted: int = 0  # removed by retention
    errors: int = 0
    writer_cpu_s: float = 0.0  # CPU seconds the writer thread has used: what the archive costs beside the pipeline


class Archive:
    """A decision sink, a frame sink and an event sink writing the archive on its own thread."""

    needs_every_frame = False

    def __init__(self, options: ArchiveOptions, fingerprint: str, dim: int, clips_dir: Path | None = None):
        self.options, self.clips_dir = options, clips_dir
        self.path = Path(options.file)
        self.conn = open_archive(self.path, fingerprint, dim, options.encoding)
        self.encoding = read_meta(self.conn, self.path)["encoding"]
        self.counters = ArchiveCounters()
        self._queue: queue.Queue = queue.Queue(options.queue)
        self._frames: dict[int, np.ndarray] = {}  # newest frame per stream (a reference, as the web view keeps)
        self._gone: set[int] = set()  # streams of removed cameras: a frame their threads hand over late is not kept
        self._frames_lock = threading.Lock()
        self._last_thumb: dict[str, float] = {}
        self._open: dict[str, dict[str, str]] = {}  # camera -> label -> open event id
        self._failing = False
        self._last_retention = 0.0
        self._closing = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, name="archive-writer", daemon=True)
        self._writer.start()

    @property
    def frame_fps(self) -> float:
        """Frames the readers hand over for thumbnails beyond the sampled ones (barely any)."""
        return 1.0 / self.options.thumb_every_s if self.options.thumb_every_s > 0 else 0.0

    # --- producers (never wait) ---

    def frame(self, stream: int, frame, decision) -> None:
        if frame.image is not None:
            with self._frames_lock:
                if stream not in self._gone:
                    self._frames[stream] = frame.image

    def stream_removed(self, stream: int) -> None:
        """A reload removed the stream's camera: its newest frame is let go (a full frame per removed camera
        would otherwise stay for the rest of the run)."""
        with self._frames_lock:
            self._gone.add(stream)
            self._frames.pop(stream, None)

    def emit(self, decision) -> None:
        if decision.embedding is None:
            return
        camera = decision.camera
        thumb = None
        every = self.options.thumb_every_s
        if every > 0 and abs(decision.media_time - self._last_thumb.get(camera, -np.inf)) >= every:
            thumb = self._frames.get(decision.stream)  # media time: a file read fast still gets one per 10 s of video
            if thumb is not None:
                self._last_thumb[camera] = decision.media_time
        opened = self._open.get(camera, {})
        event_id = opened.get(decision.label) or (next(reversed(opened.values())) if opened else None)
        row = ("row", camera, float(decision.media_time), float(decision.time),
               np.array(decision.embedding, dtype=np.float32),
               [(n, round(float(s), 6)) for n, s in decision.top], event_id, thumb)
        self._put(row)

    def event(self, event) -> None:
        """Open events tag the decisions; an event's "clip" record (its files on disk) fills in
        their clip and snapshot paths: only files the clip writer renamed into place are named."""
        if event.phase == "start":
            self._open.setdefault(event.camera, {})[event.label] = event.id
            self._put(("start", event.id, event.camera, event.start_time))
        elif event.phase == "end":
            opened = self._open.get(event.camera, {})
            if opened.get(event.label) == event.id:
                del opened[event.label]
        elif event.phase == "clip" and (event.clip or event.snapshot):
            folder = self.clips_dir
            clip = str(folder / event.clip) if folder is not None and event.clip else None
            snapshot = str(folder / event.snapshot) if folder is not None and event.snapshot else None
            self._put(("clip", event.id, clip, snapshot))

    def camera_removed(self, camera: str) -> None:
        self._open.pop(camera, None)
        self._last_thumb.pop(camera, None)

    def _put(self, item: tuple) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.counters.dropped += 1

    def close(self) -> None:
        if self._writer.is_alive():
            self._closing.set()
            self._queue.put(None)
            self._writer.join(timeout=60.0)
        self.conn.close()

    def stats(self) -> dict[str, Any]:
        return {"file": str(self.path), **vars(self.counters)}

    # --- the writer thread ---

    def _write_loop(self) -> None:
        done = False
        while not done:
            items = [self._queue.get()]
            if items[-1] is not None:  # then sleep while the batch gathers: woken once a commit, not once a decision
                self._closing.wait(self.options.commit_s)
            while items[-1] is not None:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if items[-1] is None:
                items.pop()
                done = True
            if items:
                self._commit(items)
            if done or time.monotonic() - self._last_retention >= 30.0:
                self._last_retention = time.monotonic()
                self._guarded(self._retention, recovers=False)
            self.counters.writer_cpu_s = round(time.thread_time(), 4)

    def _commit(self, items: list[tuple]) -> None:
        rows = [i for i in items if i[0] == "row"]
        thumbs = {i: self._thumb(item[7]) for i, item in enumerate(rows) if item[7] is not None}
        embeddings = encode_rows(np.stack([item[4] for item in rows]), self.encoding) if rows else []

        def write() -> None:
            with self.conn:
                cameras = set()
                for i, item in enumerate(rows):
                    _, camera, media, wall, _, top, event_id, _ = item
                    cur = self.conn.execute(
                        "INSERT INTO decisions (camera, media_time, time, top, event_id) VALUES (?, ?, ?, ?, ?)",
                        (camera, media, wall, json.dumps(top), event_id))
                    self.conn.execute("INSERT INTO pending (decision, camera, embedding) VALUES (?, ?, ?)",
                                      (cur.lastrowid, camera, embeddings[i]))
                    if thumbs.get(i) is not None:
                        self.conn.execute("INSERT INTO thumbs (decision, jpeg) VALUES (?, ?)", (cur.lastrowid, thumbs[i]))
                    cameras.add(camera)
                for item in items:
                    if item[0] == "start":  # the entering run's decisions came before the event was announced
                        self.conn.execute("UPDATE decisions SET event_id = ? WHERE camera = ? AND time >= ? "
                                          "AND event_id IS NULL", (item[1], item[2], item[3]))
                    elif item[0] == "clip":
                        self.conn.execute("UPDATE decisions SET clip = ?, snapshot = ? WHERE event_id = ?",
                                          (item[2], item[3], item[1]))
                for camera in cameras:
                    self._pack(camera)

        if self._guarded(write):
            self.counters.rows += len(rows)
            self.counters.thumbs += sum(1 for t in thumbs.values() if t is not None)
        else:
            self.counters.failed += len(rows)

    def _thumb(self, image: np.ndarray) -> bytes | None:
        from .web.live import encode_jpeg

        try:
            return encode_jpeg(image, self.options.thumb_width, 75)
        except Exception as e:  # noqa: BLE001 - a thumbnail is never worth a decision
            log.warning("archive: thumbnail not encoded (%s)", e)
            return None

    def _pack(self, camera: str) -> None:
        """Move a camera's oldest PACK unpacked decisions into one block (in the caller's transaction)."""
        while True:
            rows = self.conn.execute("SELECT p.decision, d.time, p.embedding FROM pending p JOIN decisions d "
                                     "ON d.id = p.decision WHERE p.camera = ? ORDER BY p.decision LIMIT ?",
                                     (camera, PACK)).fetchall()
            if len(rows) < PACK:
                return
            ids = np.array([r[0] for r in rows], np.int64)
            times = np.array([r[1] for r in rows], np.float64)
            cur = self.conn.execute(
                "INSERT INTO blocks (camera, first_id, last_id, t0, t1, ids, times, embeddings) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (camera, int(ids[0]), int(ids[-1]), float(times.min()), float(times.max()), ids.tobytes(),
                 times.tobytes(), b"".join(r[2] for r in rows)))
            marks = ",".join("?" * len(ids))
            self.conn.execute(f"UPDATE decisions SET block = ? WHERE id IN ({marks})", (cur.lastrowid, *map(int, ids)))
            self.conn.execute(f"DELETE FROM pending WHERE decision IN ({marks})", tuple(map(int, ids)))

    def _guarded(self, write, recovers: bool = True) -> bool:
        """Run one write; a failure (full disk, read-only file, locked) is said once and counted, and
        the next commit that works says so (`recovers`: retention may delete nothing and prove nothing)."""
        try:
            write()
        except sqlite3.Error as e:
            self.counters.errors += 1
            if not self._failing:
                self._failing = True
                log.warning("archive: %s: writes failing (%s); the run goes on deciding without archiving", self.path, e)
            return False
        if self._failing and recovers:
            self._failing = False
            log.warning("archive: %s: writing again", self.path)
        return True

    def _retention(self) -> None:
        deleted = enforce_retention(self.conn, self.options.retain_days, self.options.max_mb)
        self.counters.deleted += deleted


def used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of the database's pages in use (freed pages are reused, so the file stays near this)."""
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    count = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return int(page) * (int(count) - int(free))


def enforce_retention(conn: sqlite3.Connection, retain_days: float, max_mb: float, now: float | None = None) -> int:
    """Delete the oldest decisions (with their thumbnails and whole blocks) older than
    `retain_days`, then while the used pages exceed `max_mb`; returns how many were deleted."""
    deleted = 0
    if retain_days > 0:
        cutoff = (time.time() if now is None else now) - retain_days * DAY_S
        last = conn.execute("SELECT MAX(id) FROM decisions WHERE time < ?", (cutoff,)).fetchone()[0]
        if last is not None:
            deleted += _delete_through(conn, int(last))
    if max_mb > 0:
        limit = int(max_mb * 2**20)
        while used_bytes(conn) > limit:
            total, first = conn.execute("SELECT COUNT(*), MIN(id) FROM decisions").fetchone()
            if not total:
                break
            step = max(PACK, total // 20)  # a twentieth at a time: few rounds, little overshoot
            last = conn.execute("SELECT id FROM decisions ORDER BY id LIMIT 1 OFFSET ?", (min(step, total) - 1,)).fetchone()[0]
            deleted += _delete_through(conn, int(last))
    return deleted


def _delete_through(conn: sqlite3.Connection, last: int) -> int:
    """Delete decisions with id <= last, widened to whole blocks (a block is never split)."""
    while True:
        widest = conn.execute("SELECT MAX(last_id) FROM blocks WHERE first_id <= ?", (last,)).fetchone()[0]
        if widest is None or widest <= last:
            break
        last = int(widest)
    with conn:
        conn.execute("DELETE FROM thumbs WHERE decision <= ?", (last,))
        conn.execute("DELETE FROM pending WHERE decision <= ?", (last,))
        conn.execute("DELETE FROM blocks WHERE last_id <= ?", (last,))
        n = conn.execute("DELETE FROM decisions WHERE id <= ?", (last,)).rowcount
    return int(n)
