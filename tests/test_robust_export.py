"""Attacks on `export -o`: a folder that is not a bundle survives byte for byte, a re-export never
deletes files the bundle did not create, and a symlinked -o stays a symlink (issue 17, class 1)."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from froster_edge.bundle import manifest as mf
from froster_edge.errors import ConfigError
from froster_edge.export.bundle import export_bundle
from froster_edge.export.options import ExportOptions
from froster_edge.prompts import read_class_texts

from .helpers import CLIPS

CLASSES = read_class_texts(CLIPS / "classes.txt")
VIDEOS = [CLIPS / "stgcn_clean_and_jerk.mp4"]
QUICK = ExportOptions(streams=1, fp16=False, max_parity_clips=1)


def snapshot(root) -> dict[str, object]:
    """Every entry under root (not following links): file bytes, link targets, folders."""
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = "dir"
            else:
                with open(p, "rb") as f:
                    out[rel] = f.read()
    return out


def webapp(root):
    """A browser extension's folder: it has a manifest.json, but not ours."""
    (root / "src").mkdir(parents=True)
    (root / "manifest.json").write_text(json.dumps({"name": "my-ext", "manifest_version": 3}))
    (root / "src" / "app.js").write_text("console.log('x')\n")
    return root


@pytest.mark.parametrize("manifest", [
    {"name": "my-ext", "manifest_version": 3},
    {"format": "froster-edge-bundle"},  # ours in name, but no file list: nothing proves what it made
    "not json {",
])
def test_a_folder_with_a_foreign_manifest_survives_export_byte_for_byte(tiny_student, tmp_path, manifest):
    target = webapp(tmp_path / "webapp")
    (target / "manifest.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError, match="is not a froster-edge bundle"):
        export_bundle(tiny_student, target, CLASSES, VIDEOS, QUICK)
    assert snapshot(tmp_path) == before


def test_a_re_export_through_a_symlink_keeps_the_link_and_every_file_the_bundle_did_not_create(
        tiny_student, tiny_bundle, tmp_path):
    real = tmp_path / "store" / "b-v1"
    shutil.copytree(tiny_bundle, real)
    link = tmp_path / "current"
    os.symlink(os.path.relpath(real, tmp_path), link)
    (real / "NOTES.md").write_text("camera 3 is upside down")
    (real / "site" / "img").mkdir(parents=True)
    (real / "site" / "index.html").write_text("<html></html>")
    os.symlink("index.html", real / "site" / "home.html")
    mine = {k: v for k, v in snapshot(real).items() if k == "NOTES.md" or k.startswith("site")}

    result = export_bundle(tiny_student, link, CLASSES[:3], VIDEOS, QUICK)

    assert link.is_symlink() and os.readlink(link) == os.path.relpath(real, tmp_path)
    assert result.bundle == link
    after = snapshot(real)
    assert {k: after.get(k) for k in mine} == mine
    manifest = mf.verify_bundle(real)  # the user's files are not recorded as the bundle's
    assert manifest["labels"]["classes"] == 3 and mf.VIDEO_FP16_ONNX not in manifest["files"]
    assert not (real / mf.VIDEO_FP16_ONNX).exists()  # the old bundle's own files went
    assert not any(name.startswith(("NOTES", "site")) for name in manifest["files"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "store"]
    assert sorted(p.name for p in real.parent.iterdir()) == ["b-v1"]


def test_a_user_file_where_the_new_bundle_writes_is_refused_and_nothing_changes(tiny_student, tiny_bundle, tmp_path):
    out = tmp_path / "b"
    shutil.copytree(tiny_bundle, out)
    manifest = json.loads((out / mf.MANIFEST_FILE).read_text())
    del manifest["files"][mf.VIDEO_FP16_ONNX]  # a bundle exported without fp16 ...
    (out / mf.MANIFEST_FILE).write_text(json.dumps(manifest))
    (out / mf.VIDEO_FP16_ONNX).write_text("... whose user kept notes by an unlucky name")
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError, match="is not a file of the bundle"):
        export_bundle(tiny_student, out, CLASSES, VIDEOS, ExportOptions(streams=1, fp16=True, max_parity_clips=1))
    assert snapshot(tmp_path) == before


def test_a_re_export_deletes_only_its_own_temporaries_and_caches(tiny_student, tiny_bundle, tmp_path):
    out = tmp_path / "b"
    shutil.copytree(tiny_bundle, out)
    (out / "calibration").mkdir(exist_ok=True)
    users = {"notes.tmp": b"my notes", ".mine.tmp": b"hidden, mine", "calibration/my-ranges.txt": b"hand-tuned"}
    ours = [f".{mf.VIDEO_ONNX}.s8s8.{2**22 + 7}.tmp", "calibration/ort-int8-ranges-0123456789abcdef0123.json"]
    for name, data in users.items():
        (out / name).write_bytes(data)
    for name in ours:
        (out / name).write_bytes(b"{}")
    export_bundle(tiny_student, out, CLASSES, VIDEOS, QUICK)
    assert {name: (out / name).read_bytes() for name in users} == users
    assert not any((out / name).exists() for name in ours)
    assert not any(name in mf.verify_bundle(out)["files"] for name in users)


def _export_cli(student, out, limit_bytes: int | None = None):
    """`froster-edge export` of the tiny student to `out` in a subprocess, with RLIMIT_FSIZE (a disk
    that is full for this process) when `limit_bytes` is given."""
    import resource
    import subprocess
    import sys

    def limit() -> None:
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", "froster_edge.cli", "export", "--student", str(student), "--classes",
                           str(CLIPS / "classes.txt"), "-o", str(out)], capture_output=True, text=True, timeout=300,
                          preexec_fn=limit)


def _fails_in_one_line(proc, text: str) -> None:
    """Exit 1; the last stderr line is the error (the progress lines before it are the export's own)."""
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("froster-edge: error:") and text in last, last


@pytest.fixture
def student_dir(tiny_student, tmp_path):
    from froster_edge.model.checkpoint import save_student

    save_student(tiny_student, tmp_path / "student")
    return tmp_path / "student"


def test_export_onto_a_symlink_loop_is_one_line(student_dir, tmp_path):
    from .helpers import assert_one_line_error

    os.symlink("loop", tmp_path / "loop")
    for out in (tmp_path / "loop", tmp_path / "loop" / "bundle"):
        assert_one_line_error(_export_cli(student_dir, out), 1, "Too many levels of symbolic links")
    assert os.readlink(tmp_path / "loop") == "loop"


def test_export_onto_a_full_disk_is_one_line_and_keeps_the_previous_bundle(student_dir, tiny_bundle, tmp_path):
    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, out)
    before = snapshot(tmp_path)
    _fails_in_one_line(_export_cli(student_dir, out, limit_bytes=200_000), "writing the bundle failed (File too large)")
    assert snapshot(tmp_path) == before  # the previous bundle as it was, no staged leftovers
    mf.verify_bundle(out)


def test_export_onto_a_read_only_filesystem_is_one_line(student_dir, tmp_path):
    import subprocess

    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True).returncode:
        pytest.skip("cannot mount a read-only tmpfs here (not root)")
    try:
        from .helpers import assert_one_line_error

        assert_one_line_error(_export_cli(student_dir, ro / "bundle"), 1, "Read-only file system")
    finally:
        subprocess.run(["umount", str(ro)], check=True)
