"""`export_bundle`: a student in, a verified deployable bundle out.

Order of work: the ONNX graphs, their fp16 copy and the label table are written into a staging
folder beside the target; the parity gates run on real clips; the manifest (hashes, gates,
versions) is written last; then the staging folder replaces the old bundle in two renames, so a
failed gate or a kill leaves the previous bundle as it was. TensorRT engines are built after that
into the finished bundle (engines of the previous bundle whose ONNX did not change are kept), and
a machine without a GPU or tensorrt ends with MissingCapability while the ONNX bundle stands.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import ConfigError, ParityError
from ..info import environment
from ..io import atomic_dir, recover
from ..model.checkpoint import model_fingerprint
from ..model.student import VideoStudent
from ..prompts import ClassText
from ..video import CLIP_MEAN, CLIP_STD
from ..bundle import manifest as mf
from ..bundle.label_builder import build_label_table
from ..bundle.labels import LabelTable
from ..bundle.parity import compare, gate, load_parity_clips, require_passed, run_in_streams
from ..bundle.sessions import onnx_text_encoder, onnx_video_encoder
from ..bundle.tokenizer import ClipTokenizer, open_clip_tokenizer, tokenizer_record
from .onnx_graphs import OPSET, export_text_encoder, export_video_encoder, to_fp16
from .options import ExportOptions
from .reference import torch_text_encoder, torch_video_encoder

TEXT_PROFILE_MAX = 1024  # prompts per call in the text engine; label tables batch above this


@dataclass
class ExportResult:
    bundle: Path
    manifest: dict[str, Any]
    seconds: dict[str, float]


def export_bundle(student: VideoStudent, out: str | Path, classes: list[ClassText], videos: list[Path],
                  options: ExportOptions | None = None, source: dict[str, Any] | None = None,
                  log: Callable[[str], None] = lambda msg: None) -> ExportResult:
    """Export `student` with a label table of `classes` into the bundle folder `out`, gated on `videos`."""
    options = options or ExportOptions()
    if options.streams < 1:
        raise ConfigError(f"streams must be at least 1, not {options.streams}")
    out = Path(out)
    check_target(out)
    student = student.eval()
    seconds: dict[str, float] = {}
    with atomic_dir(out) as staging:  # the old bundle stays until every gate has passed
        t = time.perf_counter()
        log("exporting the video encoder to ONNX")
        export_video_encoder(student, staging / mf.VIDEO_ONNX, options.streams)
        log("exporting the text encoder to ONNX")
        export_text_encoder(student, staging / mf.TEXT_ONNX)
        seconds["onnx_export"] = time.perf_counter() - t
        if options.fp16:
            t = time.perf_counter()
            to_fp16(staging / mf.VIDEO_ONNX, staging / mf.VIDEO_FP16_ONNX, options.layernorm_fp32)
            seconds["fp16_convert"] = time.perf_counter() - t

        t = time.perf_counter()
        log(f"encoding {len(classes)} classes into the label table")
        fingerprint = model_fingerprint(student)
        tokenizer = open_clip_tokenizer(student.model_cfg["text_cfg"].get("context_length", 77))
        tokenizer.save(staging / mf.TOKENIZER_FILE)
        table = build_label_table(classes, torch_text_encoder(student), student.model_cfg, fingerprint,
                                  float(student.logit_scale.detach().exp()), tokenizer=tokenizer)
        table.save(staging / mf.LABELS_FILE)
        seconds["labels"] = time.perf_counter() - t

        t = time.perf_counter()
        log("running the parity gates")
        parity = _parity(student, staging, table, videos, options)
        seconds["parity"] = time.perf_counter() - t
        require_passed(parity["gates"])

        _carry_engines(out, staging)
        body = _manifest_body(student, table, options, parity, source or {})
        manifest = mf.write_manifest(staging, {**body, "tokenizer": tokenizer_record(tokenizer, mf.TOKENIZER_FILE)})
    result = ExportResult(out, manifest, seconds)
    if options.trt:
        _build_engines(result, student, table, parity, options, log)
    return result


def check_target(out: Path) -> None:
    """Refuse to replace a folder that is not a bundle; first tidy what a killed export left beside it."""
    recover(out.parent, out.name)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / mf.MANIFEST_FILE).is_file())):
        raise ConfigError(f"{out} exists and is not a froster-edge bundle: choose another -o (nothing was overwritten)")


def _carry_engines(out: Path, staging: Path) -> None:
    """Keep the previous bundle's engine cache: keys carry the ONNX hash, so stale engines never match."""
    old = out / mf.ENGINES_DIR
    if old.is_dir():
        shutil.copytree(old, staging / mf.ENGINES_DIR)


