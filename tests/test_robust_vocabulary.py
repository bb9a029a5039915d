"""Attacks on label-table changes (issue 31): two processes changing one bundle's table at once (the
web view and `labels --bundle --append`) never lose each other's classes; the bundle's table made a
link out of the bundle is refused, never written through."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from froster_edge.bundle import manifest as mf
from froster_edge.bundle.labels import load_labels
from froster_edge.bundle.relabel import relabel_bundle
from froster_edge.errors import BundleError
from froster_edge.prompts import ClassText


def writer(bundle, tag: str, n: int) -> subprocess.Popen:
    """A process that appends `n` classes, one change at a time, to the bundle's own table."""
    code = textwrap.dedent(f"""
        from froster_edge.bundle.relabel import BundleTextEncoder, relabel_bundle
        from froster_edge.prompts import ClassText
        enc = BundleTextEncoder.load({str(bundle)!r})
        for i in range({n}):
            relabel_bundle({str(bundle)!r}, [ClassText("{tag} " + str(i), "")], append=True, encoder=enc)
    """)
    return subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)


def test_two_processes_appending_to_one_table_keep_every_class(tiny_bundle, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    before = load_labels(bundle / mf.LABELS_FILE).names
    procs = [writer(bundle, tag, 8) for tag in ("web", "cli")]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    names = load_labels(bundle / mf.LABELS_FILE).names
    added = {f"{tag} {i}" for tag in ("web", "cli") for i in range(8)}
    assert names[:len(before)] == before and set(names[len(before):]) == added and len(names) == len(before) + 16
    mf.verify_bundle(bundle)  # the manifest records the table as last written


def test_the_bundles_table_made_a_link_out_of_the_bundle_is_refused(tiny_bundle, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    outside = tmp_path / "elsewhere.npz"
    shutil.copy(bundle / mf.LABELS_FILE, outside)
    (bundle / mf.LABELS_FILE).unlink()
    os.symlink(outside, bundle / mf.LABELS_FILE)
    before, manifest = outside.read_bytes(), (bundle / mf.MANIFEST_FILE).read_bytes()
    with pytest.raises(BundleError, match="out of the bundle: refused"):
        relabel_bundle(bundle, [ClassText("climbing", "")], append=True)
    assert outside.read_bytes() == before and (bundle / mf.MANIFEST_FILE).read_bytes() == manifest


def killed_mid_change(bundle, where: str) -> None:
    """`labels --bundle --append` in a process that SIGKILLs itself at `where`: after the new table is
    renamed in and before the manifest is (`commit`), or before the table is renamed in (`table`)."""
    code = textwrap.dedent(f"""
        import os, signal
        from froster_edge.bundle import manifest as mf, relabel
        from froster_edge.bundle.relabel import relabel_bundle
        from froster_edge.prompts import ClassText
        def die(*a, **k):
            os.kill(os.getpid(), signal.SIGKILL)
        if {where!r} == "commit":
            mf.commit_staged = die
        else:
            relabel.atomic_write_bytes = die
        relabel_bundle({str(bundle)!r}, [ClassText("climbing", "")], append=True)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr


@pytest.mark.parametrize("where", ["commit", "table"])
def test_a_kill_between_the_table_and_manifest_renames_leaves_a_bundle_that_starts(tiny_bundle, tmp_path, where):
    from froster_edge.runtime.options import RunOptions
    from froster_edge.runtime.pipeline import Pipeline

    from .helpers import CLIPS

    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    before = load_labels(bundle / mf.LABELS_FILE).names
    killed_mid_change(bundle, where)
    assert (bundle / mf.PENDING_FILE).exists()  # the kill left the staged manifest behind
    # the runtime's start: the change is finished (the table was in) or rolled back (it was not)
    Pipeline(bundle, RunOptions(sources=[str(CLIPS / "stgcn_clean_and_jerk.mp4")], backend="ort-cpu"))
    assert not (bundle / mf.PENDING_FILE).exists()
    mf.verify_bundle(bundle)
    names = load_labels(bundle / mf.LABELS_FILE).names
    assert names == (before + ["climbing"] if where == "commit" else before)
    assert mf.read_manifest(bundle)["labels"]["classes"] == len(names)


def swap_in_a_link_out(path, tmp_path):
    """Replace the label file `path` with a link to a valid table of the same model outside the
    bundle, holding fewer classes (what the attacker wants swapped in or written through)."""
    table = load_labels(path)
    outside = tmp_path / "outside.npz"
    table.select([0]).save(outside)
    path.unlink()
    os.symlink(outside, path)
    return outside, outside.read_bytes()


def test_the_label_watcher_does_not_swap_in_a_table_made_a_link_out_mid_run(tiny_bundle, tmp_path):
    from froster_edge.runtime.classifier import LabelWatcher

    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    model = mf.read_manifest(bundle)["model"]
    watcher = LabelWatcher(bundle / mf.LABELS_FILE, model["fingerprint"], int(model["embed_dim"]))
    swap_in_a_link_out(bundle / mf.LABELS_FILE, tmp_path)
    assert watcher.poll() is None and watcher.rejected == 1 and watcher.swaps == 0


@pytest.mark.parametrize("own", [True, False])
def test_the_web_vocabulary_neither_reads_nor_writes_through_a_link_swapped_in_mid_run(tiny_bundle, tmp_path, own):
    from froster_edge.runtime.site.web.options import HttpOptions
    from froster_edge.runtime.site.web.vocabulary import Vocabulary, VocabularyError

    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    path = bundle / mf.LABELS_FILE
    if not own:  # the run's --labels, a table of its own beside the bundle
        path = tmp_path / "run-labels.npz"
        shutil.copy(bundle / mf.LABELS_FILE, path)
    vocab = Vocabulary(bundle, path, mf.read_manifest(bundle), HttpOptions())
    assert len(vocab.table().names) > 1
    outside, before = swap_in_a_link_out(path, tmp_path)
    for attempt in (vocab.table, lambda: vocab.add("climbing"), lambda: vocab.remove(load_labels(outside).names[0])):
        with pytest.raises(VocabularyError, match="link swapped in"):
            attempt()
    assert outside.read_bytes() == before
