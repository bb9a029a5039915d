"""`export_bundle`: a student in, a verified deployable bundle out.

Graphs, fp16 copy and label table go to a staging folder; the parity gates run on real clips; the
manifest is written last; two renames then replace the old bundle, so a failed gate or a kill
leaves it as it was. Only an empty folder or a froster-edge bundle is replaced, and files the
bundle did not create are carried over; a symlinked -o stays one. TensorRT engines are built
afterwards (unchanged ones kept); without a GPU or tensorrt that ends in MissingCapability while
the ONNX bundle stands.

See docs/export.md.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import manifest as mf
from ..bundle.label_builder import build_label_table
from ..bundle.labels import LabelTable
from ..bundle.parity import compare, gate, load_parity_clips, require_passed, run_in_streams
from ..bundle.sessions import onnx_text_encoder, onnx_video_encoder
from ..bundle.tokenizer import ClipTokenizer, open_clip_tokenizer, tokenizer_record
from ..bundle.trt_check import check_onnx
from ..errors import ConfigError, ParityError
from ..info import environment
from ..io import Output, atomic_dir, check_outputs, check_reachable, recover
from ..model.checkpoint import model_fingerprint
from ..model.clip import activation_of
from ..model.student import VideoStudent
from ..prompts import ClassText
from ..video import CLIP_MEAN, CLIP_STD
from .onnx_graphs import OPSET, export_text_encoder, export_video_encoder, to_fp16
from .options import ExportOptions
from .reference import torch_text_encoder, torch_video_encoder

log = logging.getLogger(__name__)



@dataclass
class ExportResult:
    bundle: Path
    manifest: dict[str, Any]
    seconds: dict[str, float]


def export_bundle(student: VideoStudent, out: str | Path, classes: list[ClassText], videos: list[Path],
                  options: ExportOptions | None = None, source: dict[str, Any] | None = None) -> ExportResult:
    """Export `student` with a label table of `classes` into the bundle folder `out`, gated on `videos`."""
    options = options or ExportOptions()
    if options.streams < 1:
        raise ConfigError(f"streams must be at least 1, not {options.streams}")
    link = Path(out)
    out = check_target(link)
    _user_files(out, {mf.VIDEO_ONNX, mf.TEXT_ONNX, mf.LABELS_FILE} | ({mf.VIDEO_FP16_ONNX} if options.fp16 else set()))
    student = student.eval()
    seconds: dict[str, float] = {}
    with atomic_dir(out) as staging:  # the old bundle stays until every gate has passed
        t = time.perf_counter()
        log.info("exporting the video encoder to ONNX")
        export_video_encoder(student, staging / mf.VIDEO_ONNX, options.streams)
        log.info("exporting the text encoder to ONNX")
        export_text_encoder(student, staging / mf.TEXT_ONNX)
        seconds["onnx_export"] = time.perf_counter() - t
        if options.fp16:
            t = time.perf_counter()
            to_fp16(staging / mf.VIDEO_ONNX, staging / mf.VIDEO_FP16_ONNX, options.layernorm_fp32)
            seconds["fp16_convert"] = time.perf_counter() - t
        compat = tensorrt_check(staging, options.fp16)

        t = time.perf_counter()
        log.info(f"encoding {len(classes)} classes into the label table")
        fingerprint = model_fingerprint(student)
        tokenizer = open_clip_tokenizer(student.model_cfg["text_cfg"].get("context_length", 77))
        tokenizer.save(staging / mf.TOKENIZER_FILE)
        table = build_label_table(classes, torch_text_encoder(student), student.model_cfg, fingerprint,
                                  float(student.logit_scale.detach().exp()), tokenizer=tokenizer)
        table.save(staging / mf.LABELS_FILE)
        seconds["labels"] = time.perf_counter() - t

        t = time.perf_counter()
        log.info("running the parity gates")
        parity = _parity(student, staging, table, videos, options)
        seconds["parity"] = time.perf_counter() - t
        require_passed(parity["gates"])

        _carry_engines(out, staging)
        body = _manifest_body(student, table, options, parity, source or {}, compat)
        manifest = mf.write_manifest(staging, {**body, "tokenizer": tokenizer_record(tokenizer, mf.TOKENIZER_FILE)})
        _carry_foreign(out, staging)
    result = ExportResult(link, manifest, seconds)
    if options.trt:
        _build_engines(result, student, table, parity, options)
    return result


def check_target(out: Path) -> Path:
    """The folder an export may write: `out` (a symlink's target) when it is new, empty, or provably a
    froster-edge bundle; else ConfigError and nothing is touched. First tidies what a killed export
    left beside it. The folder it is in must take new files (the bundle is staged beside it)."""
    check_reachable(out, f"-o {out}")
    target = Path(os.path.realpath(out)) if Path(out).is_symlink() else Path(out)
    check_outputs([Output(target.parent, "-o", folder=True)])
    recover(target.parent, target.name)
    if not target.exists():
        return target
    if not target.is_dir():
        raise ConfigError(f"{out} exists and is not a folder: choose another -o (nothing was overwritten)")
    if any(target.iterdir()) and mf.owned_files(target) is None:
        raise ConfigError(f"{out} exists and is not a froster-edge bundle (no froster-edge {mf.MANIFEST_FILE}): "
                          "choose another -o (nothing was overwritten)")
    return target


def _user_files(out: Path, writes: set[str]) -> list[str]:
    """The files of the bundle `out` that it did not create (a re-export keeps them); ConfigError
    when the new bundle would write one of them (`writes`), before anything is changed."""
    if not out.is_dir():
        return []
    foreign = mf.foreign_files(out, mf.owned_files(out) or set())
    clash = sorted(writes.intersection(foreign))
    if clash:
        raise ConfigError(f"{out / clash[0]} is not a file of the bundle, and the new bundle writes {clash[0]}: "
                          "move it away and export again (nothing was changed)")
    return foreign


def _carry_foreign(out: Path, staging: Path) -> None:
    """Hard-link (or copy) into staging every file of the old bundle that it did not create, after
    the new manifest is written, so they stay the user's files and never count as the bundle's."""
    for name in _user_files(out, {*mf.bundle_files(staging), mf.MANIFEST_FILE}):
        if name.startswith(mf.ENGINES_DIR + "/"):
            continue  # carried with the engine cache
        src, dst = out / name, staging / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        elif src.is_dir():
            dst.mkdir(exist_ok=True)
        else:
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)


def _carry_engines(out: Path, staging: Path) -> None:
    """Keep the previous bundle's engine cache: keys carry the ONNX hash, so stale engines never match."""
    old = out / mf.ENGINES_DIR
    if old.is_dir():
        shutil.copytree(old, staging / mf.ENGINES_DIR, symlinks=True)


def tensorrt_check(bundle: Path, fp16: bool) -> dict[str, dict]:
    """The TensorRT-compatibility report of each ONNX graph in `bundle` (for the manifest); a failure is
    logged here and refused by `--trt` (the ONNX Runtime bundle does not need it)."""
    files = [mf.VIDEO_ONNX, mf.TEXT_ONNX] + ([mf.VIDEO_FP16_ONNX] if fp16 else [])
    reports = {f: check_onnx(bundle / f).to_dict() for f in files}
    for f, r in reports.items():
        if not r["passed"]:
            log.warning(f"{f} is not TensorRT-compatible: {'; '.join(r['problems'][:2])}")
    return reports


def _parity(student: VideoStudent, bundle: Path, table: LabelTable, videos: list[Path], options: ExportOptions) -> dict:
    size = student.model_cfg["vision_cfg"]["image_size"]
    clips = load_parity_clips(videos, student.config.num_frames, size, options.max_parity_clips,
                              spatial=student.config.spatial_spec())
    th = options.thresholds
    reference = run_in_streams(torch_video_encoder(student), clips.frames, options.streams)
    fp32 = run_in_streams(onnx_video_encoder(bundle / mf.VIDEO_ONNX), clips.frames, options.streams)
    gates = [gate("video fp32 onnxruntime-cpu vs torch", compare(fp32, reference, table),
                  th.fp32_min_cosine, th.fp32_min_top1_agreement, th.fp32_max_abs)]
    prompts = [p for ps in table.prompts for p in ps][:64]
    tokens = student.tokenize(prompts).numpy()
    tokenizer = ClipTokenizer.from_file(bundle / mf.TOKENIZER_FILE, tokens.shape[1])
    if not np.array_equal(tokenizer(prompts), tokens):
        raise ParityError(f"the bundle's {mf.TOKENIZER_FILE} gives other token ids than the student's tokenizer")
    # as every caller feeds it: padded to the longest prompt, against torch over the full context
    trimmed = tokenizer(prompts, pad_to="longest")
    text_ref = torch_text_encoder(student, full_length=True)(tokens)
    text_onnx = onnx_text_encoder(bundle / mf.TEXT_ONNX)(trimmed)
    gates.append(gate("text fp32 onnxruntime-cpu vs torch",
                      compare(text_onnx, text_ref), th.fp32_min_cosine, 0.0, th.fp32_max_abs))
    if options.fp16:
        fp16 = run_in_streams(onnx_video_encoder(bundle / mf.VIDEO_FP16_ONNX), clips.frames, options.streams)
        gates.append(gate("video fp16 onnxruntime-cpu vs fp32", compare(fp16, fp32, table),
                          th.fp16_min_cosine, th.fp16_min_top1_agreement))
    return {"clips": clips.sources, "synthetic_clips": clips.synthetic, "skipped_videos": clips.skipped,
            "frames": clips.frames, "reference": fp32, "gates": gates}


def _manifest_body(student: VideoStudent, table: LabelTable, options: ExportOptions, parity: dict,
                   source: dict[str, Any], compat: dict[str, dict]) -> dict[str, Any]:
    vision = student.model_cfg["vision_cfg"]
    size, frames = vision["image_size"], student.config.num_frames
    env = environment()
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": {
            "student": asdict(student.config), "model_cfg": student.model_cfg, "embed_dim": student.embed_dim,
            "activation": activation_of(student.model_cfg),
            "fingerprint": table.fingerprint, "source": source,
        },
        "logit_scale": table.logit_scale,
        "preprocessing": {
            "image_size": size, "num_frames": frames, "streams": options.streams,
            "input": {"name": "frames", "shape": [options.streams, frames, size, size, 3], "dtype": "uint8",
                      "layout": "STHWC", "color": "RGB"},
            "resize": f"short side to image_size, centre crop ({student.config.spatial_spec().describe()})",
            "mean": [float(x) for x in CLIP_MEAN], "std": [float(x) for x in CLIP_STD],
            "normalisation": "inside the graph: (x / 255 - mean) / std",
            "sampling": student.config.sampling_spec().to_dict(),
            "spatial": student.config.spatial_spec().to_dict(),
        },
        "onnx": {
            "opset": OPSET,
            "video_encoder": {"file": mf.VIDEO_ONNX, "input": "frames", "output": "video_embedding",
                              "fp16_file": mf.VIDEO_FP16_ONNX if options.fp16 else None,
                              "layernorm_fp32": bool(options.fp16 and options.layernorm_fp32)},
            "text_encoder": {"file": mf.TEXT_ONNX, "input": "tokens", "output": "text_embedding",
                             "context_length": student.model_cfg["text_cfg"].get("context_length", 77),
                             "input_shape": ["prompts", "tokens"], "pad_to": "longest"},
        },
        "labels": {"file": mf.LABELS_FILE, "classes": len(table.names)},
        "parity": {"clips": parity["clips"], "synthetic_clips": parity["synthetic_clips"],
                   "skipped_videos": parity["skipped_videos"], "gates": parity["gates"],
                   "thresholds": asdict(options.thresholds)},
        "tensorrt_check": compat,
        "engines": [],
        "versions": {k: env[k] for k in ("froster-edge", "python", "torch", "open_clip", "onnx", "onnxruntime", "tensorrt")},
    }