def _parity(student: VideoStudent, bundle: Path, table: LabelTable, videos: list[Path], options: ExportOptions) -> dict:
    size = student.model_cfg["vision_cfg"]["image_size"]
    clips = load_parity_clips(videos, student.config.num_frames, size, options.max_parity_clips)
    th = options.thresholds
    reference = run_in_streams(torch_video_encoder(student), clips.frames, options.streams)
    fp32 = run_in_streams(onnx_video_encoder(bundle / mf.VIDEO_ONNX), clips.frames, options.streams)
    gates = [gate("video fp32 onnxruntime-cpu vs torch", compare(fp32, reference, table),
                  th.fp32_min_cosine, th.fp32_min_top1_agreement, th.fp32_max_abs)]
    prompts = [p for ps in table.prompts for p in ps][:64]
    tokens = student.tokenize(prompts).numpy()
    if not np.array_equal(ClipTokenizer.from_file(bundle / mf.TOKENIZER_FILE, tokens.shape[1])(prompts), tokens):
        raise ParityError(f"the bundle's {mf.TOKENIZER_FILE} gives other token ids than the student's tokenizer")
    text_ref = torch_text_encoder(student)(tokens)
    text_onnx = onnx_text_encoder(bundle / mf.TEXT_ONNX)(tokens)
    gates.append(gate("text fp32 onnxruntime-cpu vs torch", compare(text_onnx, text_ref),
                      th.fp32_min_cosine, 0.0, th.fp32_max_abs))
    if options.fp16:
        fp16 = run_in_streams(onnx_video_encoder(bundle / mf.VIDEO_FP16_ONNX), clips.frames, options.streams)
        gates.append(gate("video fp16 onnxruntime-cpu vs fp32", compare(fp16, fp32, table),
                          th.fp16_min_cosine, th.fp16_min_top1_agreement))
    return {"clips": clips.sources, "synthetic_clips": clips.synthetic, "skipped_videos": clips.skipped,
            "frames": clips.frames, "reference": fp32, "gates": gates}


def _manifest_body(student: VideoStudent, table: LabelTable, options: ExportOptions, parity: dict,
                   source: dict[str, Any]) -> dict[str, Any]:
    vision = student.model_cfg["vision_cfg"]
    size, frames = vision["image_size"], student.config.num_frames
    env = environment()
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": {
            "student": asdict(student.config), "model_cfg": student.model_cfg, "embed_dim": student.embed_dim,
            "fingerprint": table.fingerprint, "source": source,
        },
        "logit_scale": table.logit_scale,
        "preprocessing": {
            "image_size": size, "num_frames": frames, "streams": options.streams,
            "input": {"name": "frames", "shape": [options.streams, frames, size, size, 3], "dtype": "uint8",
                      "layout": "STHWC", "color": "RGB"},
            "resize": "short side to image_size (bicubic), centre crop",
            "mean": [float(x) for x in CLIP_MEAN], "std": [float(x) for x in CLIP_STD],
            "normalisation": "inside the graph: (x / 255 - mean) / std",
            "sampling": {"stride": 16, "reference_fps": 30.0},
        },
        "onnx": {
            "opset": OPSET,
            "video_encoder": {"file": mf.VIDEO_ONNX, "input": "frames", "output": "video_embedding",
                              "fp16_file": mf.VIDEO_FP16_ONNX if options.fp16 else None},
            "text_encoder": {"file": mf.TEXT_ONNX, "input": "tokens", "output": "text_embedding",
                             "context_length": student.model_cfg["text_cfg"].get("context_length", 77)},
        },
        "labels": {"file": mf.LABELS_FILE, "classes": len(table.names)},
        "parity": {"clips": parity["clips"], "synthetic_clips": parity["synthetic_clips"],
                   "skipped_videos": parity["skipped_videos"], "gates": parity["gates"],
                   "thresholds": asdict(options.thresholds)},
        "engines": [],
        "versions": {k: env[k] for k in ("froster-edge", "python", "torch", "open_clip", "onnx", "onnxruntime", "tensorrt")},
    }


