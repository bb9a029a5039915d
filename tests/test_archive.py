"""The action archive and `froster-edge search` on real runs of the tiny bundle over the example clips.

The references here read the SQLite file with the schema as documented (docs/archive.md) and the
label table with numpy, and compute the classifier's logits themselves; the search must rank as
they do. A killed run leaves every committed row; a full or read-only database is said once while
the run goes on deciding; bad inputs are one line each.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from froster_edge.bundle import manifest as mf

from .helpers import CLIPS, Collect, assert_one_line_error, cli, sigkill

CLIP_A = CLIPS / "stgcn_clean_and_jerk.mp4"
CLIP_B = CLIPS / "mmaction2_demo_arm_wrestling.mp4"
TOL = 1e-4  # scores ~0.05-1; the stored rows scored in float32 here and in the search: ~1e-6 apart


def unpack(blob: bytes, dim: int, encoding: str) -> np.ndarray:
    """Stored embedding rows as documented: float16 values, or per row a float32 scale then int8 codes."""
    if encoding == "float16":
        return np.frombuffer(blob, "<f2").reshape(-1, dim).astype(np.float64)
    rows = np.frombuffer(blob, np.uint8).reshape(-1, 4 + dim)
    scale = np.array([np.frombuffer(r[:4].tobytes(), "<f4")[0] for r in rows], np.float64)
    return rows[:, 4:].view(np.int8).astype(np.float64) * scale[:, None]


def stored(db: Path) -> dict[int, tuple[str, float, np.ndarray]]:
    """id -> (camera, wall time, embedding) read straight from the file: loose rows and packed blocks."""
    conn = sqlite3.connect(db)
    meta = dict(conn.execute("SELECT key, value FROM meta"))
    dim, encoding = int(meta["embed_dim"]), meta["encoding"]
    rows = {i: (c, t, unpack(e, dim, encoding)[0])
            for i, c, t, e in conn.execute("SELECT d.id, d.camera, d.time, p.embedding FROM pending p JOIN decisions d "
                                           "ON d.id = p.decision")}
    for camera, ids, times, emb in conn.execute("SELECT camera, ids, times, embeddings FROM blocks"):
        e = unpack(emb, dim, encoding)
        for i, t, v in zip(np.frombuffer(ids, np.int64), np.frombuffer(times, np.float64), e, strict=False):
            rows[int(i)] = (camera, float(t), v)
    conn.close()
    return rows


def table(bundle: Path) -> tuple[list[str], np.ndarray, float]:
    with np.load(bundle / mf.LABELS_FILE, allow_pickle=False) as z:
        return [str(n) for n in z["names"]], z["embeddings"].astype(np.float64), float(z["logit_scale"])


def archive_run(bundle: Path, folder: Path, encoding: str | None = None) -> tuple[Path, list[dict]]:
    """Two cameras over two real clips, a decision every sampled frame, blocks of 8 decisions (so both
    the packed and the loose rows are searched); `encoding`: the archive created so beforehand (a
    run keeps an existing archive's encoding), else the run's default."""
    from froster_edge.runtime.site import archive

    db = folder / "site.db"
    if encoding is not None:
        model = mf.read_manifest(bundle)["model"]
        archive.open_archive(db, model["fingerprint"], int(model["embed_dim"]), encoding).close()
    pack, archive.PACK = archive.PACK, 8
    try:
        r = cli("run", "--bundle", str(bundle), "--source", str(CLIP_A), "--source", str(CLIP_B), "--hop", "1",
                "--archive", str(db), "--jsonl")
    finally:
        archive.PACK = pack
    assert r.returncode == 0, r.stderr
    decisions = [json.loads(line) for line in r.stdout.splitlines()]
    return db, decisions


@pytest.fixture(scope="module")
def archived(tiny_bundle, tmp_path_factory):
    return archive_run(tiny_bundle, tmp_path_factory.mktemp("archive"))


@pytest.fixture(scope="module")
def archived_int8(tiny_bundle, tmp_path_factory):
    return archive_run(tiny_bundle, tmp_path_factory.mktemp("archive8"), "int8")


def search_json(*args: str) -> dict:
    r = cli("search", *args, "--json", "-")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_an_archive_keeps_the_encoding_it_was_created_with(archived, archived_int8):
    for (db, decisions), encoding in ((archived, "float16"), (archived_int8, "int8")):
        conn = sqlite3.connect(db)
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        sizes = {len(e) for (e,) in conn.execute("SELECT embedding FROM pending")}
        conn.close()
        assert meta["encoding"] == encoding
        dim = int(meta["embed_dim"])
        assert sizes <= {2 * dim if encoding == "float16" else 4 + dim}
        assert len(stored(db)) == len(decisions)


def _copy_with_encoding(db: Path, copy: Path, encoding: str | None) -> Path:
    """A copy of an archive whose meta says `encoding` (None: no encoding record, as a file may lack it)."""
    src, dst = sqlite3.connect(db), sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    with dst:
        dst.execute("DELETE FROM meta WHERE key = 'encoding'")
        if encoding is not None:
            dst.execute("INSERT INTO meta (key, value) VALUES ('encoding', ?)", (encoding,))
    dst.close()
    return copy


def test_an_archive_without_an_encoding_record_reads_as_float16(archived, tiny_bundle, tmp_path):
    db, _ = archived
    args = ["yoga", "--bundle", str(tiny_bundle), "--hits", "1", "--top", "1000", "--gap", "0"]
    plain = search_json(*args, "--archive", str(db))["queries"][0]["ranges"]
    bare = search_json(*args, "--archive", str(_copy_with_encoding(db, tmp_path / "bare.db", None)))["queries"][0]["ranges"]
    assert [(r["best_id"], r["score"]) for r in bare] == [(r["best_id"], r["score"]) for r in plain]
    odd = _copy_with_encoding(db, tmp_path / "odd.db", "int4")
    assert_one_line_error(cli("search", *args, "--archive", str(odd)), 1, "embedding encoding 'int4' is not supported")


def test_every_decision_is_archived_with_what_the_run_said(archived):
    db, decisions = archived
    rows = stored(db)
    assert len(rows) == len(decisions) > 16
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM blocks").fetchone()[0] >= 2
    got = sorted((c, round(m, 3), json.loads(top)[0][0]) for c, m, top in
                 conn.execute("SELECT camera, media_time, top FROM decisions"))
    want = sorted((d["camera"], d["media_time"], d["top"][0]["label"]) for d in decisions)
    assert got == want
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT COUNT(*) FROM thumbs").fetchone()[0] >= 2  # a camera's first decision has one


@pytest.mark.parametrize("which", ["archived", "archived_int8"])
def test_a_class_name_ranks_decisions_as_that_class_logit(which, request, tiny_bundle):
    db, _ = request.getfixturevalue(which)
    names, emb, scale = table(tiny_bundle)
    rows = stored(db)
    for name in (names[1], names[5]):
        t = emb[names.index(name)]
        logit = {i: scale * float(e @ t) for i, (_, _, e) in rows.items()}
        result = search_json(name, "--archive", str(db), "--bundle", str(tiny_bundle), "--hits", "1", "--gap", "0",
                             "--top", "1000")
        ranges = result["queries"][0]["ranges"]
        assert [r["decisions"] for r in ranges] == [1] * len(rows)  # no merging: every decision its own range
        order = [r["best_id"] for r in ranges]
        assert sorted(order) == sorted(rows)
        for r in ranges:  # the score is the similarity the logit is made of
            assert abs(r["score"] - logit[r["best_id"]] / scale) < TOL
        ranked = [logit[i] for i in order]
        assert all(a >= b - TOL * scale for a, b in zip(ranked, ranked[1:], strict=False))
        spread = max(ranked) - min(ranked)
        assert spread > 100 * TOL * scale  # the ranking is not decided by noise


@pytest.mark.parametrize("which", ["archived", "archived_int8"])
def test_several_queries_compete_as_the_classifier_classes(which, request, tiny_bundle):
    db, _ = request.getfixturevalue(which)
    names, emb, scale = table(tiny_bundle)
    rows = stored(db)
    ids = sorted(rows)
    logits = scale * np.stack([rows[i][2] for i in ids]) @ emb.T
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    args = [a for n in names for a in ("--query", n)]
    result = search_json(*args, "--archive", str(db), "--bundle", str(tiny_bundle), "--hits", "1", "--gap", "0",
                         "--top", "1000")
    owner = {r["best_id"]: (q["query"], r["score"]) for q in result["queries"] for r in q["ranges"]}
    assert sorted(owner) == ids  # each decision belongs to exactly one query
    for row, i in enumerate(ids):
        query, score = owner[i]
        k = names.index(query)
        assert abs(score - probs[row, k]) < TOL
        second = np.sort(probs[row])[-2]
        if probs[row].max() - second > 10 * TOL:  # a clear winner: the classifier's top class
            assert k == int(np.argmax(probs[row]))


def test_consecutive_hits_of_a_camera_merge_into_ranges(archived, tiny_bundle):
    db, _ = archived
    rows = stored(db)
    base = ["--archive", str(db), "--bundle", str(tiny_bundle), "--hits", "0.5", "--top", "1000"]
    single = search_json("clean and jerk", *base, "--gap", "0")["queries"][0]["ranges"]
    hits = {r["best_id"] for r in single}
    # the reference: each camera's decisions in time order; runs of hits with no other decision between
    want = []
    for camera in sorted({c for c, _, _ in rows.values()}):
        mine = sorted((t, i) for i, (c, t, _) in rows.items() if c == camera)
        run: list[int] = []
        for _, i in mine + [(None, None)]:
            if i in hits:
                run.append(i)
            elif run:
                want.append((camera, frozenset(run)))
                run = []
    merged = search_json("clean and jerk", *base, "--gap", "1000")["queries"][0]["ranges"]
    got = []
    for r in merged:
        span = {i for i, (c, t, _) in rows.items() if c == r["camera"] and r["start"] <= t <= r["end"]}
        got.append((r["camera"], frozenset(span)))
        assert r["decisions"] == len(span)
    assert sorted(got, key=str) == sorted(want, key=str)
    assert any(len(s) > 1 for _, s in got)
    scores = [r["score"] for r in merged]
    assert scores == sorted(scores, reverse=True)


def test_search_prints_ranges_and_writes_thumbnails(archived, tiny_bundle, tmp_path):
    db, _ = archived
    r = cli("search", "arm wrestling", "--archive", str(db), "--bundle", str(tiny_bundle), "--thumbs", str(tmp_path),
            "--top", "3", "--camera", str(CLIP_B))
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if line.strip().startswith(("1.", "2.", "3."))]
    assert lines and all(str(CLIP_B) in line for line in lines)
    jpegs = list(tmp_path.glob("*.jpg"))
    assert jpegs and all(p.read_bytes()[:2] == b"\xff\xd8" for p in jpegs)


def test_time_filters_select_the_decisions(archived, tiny_bundle):
    db, _ = archived
    rows = stored(db)
    times = sorted(t for _, t, _ in rows.values())
    k = len(times) // 2
    middle = (times[k - 1] + times[k]) / 2  # between two decisions: no rounding decides which side one falls
    args = ["--archive", str(db), "--bundle", str(tiny_bundle)]
    assert search_json("yoga", *args, "--from", repr(middle))["archive_rows"] == len(times) - k
    assert search_json("yoga", *args, "--since", "1h")["archive_rows"] == len(times)
    assert search_json("yoga", *args, "--to", "2000-01-01")["archive_rows"] == 0


def test_bad_inputs_are_one_line_each(archived, tiny_bundle, tmp_path):
    from froster_edge.runtime.site.archive import Archive, ArchiveOptions

    db, _ = archived
    args = ["--bundle", str(tiny_bundle)]
    foreign = tmp_path / "foreign.db"
    sqlite3.connect(foreign).execute("CREATE TABLE t (x)").connection.commit()
    other = tmp_path / "other.db"
    Archive(ArchiveOptions(file=other), "f" * 64, 64).close()  # an archive of another model
    cases = [
        (["yoga", "--archive", str(tmp_path / "missing.db")], "no such file"),
        (["yoga", "--archive", str(foreign)], "not a froster-edge archive"),
        (["yoga", "--archive", str(CLIP_A)], "not a froster-edge archive"),
        (["yoga", "--archive", str(other)], "another embedding space"),
        (["", "--archive", str(db)], "give a query"),
        (["--archive", str(db)], "give a query"),
        (["yoga", "--archive", str(db), "--since", "yesterday"], "--since 'yesterday'"),
        (["yoga", "--archive", str(db), "--since", "-3h"], "--since"),
        (["yoga", "--archive", str(db), "--from", "last tuesday"], "--from"),
        (["yoga", "--archive", str(db), "--from", "2026-12-07", "--to", "2026-12-01"], "--to is before --from"),
        (["yoga", "--archive", str(db), "--since", "1h", "--from", "2026-12-07"], "not both"),
    ]
    for argv, text in cases:
        assert_one_line_error(cli("search", *argv, *args), 1, text)
    r = cli("run", "--bundle", str(tiny_bundle), "--source", str(CLIP_A), "--archive", str(other), "--max-decisions", "1")
    assert_one_line_error(r, 1, "another embedding space")


def test_site_file_archive_section(tmp_path):
    from froster_edge.errors import ConfigError
    from froster_edge.runtime.options import RunOptions
    from froster_edge.runtime.site.config import load_site

    path = tmp_path / "site.yaml"
    doc = {"cameras": [{"name": "door", "source": str(CLIP_A)}],
           "archive": {"file": "site.db", "thumb_every_s": 5, "retain_days": 7, "max_mb": 100, "encoding": "int8"}}
    path.write_text(json.dumps(doc))
    site = load_site(path, RunOptions())
    assert site.archive.file == tmp_path / "site.db" and site.archive.thumb_every_s == 5.0
    assert site.archive.retain_days == 7.0 and site.archive.max_mb == 100.0 and site.archive.encoding == "int8"
    for bad, text in [({"thumb_every_s": 5}, "archive.file: is required"), ({"file": "a.db", "keep": 1}, "archive.keep: unknown key"),
                      ({"file": "a.db", "max_mb": "big"}, "archive.max_mb: must be a number"),
                      ({"file": "a.db", "thumb_width": 4}, "archive.thumb_width: must be greater than or equal to 16"),
                      ({"file": "a.db", "encoding": "int4"}, "archive.encoding: ")]:
        path.write_text(json.dumps({**doc, "archive": bad}))
        with pytest.raises(ConfigError, match=text):
            load_site(path, RunOptions())


def _rows(db: Path) -> list[int]:
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return [i for (i,) in conn.execute("SELECT id FROM decisions ORDER BY id")]
    except sqlite3.Error:
        return []
    finally:
        conn.close()


def test_kill_9_while_writing_keeps_every_committed_row(tiny_bundle, tmp_path):
    from froster_edge.runtime.site.archive import enforce_retention

    db = tmp_path / "site.db"
    proc = subprocess.Popen([sys.executable, "-m", "froster_edge.cli", "run", "--bundle", str(tiny_bundle), "--source",
                             str(CLIP_A), "--loop", "--hop", "1", "--archive", str(db), "--jsonl"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        end = time.monotonic() + 120
        seen: list[int] = []
        while time.monotonic() < end and len(seen) < 40:  # several commits in
            time.sleep(0.3)
            seen = _rows(db) if db.exists() else []
        assert len(seen) >= 40, proc.stderr.read() if proc.poll() is not None else "too few rows"
    finally:
        sigkill(proc)
        proc.stderr.close()
    after = _rows(db)
    assert set(seen) <= set(after)  # every row committed before the kill is there
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    newest = conn.execute("SELECT MAX(time) FROM decisions").fetchone()[0]
    # retention on the killed run's file: everything older than the newest decision minus a breath
    cut = sorted(t for (t,) in conn.execute("SELECT time FROM decisions"))[len(after) // 2]
    deleted = enforce_retention(conn, retain_days=(newest - cut) / 86_400.0 + 1e-9, max_mb=0, now=newest)
    left = [i for (i,) in conn.execute("SELECT id FROM decisions ORDER BY id")]
    assert deleted == len(after) - len(left) > 0
    assert left == after[-len(left):]  # the oldest went first
    conn.close()
    r = cli("search", "yoga", "--archive", str(db), "--bundle", str(tiny_bundle), "--json", "-")
    assert r.returncode == 0 and json.loads(r.stdout)["archive_rows"] == len(left)


def test_retention_by_size_deletes_the_oldest_whole_blocks(tmp_path):
    from froster_edge.runtime.site.archive import PACK, Archive, ArchiveOptions, used_bytes

    class D:  # the fields the archive reads from a pipeline Decision
        def __init__(self, i):
            self.camera, self.stream, self.media_time, self.time = f"cam{i % 2}", i % 2, i * 0.5, 1e9 + i
            self.label, self.top = "x", [("x", 0.5)]
            self.embedding = np.random.default_rng(i).standard_normal(512).astype(np.float32)

    a = Archive(ArchiveOptions(file=tmp_path / "a.db", thumb_every_s=0, max_mb=0, retain_days=0), "fp", 512)
    for i in range(6 * PACK):
        a.emit(D(i))
    a.close()
    conn = sqlite3.connect(tmp_path / "a.db")
    from froster_edge.runtime.site.archive import enforce_retention

    full = used_bytes(conn)
    deleted = enforce_retention(conn, 0, max_mb=full / 2 / 2**20)
    left = [i for (i,) in conn.execute("SELECT id FROM decisions ORDER BY id")]
    assert used_bytes(conn) <= full / 2 and deleted > 0 and left == list(range(deleted + 1, 6 * PACK + 1))
    blocks = conn.execute("SELECT first_id, last_id FROM blocks").fetchall()
    assert all(f > deleted for f, _ in blocks)  # no block was split


@pytest.mark.parametrize("failure", ["full", "read-only"])
def test_a_failing_archive_is_said_once_and_the_run_goes_on(tiny_bundle, tmp_path, caplog, failure):
    from froster_edge.runtime.options import RunOptions
    from froster_edge.runtime.pipeline import Pipeline
    from froster_edge.runtime.site.archive import Archive, ArchiveOptions

    model = mf.read_manifest(tiny_bundle)["model"]
    options = RunOptions(sources=[str(CLIP_A)])
    first = Archive(ArchiveOptions(file=tmp_path / "a.db", commit_s=0.05), model["fingerprint"], int(model["embed_dim"]))
    plain = Collect()
    Pipeline(tiny_bundle, options, [plain, first], [first]).run()
    before = _rows(tmp_path / "a.db")
    assert len(before) == len(plain.decisions) > 2

    archive = Archive(ArchiveOptions(file=tmp_path / "a.db", commit_s=0.05), model["fingerprint"], int(model["embed_dim"]))
    if failure == "full":  # SQLite's own "database or disk is full", at the current size
        pages = archive.conn.execute("PRAGMA page_count").fetchone()[0]
        archive.conn.execute(f"PRAGMA max_page_count = {pages}")
    else:
        archive.conn.execute("PRAGMA query_only = 1")
    seen = Collect()
    with caplog.at_level(logging.WARNING, logger="froster_edge.runtime.site.archive"):
        stats = Pipeline(tiny_bundle, options, [seen, archive], [archive]).run()
    assert stats.decisions == len(plain.decisions) == len(seen.decisions)  # the run decided on
    said = [r for r in caplog.records if "writes failing" in r.getMessage()]
    assert len(said) == 1
    c = archive.counters
    assert c.failed > 0 and c.rows + c.failed == len(seen.decisions)
    after = _rows(tmp_path / "a.db")
    assert after[: len(before)] == before and len(after) == len(before) + c.rows  # nothing already there was lost