def _ort_cuda_session(path: Path):
    """(ONNX Runtime's CUDA provider on `path`, the yardstick of an ort-trt engine's speed, or None; why not)."""
    import onnxruntime as ort

    from ..bundle.sessions import open_session

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return None, "ONNX Runtime has no CUDAExecutionProvider"
    try:
        session = open_session(path, ["CUDAExecutionProvider", "CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own types for missing CUDA libraries: recorded, no yardstick
        return None, f"ort-cuda cannot start: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}"
    if session.get_providers()[0] != "CUDAExecutionProvider":
        return None, f"ort-cuda fell back to {session.get_providers()[0]}"
    return session, ""


def _build_engines(result: ExportResult, student: VideoStudent, table: LabelTable, parity: dict,
                   options: ExportOptions) -> None:
    """The video engine from the bundle's typed ONNX (fp16 copy, else fp32) into the finished bundle,
    gated against the fp32 ONNX on the parity clips, then the manifest again.

    No text engine is built: label tables are made rarely and off the live path, where the fp32 ONNX
    text encoder on ONNX Runtime is exact against its gate; an engine would need its own fp32 build,
    gate and a profile over 1..N prompts and 1..context tokens for no use at run time."""
    from ..bundle import engines as tb
    from ..bundle.trt_check import refuse_failed

    bundle, manifest = result.bundle, result.manifest
    engines_dir = bundle / mf.ENGINES_DIR
    size, frames = student.model_cfg["vision_cfg"]["image_size"], student.config.num_frames
    onnx_file, precision = (mf.VIDEO_FP16_ONNX, "fp16") if options.fp16 else (mf.VIDEO_ONNX, "fp32")
    th = options.thresholds
    t = time.perf_counter()
    if options.trt_route == "tensorrt":
        tb.require_tensorrt()
        tb.cuda_device()
    refuse_failed(manifest["tensorrt_check"][onnx_file])  # checked at export, before the manifest was written
    if options.trt_route == "ort-trt":
        log.info(f"building the TensorRT engine of {onnx_file} through ONNX Runtime's TensorRT provider")
        cache = engines_dir / tb.ORT_TRT_DIR
        session = tb.ort_trt_session(bundle / onnx_file, cache, options.workspace_gb)
        name = session.get_inputs()[0].name
        got = run_in_streams(lambda x: session.run(None, {name: x})[0].astype(np.float32), parity["frames"], options.streams)
        check = gate(f"video {precision} ort-trt vs fp32 onnx", compare(got, parity["reference"], table),
                     th.fp16_min_cosine, th.fp16_min_top1_agreement)
        require_passed([check])
        options_kept = {k: v for k, v in tb.ort_trt_provider_options(cache, options.workspace_gb).items() if not k.endswith("_path")}
        cuda, why_not = _ort_cuda_session(bundle / onnx_file)
        speed = tb.ort_trt_speed(session, cuda, parity["frames"][:1].repeat(options.streams, 0))
        if why_not:
            speed["ort_cuda"] = why_not
        if speed["warning"]:
            log.warning(speed["warning"])
        records = [{"name": "video_encoder", "route": "ort-trt", "precision": precision, "onnx_file": onnx_file,
                    "cache_dir": f"{mf.ENGINES_DIR}/{tb.ORT_TRT_DIR}", "options": options_kept, "parity": check,
                    "speed": speed}]
    else:
        log.info(f"building the TensorRT {precision} engine from {onnx_file}")
        spec = tb.EngineSpec("video_encoder", onnx_file, manifest["files"][onnx_file],
                             {"frames": ((options.streams, frames, size, size, 3),) * 3}, precision, options.layernorm_fp32)
        video = tb.build_engine(bundle / onnx_file, spec, engines_dir, options.workspace_gb)
        log.info(f"{video.file}: {'reused' if video.reused else 'built'}, typing {video.typing}")
        with tb.TensorRTEngine(bundle / video.file) as engine:
            got = run_in_streams(engine, parity["frames"], options.streams)
        video.parity = gate(f"video {precision} tensorrt vs fp32 onnx", compare(got, parity["reference"], table),
                            th.fp16_min_cosine, th.fp16_min_top1_agreement)
        if not video.parity["passed"] and not video.reused:
            (bundle / video.file).unlink(missing_ok=True)
        require_passed([video.parity])
        records = [video.to_dict()]
    result.seconds["engines"] = time.perf_counter() - t
    plans = [r["file"] for r in records if r.get("route") == "tensorrt"]
    result.manifest = mf.update_files(bundle, manifest, plans, engines=records)
