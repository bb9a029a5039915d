"""`froster-edge calibrate`: INT8 that pays, behind a gate, and a confidence temperature.

INT8 (ONNX Runtime QDQ on CPU, or a TensorRT int8+fp16 engine with `trt`): calibration clips
come from the user's videos; the gate measures on held-out videos (a separate list, or a seeded
share of the videos that calibration then never sees). Only a model that passes the gate (or
`force`) is written into the bundle, with the gate's figures in the manifest; a model that fails
leaves the manifest and every file it lists exactly as they were (the range cache stays, so a
forced rebuild is quick).

Confidence: a temperature fitted on a labelled list, stored in the label table (the runtime
divides logits by it, so `--threshold` is a probability) and in the manifest, with the expected
calibration error before and after.
"""

from __future__ import annotations

import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ConfigError
from ..bundle import manifest as mf
from ..bundle.labels import load_labels
from ..bundle.parity import run_in_streams
from ..bundle.sessions import onnx_video_encoder
from .clips import gather_videos, sample_clips, split_held_out
from .confidence import expected_calibration_error, fit_temperature, nll
from .gate import decide, measure
from .int8 import quantize_video_encoder
from .options import CalibrationOptions

INT8_ONNX = "video_encoder.int8.onnx"
CACHE_DIR = "calibration"


def _shape(manifest: dict) -> tuple[int, int, int]:
    pre = manifest["preprocessing"]
    return pre["num_frames"], pre["image_size"], pre["streams"]


def calibrate_int8(bundle: str | Path, videos: Path, held_out: Path | None = None, root: Path | None = None,
                   options: CalibrationOptions | None = None, log: Callable[[str], None] = lambda m: None) -> dict:
    """Quantize the bundle's video encoder, gate it, and keep it only when it pays. Returns the report."""
    options = options or CalibrationOptions()
    bundle = Path(bundle)
    manifest = mf.verify_bundle(bundle, [mf.VIDEO_ONNX, mf.LABELS_FILE])  # what calibration reads
    frames, size, streams = _shape(manifest)
    items = gather_videos(videos, root)
    if held_out is not None:
        calib_items, held_items = items, gather_videos(held_out, root)
        overlap = {i.path.resolve() for i in calib_items} & {i.path.resolve() for i in held_items}
        if overlap:
            raise ConfigError(f"{len(overlap)} held-out videos are also calibration videos (e.g. {sorted(overlap)[0]})")
    else:
        calib_items, held_items = split_held_out(items, options.held_out_fraction, options.seed)
    log(f"decoding calibration clips from {len(calib_items)} videos and gate clips from {len(held_items)} others")
    calib = sample_clips(calib_items, frames, size, options.max_clips, options.seed, options.clips_per_video)
    gate_clips = sample_clips(held_items, frames, size, options.max_held_out, options.seed, options.held_out_views,
                              random_start=False)
    table = load_labels(bundle / mf.LABELS_FILE, manifest["model"]["fingerprint"], manifest["model"]["embed_dim"])
    report = {"calibration": {"videos": sorted({Path(s).name for s in calib.sources}), "clips": int(len(calib.frames)),
                              "seed": options.seed, "digest": calib.digest(), "skipped": calib.skipped},
              "held_out": {"videos": sorted({Path(s).name for s in gate_clips.sources}), "clips": int(len(gate_clips.frames)),
                           "skipped": gate_clips.skipped},
              "thresholds": asdict(options.thresholds)}
    if options.trt:
        from .trt_route import calibrate_trt

        return calibrate_trt(bundle, manifest, calib, gate_clips, table, options, report, log)

    tmp = bundle / f".{INT8_ONNX}.{os.getpid()}.tmp"
    try:
        log(f"quantizing with ONNX Runtime ({options.method}, {options.ops} ops) on {len(calib.frames)} clips")
        report["int8"] = quantize_video_encoder(bundle / mf.VIDEO_ONNX, tmp, calib.frames, streams, bundle / CACHE_DIR,
                                                calib.digest(), options.method, options.ops, options.activation,
                                                options.preprocess)
        log(f"gating on {len(gate_clips.frames)} held-out clips")
        figures = measure(onnx_video_encoder(bundle / mf.VIDEO_ONNX), onnx_video_encoder(tmp), gate_clips.frames,
                          streams, table, options.reps)
        accepted, reasons = decide(figures, options.thresholds, options.force)
        report.update(gate=figures, accepted=accepted, forced=bool(options.force and reasons), reasons=reasons,
                      file=INT8_ONNX if accepted else None)
        if accepted:
            os.replace(tmp, bundle / INT8_ONNX)
            section = {k: report[k] for k in ("file", "int8", "gate", "thresholds", "forced", "reasons", "calibration", "held_out")}
            mf.update_files(bundle, manifest, [INT8_ONNX], int8=section)
    finally:
        if tmp.exists():
            tmp.unlink()
    return report


def calibrate_confidence(bundle: str | Path, val: Path, root: Path | None = None, seed: int = 0,
                         max_clips: int = 1000, log: Callable[[str], None] = lambda m: None) -> dict:
    """Fit the label table's temperature on a labelled list; write it into the table and the manifest."""
    bundle = Path(bundle)
    manifest = mf.verify_bundle(bundle, [mf.VIDEO_ONNX, mf.LABELS_FILE])
    frames, size, streams = _shape(manifest)
    table = load_labels(bundle / mf.LABELS_FILE, manifest["model"]["fingerprint"], manifest["model"]["embed_dim"])
    from ..data.lists import read_video_list

    items = read_video_list(val, root, num_classes=len(table.names))
    log(f"decoding {len(items)} labelled videos")
    clips = sample_clips(items, frames, size, max_clips, seed, 1, random_start=False)
    if len(clips.frames) < 2:
        raise ConfigError("need at least 2 decodable labelled clips to fit a temperature")
    emb = run_in_streams(onnx_video_encoder(bundle / mf.VIDEO_ONNX), clips.frames, streams)
    logits = table.logit_scale * emb.astype(np.float64) @ table.embeddings.T.astype(np.float64)
    labels = clips.labels
    temperature = fit_temperature(logits, labels)
    report = {
        "temperature": round(temperature, 5), "clips": int(len(labels)), "skipped": clips.skipped,
        "accuracy": float((logits.argmax(-1) == labels).mean()),
        "ece_before": expected_calibration_error(logits, labels), "ece_after": expected_calibration_error(logits, labels, temperature),
        "nll_before": nll(logits, labels), "nll_after": nll(logits, labels, temperature),
    }
    replace(table, temperature=temperature).save(bundle / mf.LABELS_FILE)
    mf.update_files(bundle, manifest, [mf.LABELS_FILE], confidence={k: v for k, v in report.items() if k != "skipped"})
    return report