def _build_engines(result: ExportResult, student: VideoStudent, table: LabelTable, parity: dict,
                   options: ExportOptions, log: Callable[[str], None]) -> None:
    """fp16 engines into the finished bundle, their parity against fp32 ONNX, then the manifest again."""
    from ..bundle import engines as tb

    bundle, manifest = result.bundle, result.manifest
    engines_dir = bundle / mf.ENGINES_DIR
    size, frames = student.model_cfg["vision_cfg"]["image_size"], student.config.num_frames
    context = manifest["onnx"]["text_encoder"]["context_length"]
    video_shape = (options.streams, frames, size, size, 3)
    t = time.perf_counter()
    if options.trt_route == "tensorrt":
        tb.require_tensorrt()
        tb.require_cuda_device()
    if options.trt_route == "ort-trt":
        log("building TensorRT engines through ONNX Runtime's TensorRT provider")
        records = [
            tb.build_ort_trt_cache(bundle / mf.VIDEO_ONNX, engines_dir, {"frames": parity["frames"][:options.streams]},
                                   True, options.workspace_gb),
            tb.build_ort_trt_cache(bundle / mf.TEXT_ONNX, engines_dir,
                                   {"tokens": np.ones((1, context), np.int64)}, True, options.workspace_gb,
                                   {"tokens": (f"1x{context}", f"32x{context}", f"{TEXT_PROFILE_MAX}x{context}")}),
        ]
    else:
        log("building TensorRT fp16 engines")
        files = manifest["files"]
        video = tb.EngineSpec("video_encoder", mf.VIDEO_ONNX, files[mf.VIDEO_ONNX], {"frames": (video_shape,) * 3},
                              "fp16", options.layernorm_fp32)
        text = tb.EngineSpec("text_encoder", mf.TEXT_ONNX, files[mf.TEXT_ONNX],
                             {"tokens": ((1, context), (32, context), (TEXT_PROFILE_MAX, context))},
                             "fp16", options.layernorm_fp32)
        engines_dir.mkdir(exist_ok=True)
        video_rec = tb.build_engine(bundle / mf.VIDEO_ONNX, video, engines_dir, options.workspace_gb)
        text_rec = tb.build_engine(bundle / mf.TEXT_ONNX, text, engines_dir, options.workspace_gb)
        engine = tb.TensorRTEngine(bundle / video_rec.file)
        got = run_in_streams(engine, parity["frames"], options.streams)
        video_rec.parity = gate("video fp16 tensorrt vs fp32 onnx", compare(got, parity["reference"], table),
                                options.thresholds.fp16_min_cosine, options.thresholds.fp16_min_top1_agreement)
        require_passed([video_rec.parity])
        records = [video_rec.to_dict(), text_rec.to_dict()]
    result.seconds["engines"] = time.perf_counter() - t
    plans = [r["file"] for r in records if r.get("route") == "tensorrt"]
    result.manifest = mf.update_files(bundle, manifest, plans, engines=records)
