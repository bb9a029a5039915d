"""The export bundle: manifest hashes, parity gates, label tables, reload, tamper and fingerprint checks."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from froster_edge.bundle import manifest as mf
from froster_edge.bundle.label_builder import build_label_table
from froster_edge.bundle.labels import LabelTable, load_labels
from froster_edge.bundle.parity import compare, load_parity_clips, run_in_streams
from froster_edge.bundle.relabel import relabel_bundle, write_labels
from froster_edge.errors import BundleError, ConfigError, MissingCapability, ParityError
from froster_edge.export.bundle import export_bundle
from froster_edge.export.options import ExportOptions, ParityThresholds
from froster_edge.export.reference import torch_text_encoder
from froster_edge.model.checkpoint import model_fingerprint
from froster_edge.prompts import ClassText

from .helpers import CLASSES, MEAN, STD, VIDEOS, make_student


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    student = make_student()
    out = tmp_path_factory.mktemp("export") / "bundle"
    result = export_bundle(student, out, CLASSES, VIDEOS, ExportOptions(streams=2, max_parity_clips=4))
    return student, result


def reference_table(student, classes: list[ClassText]) -> np.ndarray:
    """Naive prompt ensemble: every prompt encoded alone, normalised, averaged, normalised."""
    from froster_edge.prompts import prompts_for

    rows = []
    with torch.no_grad():
        for c in classes:
            feats = torch.cat([F.normalize(student.clip.encode_text(student.tokenize([p])), dim=-1) for p in prompts_for(c)])
            rows.append(F.normalize(feats.mean(0), dim=-1))
    return torch.stack(rows).numpy()


def test_manifest_hashes_every_file(bundle):
    _, result = bundle
    root = result.bundle
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != "manifest.json")
    assert files == ["labels.npz", "text_encoder.onnx", "tokenizer.json", "video_encoder.fp16.onnx", "video_encoder.onnx"]
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["files"] == {f: hashlib.sha256((root / f).read_bytes()).hexdigest() for f in files}
    assert manifest["format"] == "froster-edge-bundle" and manifest["version"] == 1
    assert manifest["onnx"]["opset"] >= 17
    assert manifest["preprocessing"]["input"] == {"name": "frames", "shape": [2, 4, 64, 64, 3], "dtype": "uint8",
                                                  "layout": "STHWC", "color": "RGB"}
    assert manifest["versions"]["onnxruntime"] == ort.__version__
    assert manifest["tokenizer"]["file"] == "tokenizer.json" and manifest["tokenizer"]["context_length"] == 77
    assert not list(root.parent.glob(".bundle.*")), "staging folders must not be left behind"


def test_parity_gates_ran_on_real_clips_and_passed(bundle):
    _, result = bundle
    parity = result.manifest["parity"]
    assert not parity["synthetic_clips"] and len(parity["clips"]) == 4
    names = [g["name"] for g in parity["gates"]]
    assert names == ["video fp32 onnxruntime-cpu vs torch", "text fp32 onnxruntime-cpu vs torch",
                     "video fp16 onnxruntime-cpu vs fp32"]
    for g in parity["gates"]:
        assert g["passed"] and g["min_cosine"] >= g["thresholds"]["min_cosine"]
    assert parity["gates"][0]["max_abs"] <= 1e-4 and parity["gates"][0]["top1_agreement"] == 1.0


def test_bundle_reloads_and_matches_torch_on_a_real_clip(bundle):
    from froster_edge.video import read_frames, resize_center_crop, uniform_indices

    student, result = bundle
    root, manifest = result.bundle, mf.verify_bundle(result.bundle)
    clips = []
    for path in VIDEOS[:2]:
        frames = read_frames(path)
        clips.append(np.stack([resize_center_crop(frames[i], 64) for i in uniform_indices(len(frames), 4)]))
    clips = np.stack(clips)
    session = ort.InferenceSession(str(root / manifest["onnx"]["video_encoder"]["file"]), providers=["CPUExecutionProvider"])
    got = session.run(None, {manifest["onnx"]["video_encoder"]["input"]: clips})[0]
    x = torch.from_numpy(((clips / 255.0 - MEAN) / STD).astype(np.float32).transpose(0, 1, 4, 2, 3).copy())
    with torch.no_grad():
        want = student.encode_video(x).video.numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
    table = load_labels(root / "labels.npz", manifest["model"]["fingerprint"], manifest["model"]["embed_dim"])
    assert table.names == [c.name for c in CLASSES]
    assert (got @ table.embeddings.T).argmax(-1).tolist() == (want @ table.embeddings.T).argmax(-1).tolist()


def test_fp16_model_is_half_with_the_same_interface(bundle):
    _, result = bundle
    half = onnx.load(str(result.bundle / "video_encoder.fp16.onnx"))
    assert half.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert half.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dtypes = {t.data_type for t in half.graph.initializer if len(t.dims) >= 2}
    assert dtypes == {onnx.TensorProto.FLOAT16}


def test_a_tampered_file_is_detected(bundle, tmp_path):
    _, result = bundle
    copy = tmp_path / "copy"
    shutil.copytree(result.bundle, copy)
    mf.verify_bundle(copy)
    data = bytearray((copy / "video_encoder.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "video_encoder.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="video_encoder.onnx does not match its sha256"):
        mf.verify_bundle(copy)
    (copy / "labels.npz").unlink()
    with pytest.raises(BundleError, match="labels.npz is missing"):
        mf.verify_bundle(copy, ["labels.npz"])


def test_label_table_matches_the_torch_text_encoder(bundle):
    student, result = bundle
    table = load_labels(result.bundle / "labels.npz")
    np.testing.assert_allclose(table.embeddings, reference_table(student, CLASSES), atol=1e-5)
    assert table.fingerprint == model_fingerprint(student)
    assert table.logit_scale == pytest.approx(float(student.logit_scale.detach().exp()), rel=1e-6)
    assert len(table.prompts[0]) == 29 and table.prompts[0][-1] == CLASSES[0].text


def test_relabel_through_onnx_matches_torch_and_appends(bundle, tmp_path):
    student, result = bundle
    copy = tmp_path / "copy"
    shutil.copytree(result.bundle, copy)
    new = [ClassText.parse("juggling balls"), ClassText.parse("Skiing: gliding down a snowy slope on skis")]
    table = relabel_bundle(copy, new)
    np.testing.assert_allclose(table.embeddings, reference_table(student, new), atol=1e-5)
    manifest = mf.verify_bundle(copy)  # the manifest was re-hashed for the new table
    assert manifest["labels"]["classes"] == 2
    more = relabel_bundle(copy, [ClassText.parse("surfing")], append=True)
    assert more.names == ["juggling balls", "Skiing", "surfing"]
    with pytest.raises(BundleError, match="already in the table"):
        relabel_bundle(copy, [ClassText.parse("Surfing")], append=True)


def test_a_table_from_another_model_is_rejected(bundle, tmp_path):
    _, result = bundle
    other = make_student(seed=1)
    table = build_label_table(CLASSES[:3], torch_text_encoder(other), other.model_cfg, model_fingerprint(other), 100.0)
    write_labels(table, tmp_path / "other.npz")
    fingerprint = result.manifest["model"]["fingerprint"]
    assert table.fingerprint != fingerprint
    with pytest.raises(BundleError, match="not by this bundle's model"):
        load_labels(tmp_path / "other.npz", fingerprint)
    with pytest.raises(BundleError, match="not by this bundle's model"):
        load_labels(result.bundle / "labels.npz").extend(table)


def test_label_tables_refuse_bad_classes(tiny_student):
    fp, cfg = model_fingerprint(tiny_student), tiny_student.model_cfg
    encode = torch_text_encoder(tiny_student)
    with pytest.raises(ConfigError, match="appears twice"):
        build_label_table([ClassText.parse("run"), ClassText.parse("Run")], encode, cfg, fp, 100.0)
    with pytest.raises(ConfigError, match="tokens, over the text encoder's 77"):
        build_label_table([ClassText.parse("Run: " + "very fast " * 40)], encode, cfg, fp, 100.0)
    with pytest.raises(ConfigError, match="no classes"):
        build_label_table([], encode, cfg, fp, 100.0)
    with pytest.raises(BundleError, match="not L2-normalised"):
        LabelTable(names=["a"], embeddings=np.ones((1, 4), np.float32), logit_scale=100.0, fingerprint=fp)


def test_label_file_roundtrip_and_corrupt_file(tiny_student, tmp_path):
    table = build_label_table(CLASSES[:2], torch_text_encoder(tiny_student), tiny_student.model_cfg,
                              model_fingerprint(tiny_student), 100.0)
    table.save(tmp_path / "labels.npz")
    back = load_labels(tmp_path / "labels.npz", table.fingerprint, table.dim)
    assert back.names == table.names and back.prompts == table.prompts and back.texts == table.texts
    np.testing.assert_array_equal(back.embeddings, table.embeddings)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(BundleError, match="not a readable label table"):
        load_labels(tmp_path / "bad.npz")


def test_a_failed_gate_leaves_the_previous_bundle_untouched(bundle, tmp_path):
    student, result = bundle
    out = tmp_path / "b"
    shutil.copytree(result.bundle, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    strict = ExportOptions(streams=2, fp16=False, max_parity_clips=2, thresholds=ParityThresholds(fp32_max_abs=0.0))
    with pytest.raises(ParityError, match="video fp32 onnxruntime-cpu vs torch: max_abs"):
        export_bundle(student, out, CLASSES, VIDEOS, strict)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_export_refuses_to_overwrite_a_folder_that_is_not_a_bundle(tiny_student, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="is not a froster-edge bundle"):
        export_bundle(tiny_student, tmp_path / "mine", CLASSES, VIDEOS)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_compare_and_stream_padding_against_hand_computation():
    got = np.array([[1.0, 0.0], [0.0, 1.0]])
    want = np.array([[1.0, 0.0], [1.0, 1.0]])
    table = LabelTable(names=["x", "y"], embeddings=np.eye(2, dtype=np.float32), logit_scale=100.0, fingerprint="f")
    stats = compare(got, want, table)
    assert stats["max_abs"] == 1.0 and stats["min_cosine"] == pytest.approx(1 / np.sqrt(2))
    assert stats["top1_agreement"] == 0.5  # row 2: y vs a tie that argmax resolves to x
    calls = []

    def encoder(batch):
        calls.append(batch.shape[0])
        return batch.reshape(len(batch), -1).astype(np.float32).sum(1, keepdims=True)

    clips = np.arange(5 * 2, dtype=np.uint8).reshape(5, 2)
    out = run_in_streams(encoder, clips, 2)
    assert calls == [2, 2, 2] and out[:, 0].tolist() == clips.sum(1).tolist()


def test_without_decodable_videos_the_gates_say_they_used_noise(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    clips = load_parity_clips([tmp_path / "broken.mp4"], 4, 64)
    assert clips.synthetic and clips.frames.shape == (2, 4, 64, 64, 3) and "broken.mp4" in clips.skipped[0]


def test_engine_cache_key_changes_with_everything_that_invalidates_an_engine():
    from froster_edge.bundle.engines import engine_key

    base = dict(tensorrt_version="10.3.0", compute_capability="8.7", precision="fp16",
                shapes={"frames": ((1, 8, 224, 224, 3),) * 3}, onnx_sha256="ab" * 32, layernorm_fp32=False)
    key = engine_key(**base)
    assert key == engine_key(**base)
    for field, value in [("tensorrt_version", "10.4.0"), ("compute_capability", "9.0"), ("precision", "fp32"),
                         ("shapes", {"frames": ((2, 8, 224, 224, 3),) * 3}), ("onnx_sha256", "cd" * 32),
                         ("layernorm_fp32", True)]:
        assert engine_key(**{**base, field: value}) != key, field


def test_ort_trt_route_without_the_provider_is_a_missing_capability(bundle, tmp_path):
    if "TensorrtExecutionProvider" in ort.get_available_providers():
        pytest.skip("this ONNX Runtime has the TensorRT provider; the GPU test covers it")
    from froster_edge.bundle.engines import ort_trt_session

    _, result = bundle
    with pytest.raises(MissingCapability, match="TensorrtExecutionProvider"):
        ort_trt_session(result.bundle / "video_encoder.fp16.onnx", tmp_path / "cache")


def test_a_killed_export_is_undone_at_the_next_one(bundle, tmp_path):
    _, result = bundle
    dead = 2**22 + 12345  # above Linux's default pid_max: no such process
    out = tmp_path / "b"
    shutil.copytree(result.bundle, tmp_path / f".b.old-{dead}")  # killed between the two renames
    (tmp_path / f".b.staging-{dead}").mkdir()
    (tmp_path / f".b.staging-{dead}" / "video_encoder.onnx").write_bytes(b"half")
    (tmp_path / f".b.staging-{os.getpid()}").mkdir()  # a live process's staging is not touched
    from froster_edge.export.bundle import check_target

    check_target(out)
    assert mf.verify_bundle(out)["files"] == result.manifest["files"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".b.staging-{os.getpid()}", "b"]
