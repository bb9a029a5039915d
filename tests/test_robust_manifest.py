"""Attacks through a bundle's manifest.json: paths out of the bundle, a hash checked on another file
than the one loaded, a missing model fingerprint, mistyped fields (issue 17, class 3)."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from froster_edge.bundle import manifest as mf
from froster_edge.bundle.labels import load_labels
from froster_edge.errors import BundleError
from froster_edge.runtime.options import RunOptions
from froster_edge.runtime.pipeline import Pipeline

from .helpers import CLIPS

CLIP = str(CLIPS / "stgcn_clean_and_jerk.mp4")


def edit(bundle, change) -> None:
    path = bundle / mf.MANIFEST_FILE
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def pipeline(bundle, **kw) -> Pipeline:
    return Pipeline(bundle, RunOptions(sources=[CLIP], backend="ort-cpu", **kw))


@pytest.fixture
def bundle(tiny_bundle, tmp_path):
    out = tmp_path / "b"
    shutil.copytree(tiny_bundle, out)
    return out


def elsewhere_table(bundle, tmp_path):
    """A valid table of the same model, outside the bundle, with fewer classes than the bundle's."""
    other = tmp_path / "elsewhere" / "labels.npz"
    other.parent.mkdir()
    table = load_labels(bundle / mf.LABELS_FILE)
    from dataclasses import replace

    replace(table, names=table.names[:2], texts=table.texts[:2], prompts=table.prompts[:2],
            embeddings=table.embeddings[:2]).save(other)
    return other


@pytest.mark.parametrize("how", ["dotdot", "absolute", "absolute-recorded"])
def test_a_labels_path_out_of_the_bundle_is_refused(bundle, tmp_path, how):
    other = elsewhere_table(bundle, tmp_path)
    name = {"dotdot": "../elsewhere/labels.npz"}.get(how, str(other))

    def change(doc):
        doc["labels"]["file"] = name
        if how == "absolute-recorded":
            doc["files"][name] = mf.sha256_file(other)
    edit(bundle, change)
    with pytest.raises(BundleError, match="labels.file .* points outside the bundle|points outside the bundle"):
        pipeline(bundle)


@pytest.mark.parametrize("field", ["file", "fp16_file"])
def test_onnx_paths_out_of_the_bundle_are_refused_even_with_a_hash(bundle, tmp_path, field):
    outside = tmp_path / "evil.onnx"
    shutil.copy(bundle / mf.VIDEO_ONNX, outside)

    def change(doc):
        doc["onnx"]["video_encoder"][field] = "../evil.onnx"
        doc["files"]["../evil.onnx"] = mf.sha256_file(outside)
    edit(bundle, change)
    with pytest.raises(BundleError, match="points outside the bundle"):
        mf.read_manifest(bundle)


def test_a_symlink_out_of_the_bundle_is_refused(bundle, tmp_path):
    other = elsewhere_table(bundle, tmp_path)
    (bundle / mf.LABELS_FILE).unlink()
    os.symlink(other, bundle / mf.LABELS_FILE)
    edit(bundle, lambda doc: doc["files"].__setitem__(mf.LABELS_FILE, mf.sha256_file(other)))
    with pytest.raises(BundleError, match="leads outside the bundle"):
        pipeline(bundle)


def test_the_file_hashed_is_the_file_loaded(bundle, tmp_path):
    """labels.file names another file of the bundle than labels.npz: that file's hash is the one checked."""
    (bundle / "tables").mkdir()
    shutil.copy(bundle / mf.LABELS_FILE, bundle / "tables" / "site.npz")

    def change(doc):
        doc["labels"]["file"] = "tables/site.npz"
        doc["files"]["tables/site.npz"] = mf.sha256_file(bundle / "tables" / "site.npz")
    edit(bundle, change)
    assert pipeline(bundle).labels_path == bundle / "tables" / "site.npz"
    shutil.copy(elsewhere_table(bundle, tmp_path), bundle / "tables" / "site.npz")  # labels.npz stays intact
    with pytest.raises(BundleError, match="site.npz does not match its sha256"):
        pipeline(bundle)


@pytest.mark.parametrize("value, message", [(None, "must be a text, not None"), ("", "must not be empty, not ''"),
                                            (7, "must be a text, not 7")])
def test_a_missing_model_fingerprint_is_an_error(bundle, value, message):
    edit(bundle, lambda doc: doc["model"].__setitem__("fingerprint", value))
    with pytest.raises(BundleError, match=f"manifest.json: model.fingerprint: {message}$"):
        pipeline(bundle)
    edit(bundle, lambda doc: doc["model"].pop("fingerprint"))
    with pytest.raises(BundleError, match="manifest.json: model.fingerprint: is required$"):
        pipeline(bundle)


@pytest.mark.parametrize("key, value, message", [
    ("model", "x", "model: must be a mapping of keys, not 'x'"),
    ("logit_scale", float("nan"), "logit_scale: must be a finite number, not nan"),
    ("logit_scale", -1, "logit_scale: must be greater than 0, not -1"),
    ("preprocessing.streams", "2", "preprocessing.streams: must be an integer, not '2'"),
    ("preprocessing.image_size", 10**9, "preprocessing.image_size: must be less than or equal to 1048576, not 1000000000"),
    ("preprocessing.input.shape", [2, 4, 64, 64], "preprocessing.input.shape must be"),
    ("onnx.video_encoder", None, "onnx.video_encoder: must be a mapping of keys, not None"),
    ("onnx.video_encoder.file", 3, "onnx.video_encoder.file: must be a text, not 3"),
    ("engines", {"a": 1}, "engines: must be a list"),
    ("files", ["x"], "files: must be a mapping of keys"),
    ("int8", {"file": "/etc/passwd"}, "int8.file: points outside the bundle: every path in a manifest is relative to the "
     "bundle and stays inside it, not '/etc/passwd'"),
    ("preprocessing.sampling.stride", 0, "preprocessing.sampling.stride: must be greater than 0, not 0"),
])
def test_mistyped_manifest_fields_are_named(bundle, key, value, message):
    def change(doc):
        *parents, last = key.split(".")
        node = doc
        for p in parents:
            node = node[p]
        node[last] = value
    edit(bundle, change)
    with pytest.raises(BundleError, match=message.replace("[", r"\[").replace("(", r"\(")):
        pipeline(bundle)


def test_a_huge_input_shape_is_refused_before_allocating(bundle):
    def change(doc):
        pre = doc["preprocessing"]
        pre.update(streams=256, num_frames=1024, image_size=4096)
        pre["input"]["shape"] = [256, 1024, 4096, 4096, 3]
    edit(bundle, change)
    with pytest.raises(BundleError, match="input bytes per call"):
        pipeline(bundle)
