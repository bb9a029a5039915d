"""`froster-edge calibrate`: INT8 kept only where it passes the gate, and a confidence temperature.

INT8 candidates (ONNX Runtime QDQ for this CPU and, where openvino is installed, OpenVINO's (ov_route.py),
or with `trt` a TensorRT engine) are calibrated on the user's videos and gated by one gate on held-out
ones that calibration never sees; the fastest that passes, of either runtime, is kept and the manifest
records its route, backend, device and precision and every candidate's figures. A candidate that fails
(without `force`) leaves the manifest and its files as they were; the range cache stays. The
temperature is fitted on a labelled list and stored in the label table and the manifest.

See docs/calibration.md.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from ..bundle import manifest as mf
from ..bundle.labels import LabelTable, load_labels
from ..bundle.ov_sessions import installed as ov_installed
from ..bundle.ov_sessions import require_openvino
from ..bundle.ov_sessions import versions as ov_versions
from ..bundle.parity import run_in_streams
from ..bundle.sessions import onnx_video_encoder
from ..data.lists import gather_videos
from ..errors import ConfigError
from ..sampling import SamplingSpec
from .clips import ClipSet, sample_clips, split_held_out
from .confidence import expected_calibration_error, fit_temperature, nll
from .cpu_features import detect
from .gate import decide, measure_candidates
from .int8 import quantize_video_encoder
from .options import CalibrationOptions
from .ov_route import OV_CANDIDATES, OV_INT8_BIN, OV_INT8_XML, OvCandidate, open_candidate, ov_candidates, quantize_nncf
from .variants import Variant, candidates, variant

log = logging.getLogger(__name__)

INT8_ONNX = "video_encoder.int8.onnx"
CACHE_DIR = "calibration"


def _shape(manifest: dict) -> tuple[SamplingSpec, int, int]:
    """The bundle's sampling spec (its model's training frames), image size and clips per call."""
    pre = manifest["preprocessing"]
    return mf.sampling_spec(manifest), pre["image_size"], pre["streams"]


def calibrate_int8(bundle: str | Path, videos: Path | Sequence[Path], held_out: Path | Sequence[Path] | None = None, root: Path | None = None,
                   options: CalibrationOptions | None = None) -> dict:
    """Quantize the bundle's video encoder, gate it, and keep it only when it pays. Returns the report."""
    options = options or CalibrationOptions()
    names = list(dict.fromkeys(options.variants))
    asked = [variant(n) for n in names if n not in OV_CANDIDATES]  # an unknown name fails before any decoding
    asked_ov = [OV_CANDIDATES[n] for n in names if n in OV_CANDIDATES]
    if asked_ov:
        require_openvino()
    if options.trt:
        from .trt_route import check_trt_options

        check_trt_options(options)  # as early: a refused combination costs no decoding and no engine build
    bundle = Path(bundle)
    manifest = mf.verify_bundle(bundle, [mf.VIDEO_ONNX, mf.LABELS_FILE])  # what calibration reads
    sampling, size, streams = _shape(manifest)
    items = gather_videos(videos, root)
    if held_out is not None:
        calib_items, held_items = items, gather_videos(held_out, root)
        overlap = {i.path.resolve() for i in calib_items} & {i.path.resolve() for i in held_items}
        if overlap:
            raise ConfigError(f"{len(overlap)} held-out videos are also calibration videos (e.g. {sorted(overlap)[0]})")
    else:
        calib_items, held_items = split_held_out(items, options.held_out_fraction, options.seed)
    log.info(f"decoding calibration clips from {len(calib_items)} videos and gate clips from {len(held_items)} others")
    spatial = mf.spatial_spec(manifest)
    calib = sample_clips(calib_items, sampling, size, options.max_clips, options.seed, options.clips_per_video,
                         spatial=spatial)
    if options.trt and options.quantize_only:  # nothing is gated here: the QDQ model alone
        from .trt_route import quantize_for_tensorrt

        report = {"calibration": _calibration_facts(calib, options.seed)}
        return quantize_for_tensorrt(bundle, manifest, calib, options, report, bundle / CACHE_DIR)
    gate_clips = sample_clips(held_items, sampling, size, options.max_held_out, options.seed, options.held_out_views,
                              random_start=False, spatial=spatial)
    table = load_labels(bundle / mf.LABELS_FILE, manifest["model"]["fingerprint"], manifest["model"]["embed_dim"])
    report = {"calibration": _calibration_facts(calib, options.seed),
              "held_out": {"videos": sorted({Path(s).name for s in gate_clips.sources}), "clips": int(len(gate_clips.frames)),
                           "skipped": gate_clips.skipped},
              "thresholds": asdict(options.thresholds)}
    if options.trt:
        from .trt_route import calibrate_trt

        return calibrate_trt(bundle, manifest, calib, gate_clips, table, options, report, bundle / CACHE_DIR)

    return _calibrate_ort(bundle, manifest, calib, gate_clips, table, options, asked, asked_ov, report)


