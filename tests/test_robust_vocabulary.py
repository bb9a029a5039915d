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
