"""Attacks with malformed label tables: each is refused in one line at start, and a live run that
sees it hot-swapped in keeps its current table, logs one line and goes on deciding (issue 17, class 2)."""

from __future__ import annotations

import io
import logging
import shutil
import zipfile
from dataclasses import replace

import numpy as np
import pytest

from froster_edge.bundle import labels as lb
from froster_edge.bundle.labels import LabelTable, load_labels
from froster_edge.errors import BundleError
from froster_edge.io import atomic_write_bytes
from froster_edge.runtime.options import CaptureOptions, RunOptions
from froster_edge.runtime.pipeline import Pipeline

from .helpers import CLIPS, assert_one_line_error, cli

CLIP = str(CLIPS / "stgcn_clean_and_jerk.mp4")


def arrays_of(table: LabelTable) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(table.to_bytes()), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def npz(arrays: dict[str, np.ndarray], raw: dict[str, bytes] | None = None) -> bytes:
    """An .npz of `arrays` (as np.savez writes it), members in `raw` replaced by the bytes given."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for k, v in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, v, allow_pickle=False)
            z.writestr(f"{k}.npy", (raw or {}).get(k, member.getvalue()))
        # an extra member of a different size in each file (the reader ignores it): the watcher
        # tells files apart by (mtime, size, inode), and a reused inode within the clock's tick is likely
        _MADE.append(1)
        z.writestr("padding.bin", b"#" * (200_000 * len(_MADE)))
    return buf.getvalue()


_MADE: list[int] = []


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    """A .npy file that is only a header: what a hostile file claims, with no data behind it."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def attacks(table: LabelTable) -> dict[str, bytes]:
    """Malformed tables by name: each file's bytes (all of different sizes)."""
    good = arrays_of(table)
    plain = io.BytesIO()
    np.save(plain, table.embeddings)
    out = {
        "string version": npz({**good, "version": np.array("1")}),
        "plain .npy under the .npz name": plain.getvalue(),
        "header claiming terabytes": npz(good, {"embeddings": npy_header((10**12, 512))}),
        "millions of classes": npz(good, {"names": npy_header((3_000_000,), "<U8")}),
        "truncated data": npz(good, {"embeddings": npy_header((len(table.names), table.dim)) + b"\0" * 8}),
        "pickled objects": npz(good, {"names": npy_header((3,), "|O") + b"\x80\x04N."}),
        "float names": npz({**good, "names": np.arange(len(table.names), dtype=np.float32)}),
        "integer embeddings": npz({**good, "embeddings": (table.embeddings * 100).astype(np.int32)}),
        "2-d names": npz({**good, "names": np.array([table.names])}),
        "negative prompt counts": npz({**good, "prompt_counts": -good["prompt_counts"]}),
        "numeric fingerprint": npz({**good, "fingerprint": np.array(7)}),
        "empty fingerprint": npz({**good, "fingerprint": np.array("")}),
        "missing field": npz({k: v for k, v in good.items() if k != "temperature"}),
        "string logit scale": npz({**good, "logit_scale": np.array("100")}),
        "huge embedding size": npz(good, {"embeddings": npy_header((len(table.names), 10**7))}),
        "garbage": b"PK\x03\x04 this is no archive" * 3,
        "empty file": b"",
    }
    sizes = [len(v) for v in out.values()]
    assert len(set(sizes)) == len(sizes), "the watcher tells files apart by (mtime, size, inode)"
    return out


@pytest.fixture(scope="module")
def table(tiny_bundle) -> LabelTable:
    return load_labels(tiny_bundle / "labels.npz")


def test_every_malformed_table_is_a_bundle_error_that_names_the_file(table, tmp_path):
    for name, data in attacks(table).items():
        path = tmp_path / f"{len(data)}.npz"
        path.write_bytes(data)
        with pytest.raises(BundleError) as info:
            load_labels(path)
        message = str(info.value)
        assert str(path) in message and "\n" not in message and len(message) < 600, (name, message)


def test_class_limit_is_documented_and_enforced(table):
    assert f"{lb.MAX_CLASSES:,}".replace(",", "") in open(CLIPS.parents[1] / "docs" / "runtime.md").read().replace(",", "").replace("_", "")
    n = lb.MAX_CLASSES + 1
    emb = np.tile(table.embeddings[:1], (n, 1))
    with pytest.raises(BundleError, match=f"at most {lb.MAX_CLASSES}"):
        LabelTable(names=[f"c{i}" for i in range(n)], embeddings=emb, logit_scale=100.0, fingerprint="f")