def _calibration_facts(calib: ClipSet, seed: int) -> dict:
    return {"videos": sorted({Path(s).name for s in calib.sources}), "clips": int(len(calib.frames)), "seed": seed,
            "digest": calib.digest(), "skipped": calib.skipped}


def _choose(figures: dict[str, dict], passing: list[str], force: bool) -> tuple[str, str]:
    """The candidate to keep and why: the fastest that passes the gate; if none does, the most faithful."""
    if passing:
        name = min(passing, key=lambda n: figures[n]["int8_ms"])
        return name, f"kept {name}: the fastest of the {len(passing)} of {len(figures)} candidates that passed the gate"
    name = max(figures, key=lambda n: (figures[n]["top1_agreement"], figures[n]["min_cosine"]))
    action = "kept by --force" if force else "the bundle is unchanged"
    return name, f"no candidate passed the gate; {name} agreed most with float ({action})"


def _calibrate_ort(bundle: Path, manifest: dict, calib: ClipSet, gate_clips: ClipSet, table: LabelTable,
                   options: CalibrationOptions, asked: list[Variant], asked_ov: list[OvCandidate], report: dict) -> dict:
    """The CPU route: ONNX Runtime QDQ variants (quantized from one set of cached ranges) and the OpenVINO
    candidates (ov_route.py), all gated by the one gate in one interleaved run; the fastest that passes is kept."""
    streams = manifest["preprocessing"]["streams"]
    cpu = detect()
    if asked or asked_ov:  # only the candidates asked for, of either runtime
        (tried, why), (ov_tried, ov_why) = (asked, "the variants asked for"), (asked_ov, "the OpenVINO candidates asked for")
    else:
        (tried, why), (ov_tried, ov_why) = candidates(cpu), _openvino_candidates(options)
    log.info(f"CPU: {cpu.describe()}; INT8 candidates {', '.join(v.name for v in tried) or 'none'}: {why}")
    if ov_tried:
        log.info(f"OpenVINO candidates {', '.join(c.name for c in ov_tried)}: {ov_why}")
    tmps = {v.name: bundle / f".{INT8_ONNX}.{v.name}.{os.getpid()}.tmp" for v in tried}
    ov_xml = bundle / f".{OV_INT8_XML}.{os.getpid()}.tmp.xml"
    try:
        quantized: dict[str, dict] = {}
        for v in tried:
            how = "dynamic ranges" if v.dynamic else f"{options.method} ranges of {len(calib.frames)} clips"
            log.info(f"quantizing {v.name} with ONNX Runtime ({how}, {options.ops} ops)")
            quantized[v.name] = quantize_video_encoder(bundle / mf.VIDEO_ONNX, tmps[v.name], calib.frames, streams,
                                                       bundle / CACHE_DIR, calib.digest(), options.method, options.ops, v)
        encoders = {n: onnx_video_encoder(p) for n, p in tmps.items()}
        if any(c.int8 for c in ov_tried):
            log.info(f"quantizing ov-int8 with NNCF (transformer model type) on {len(calib.frames)} clips")
            nncf_info = quantize_nncf(bundle / mf.VIDEO_ONNX, ov_xml, calib.frames, streams)
        for c in ov_tried:
            quantized[c.name] = nncf_info if c.int8 else {"route": "openvino", "precision": c.precision, "versions": ov_versions()}
            encoders[c.name] = open_candidate(c, bundle / mf.VIDEO_ONNX, ov_xml)
        log.info(f"gating {len(encoders)} candidates on {len(gate_clips.frames)} held-out clips")
        figures = measure_candidates(onnx_video_encoder(bundle / mf.VIDEO_ONNX), encoders, gate_clips.frames, streams,
                                     table, options.reps)
        failed = {n: decide(f, options.thresholds)[1] for n, f in figures.items()}
        chosen, verdict = _choose(figures, [n for n in figures if not failed[n]], options.force)
        accepted, reasons = decide(figures[chosen], options.thresholds, options.force)
        records = [{**v.to_dict(), "route": "onnxruntime", "backend": "ort-cpu-int8", "cache_hit": quantized[v.name]["cache_hit"]}
                   for v in tried] + [c.to_dict() for c in ov_tried]
        kept = next(r for r in records if r["name"] == chosen)
        ov_kept = kept["route"] == "openvino"
        files = ([OV_INT8_XML, OV_INT8_BIN] if kept.get("int8") else [mf.VIDEO_ONNX]) if ov_kept else [INT8_ONNX]
        report.update(
            int8=quantized[chosen], gate=figures[chosen], accepted=accepted, forced=bool(options.force and reasons),
            reasons=reasons, file=files[0] if accepted else None, files=files, cpu=cpu.to_dict(), variant=chosen,
            route=kept["route"], backend=kept["backend"], device=kept.get("device", "CPU"),
            precision=kept.get("precision", "int8"), why=f"{why}; {ov_why + '; ' if ov_tried else ''}{verdict}",
            candidates=[{**r, **figures[r["name"]], "passed": not failed[r["name"]], "reasons": failed[r["name"]]}
                        for r in records])
        if accepted:
            written = [f for f in files if f != mf.VIDEO_ONNX]
            if ov_kept and kept.get("int8"):
                os.replace(ov_xml.with_suffix(".bin"), bundle / OV_INT8_BIN)
                os.replace(ov_xml, bundle / OV_INT8_XML)
            elif not ov_kept:
                os.replace(tmps[chosen], bundle / INT8_ONNX)
            keys = ("file", "files", "route", "backend", "device", "precision", "int8", "gate", "thresholds", "forced",
                    "reasons", "cpu", "variant", "why", "candidates", "calibration", "held_out")
            before = (manifest.get("int8") or {}).get("files") or []
            stale = [f for f in before if f not in files and f != mf.VIDEO_ONNX]  # an earlier calibration's kept route
            mf.update_files(bundle, manifest, written, removed=stale, int8={k: report[k] for k in keys})
            for name in stale:
                (bundle / name).unlink(missing_ok=True)
    finally:
        encoders = {}
        for tmp in [*tmps.values(), ov_xml, ov_xml.with_suffix(".bin")]:
            tmp.unlink(missing_ok=True)
    return report


def _openvino_candidates(options: CalibrationOptions) -> tuple[list[OvCandidate], str]:
    """OpenVINO's candidates where it is wanted and installed (`options.openvino`: None = where installed)."""
    if options.openvino is False or (options.openvino is None and not ov_installed()):
        return [], ""
    return ov_candidates()


def calibrate_confidence(bundle: str | Path, val: Path, root: Path | None = None, seed: int = 0,
                         max_clips: int = 1000) -> dict:
    """Fit the label table's temperature on a labelled list; write it into the table and the manifest."""
    bundle = Path(bundle)
    manifest = mf.verify_bundle(bundle, [mf.VIDEO_ONNX, mf.LABELS_FILE])
    sampling, size, streams = _shape(manifest)
    table = load_labels(bundle / mf.LABELS_FILE, manifest["model"]["fingerprint"], manifest["model"]["embed_dim"])
    from ..data.lists import read_video_list

    items = read_video_list(val, root, num_classes=len(table.names))
    log.info(f"decoding {len(items)} labelled videos")
    clips = sample_clips(items, sampling, size, max_clips, seed, 1, random_start=False, spatial=mf.spatial_spec(manifest))
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