def test_a_table_whose_arrays_would_take_too_much_memory_is_refused_before_its_data_is_read(table, tmp_path, monkeypatch):
    """Each array within its own limits, the file small (fixed-width strings compress to nothing),
    the whole too big once loaded: refused from the headers alone, in one line."""
    wide = "x" * lb.MAX_TEXT  # one long prompt widens every prompt of the table to MAX_TEXT characters
    prompts = [[wide] + [f"{n} {k}" for k in range(lb.MAX_PROMPTS - 1)] for n in table.names]
    big = replace(table, prompts=prompts)
    path = tmp_path / "wide.npz"
    with zipfile.ZipFile(io.BytesIO(big.to_bytes())) as plain, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as packed:
        for name in plain.namelist():  # the same arrays, deflated as np.savez_compressed would
            packed.writestr(name, plain.read(name))
    with np.load(path, allow_pickle=False) as z:  # the reference: what numpy itself would hold
        loaded = sum(z[k].nbytes for k in z.files)
    assert path.stat().st_size < loaded // 100
    monkeypatch.setattr(lb, "MAX_LOADED_BYTES", loaded - 1)
    with pytest.raises(BundleError) as info:
        load_labels(path)
    message = str(info.value)
    assert f"take {loaded} bytes loaded" in message and str(path) in message and "\n" not in message
    monkeypatch.setattr(lb, "MAX_LOADED_BYTES", loaded)
    assert load_labels(path).prompts[0][0] == wide


def test_the_same_files_at_start_are_one_line_errors(tiny_bundle, table, tmp_path):
    bad = attacks(table)
    for name in ("string version", "plain .npy under the .npz name", "header claiming terabytes"):
        path = tmp_path / f"{name.replace(' ', '_')}.npz"
        path.write_bytes(bad[name])
        with pytest.raises(BundleError, match=str(path)):
            Pipeline(tiny_bundle, RunOptions(sources=[CLIP], labels=path, backend="ort-cpu"))
    proc = cli("run", "--bundle", str(tiny_bundle), "--source", CLIP, "--labels", str(tmp_path / "string_version.npz"))
    assert_one_line_error(proc, 1, "version must be 0-d integers")
    assert "internal error" not in proc.stderr


class Swapper:
    """A decision sink that, at each decision, puts the next file in place of the watched table."""

    def __init__(self, path, files: list[bytes]):
        self.path, self.files, self.decisions = path, list(files), []

    def emit(self, d) -> None:
        self.decisions.append(d)
        if self.files:
            atomic_write_bytes(self.path, self.files.pop(0))

    def close(self) -> None:
        pass


def test_a_live_run_survives_every_malformed_table_and_logs_one_line_each(tiny_bundle, table, tmp_path, caplog):
    watched = tmp_path / "labels.npz"
    shutil.copy(tiny_bundle / "labels.npz", watched)
    bad = attacks(table)
    smaller = replace(table, names=table.names[:2], texts=table.texts[:2], prompts=table.prompts[:2],
                      embeddings=table.embeddings[:2])
    sink = Swapper(watched, [*bad.values(), smaller.to_bytes()])
    caplog.set_level(logging.INFO, logger="froster_edge")
    options = RunOptions(sources=[CLIP], labels=watched, backend="ort-cpu", label_poll_s=0.0,
                         capture=CaptureOptions(loop=True), max_decisions=len(bad) + 3)
    pipeline = Pipeline(tiny_bundle, options, [sink])
    stats = pipeline.run().to_dict()

    assert stats["decisions"] == len(bad) + 3 and not pipeline.errors()
    rejected = [m for m in caplog.messages if m.startswith("labels: rejected")]
    assert len(rejected) == len(bad) and all("\n" not in m and len(m) < 700 for m in rejected), rejected
    assert stats["label_rejections"] == len(bad) and stats["label_swaps"] == 1
    names_seen = [{n for n, _ in d.top} for d in sink.decisions]
    assert all(seen <= set(table.names) for seen in names_seen[: len(bad) + 1])  # the old table meanwhile
    assert names_seen[-1] <= set(smaller.names)  # and the good one after
