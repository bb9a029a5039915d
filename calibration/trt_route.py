"""The TensorRT side of `calibrate`: an INT8 engine built from an explicitly quantized ONNX, gated on the GPU.

TensorRT 11 has no implicit-quantization calibrators, so the engine is built from ONNX Runtime's
QDQ model with symmetric int8 activations and weights (TensorRT's only form); what stays float
runs in fp16: 10.x quantizes the fp32 graph and builds with INT8 + FP16, 11.x quantizes the fp16
graph. `quantize_only` needs no GPU (quantize on x86, build on a Jetson with `--qdq FILE`). Speed is
gated against the bundle's fp16 engine, agreement against the fp32 ONNX; a model that fails is
deleted with its engine and the manifest is unchanged.

See docs/calibration.md.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from ..bundle import engines as tb
from ..bundle import manifest as mf
from ..bundle.labels import LabelTable
from ..bundle.parity import compare, run_in_streams
from ..bundle.sessions import onnx_video_encoder
from ..errors import ConfigError
from .clips import ClipSet
from .gate import decide, measure
from .int8 import quantize_video_encoder
from .options import CalibrationOptions
from .variants import variant

TRT_INT8_ONNX = "video_encoder.int8-trt.onnx"
QDQ_FILE = "video_encoder.int8-trt.qdq.onnx"  # in the calibration folder: quantized here, built elsewhere
QDQ_METADATA = "froster_edge.qdq"  # the QDQ model's metadata_props key: what it was quantized from
JETPACK_TENSORRT = 10  # the TensorRT major a QDQ model is made for where none is installed (JetPack 6: 10.3)

log = logging.getLogger(__name__)


def trt_variant(names: tuple[str, ...] | list[str]) -> str:
    """The one variant --trt quantizes with (default s8s8): TensorRT quantizes to symmetric int8 only, so
    a variant with uint8 (asymmetric) activations or weights cannot be built."""
    names = list(dict.fromkeys(names)) or ["s8s8"]
    if len(names) > 1:
        raise ConfigError(f"--trt builds one engine: give at most one --variant, not {', '.join(names)}")
    chosen = variant(names[0])
    if chosen.activation != "int8" or chosen.weights != "int8":
        raise ConfigError(f"--trt quantizes activations to symmetric int8 (TensorRT has nothing else), not {chosen.name}: "
                          "use --variant s8s8 or s8s8-7bit")
    return chosen.name


def check_trt_options(options: CalibrationOptions) -> str:
    """The variant of a --trt calibration, or ConfigError before any clip is decoded or engine built."""
    if options.ops != "linear":
        raise ConfigError("--trt quantizes the linear layers only (--ops linear): with --ops all ONNX Runtime also "
                          "quantizes biases to int32, which TensorRT's DequantizeLinear does not take")
    if options.quantize_only and options.qdq is not None:
        raise ConfigError("--quantize-only writes a QDQ model, --qdq builds one: give one of them")
    return trt_variant(options.variants)


def tensorrt_major(version: str) -> int:
    return int(version.split(".")[0])


def qdq_source(manifest: dict, major: int) -> tuple[str, str]:
    """(the bundle's graph to quantize for TensorRT `major`, why): the layers left float must run in fp16."""
    video = manifest["onnx"]["video_encoder"]
    if major < 11:
        return video["file"], ("TensorRT 10.x: quantized from the fp32 graph and built with the INT8 + FP16 flags, "
                               "so the layers left float run in fp16")
    if video.get("fp16_file"):
        return video["fp16_file"], ("TensorRT 11 builds strongly typed networks only: quantized from the fp16 graph, "
                                    "so the layers left float run in fp16")
    return video["file"], ("TensorRT 11 builds strongly typed networks only and the bundle has no fp16 graph (exported "
                           "with --no-fp16): the layers left float run in fp32")


def _stamp(path: Path, facts: dict) -> None:
    """Record in the QDQ model what it was quantized from, so another machine can check it before a build."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    model.metadata_props.add(key=QDQ_METADATA, value=json.dumps(facts, sort_keys=True))
    onnx.save(model, str(path))


def read_qdq_facts(path: Path) -> dict:
    """What `quantize_only` recorded in a QDQ model, or ConfigError."""
    import onnx

    if not path.is_file():
        raise ConfigError(f"--qdq {path}: no such file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises protobuf's DecodeError and others for a file that is not ONNX
        raise ConfigError(f"--qdq {path}: not an ONNX model ({type(e).__name__})") from e
    value = next((p.value for p in model.metadata_props if p.key == QDQ_METADATA), None)
    if value is None:
        raise ConfigError(f"--qdq {path}: not a QDQ model made by froster-edge calibrate --trt --quantize-only")
    return json.loads(value)


def check_qdq_facts(facts: dict, manifest: dict, major: int, variant_name: str, method: str, path: Path) -> None:
    """ConfigError unless the QDQ model was quantized from this bundle's graph that TensorRT `major` wants."""
    source, _ = qdq_source(manifest, major)
    want = {"source": source, "source_sha256": manifest["files"].get(source), "variant": variant_name, "method": method}
    wrong = [f"{k} {facts.get(k)!r} (here: {v!r})" for k, v in want.items() if facts.get(k) != v]
    if wrong:
        raise ConfigError(f"--qdq {path.name} was not quantized for this bundle and TensorRT {major}.x: " + ", ".join(wrong)
                          + f"; quantize it again with --quantize-only (it targeted TensorRT {facts.get('tensorrt_major')}.x)")


def _opset19(source: Path, out: Path) -> None:
    """`source` at opset 19, the first whose QuantizeLinear/DequantizeLinear take fp16 scales: ONNX Runtime
    quantizes an fp16 graph with fp16 scales, which an older opset's shape inference refuses."""
    import onnx
    from onnx import version_converter

    model = onnx.load(str(source))
    version = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    onnx.save(version_converter.convert_version(model, 19) if version < 19 else model, str(out))


def _quantize(bundle: Path, manifest: dict, calib: ClipSet, options: CalibrationOptions, chosen: str, major: int,
              out: Path, cache_dir: Path) -> dict:
    """Quantize the graph TensorRT `major` wants into `out`, stamped with what it came from; the report's int8 section."""
    source, why = qdq_source(manifest, major)
    mf.verify_bundle(bundle, [source])
    streams = manifest["preprocessing"]["streams"]
    graph = bundle / source
    if source == manifest["onnx"]["video_encoder"].get("fp16_file"):
        graph = out.with_name(out.name + ".opset19.onnx")
        _opset19(bundle / source, graph)
    try:
        info = quantize_video_encoder(graph, out, calib.frames, streams, cache_dir, calib.digest(),
                                      method=options.method, ops=options.ops, variant=chosen, target="tensorrt")
    finally:
        if graph != bundle / source:
            graph.unlink(missing_ok=True)
    facts = {"source": source, "source_sha256": manifest["files"][source], "tensorrt_major": major, "variant": chosen,
             "method": options.method, "ops": options.ops, "calibration": f"{options.method}:{options.ops}:{calib.digest()}"}
    _stamp(out, facts)
    return {**info, "route": "tensorrt-qdq", "source": source, "why_source": why, "tensorrt_major": major}


def quantize_for_tensorrt(bundle: Path, manifest: dict, calib: ClipSet, options: CalibrationOptions, report: dict,
                          cache_dir: Path) -> dict:
    """`--quantize-only`: the QDQ model for the TensorRT installed here (else JetPack 6's), no GPU needed."""
    chosen = check_trt_options(options)
    try:
        import tensorrt

        major = tensorrt_major(tensorrt.__version__)
    except ImportError:
        major = JETPACK_TENSORRT
    out = cache_dir / QDQ_FILE
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".{QDQ_FILE}.{os.getpid()}.tmp"
    try:
        log.info(f"quantizing for TensorRT {major}.x with ONNX Runtime ({options.method}, symmetric int8) on {len(calib.frames)} clips")
        info = _quantize(bundle, manifest, calib, options, chosen, major, tmp, cache_dir)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    report.update(int8={**info, "qdq": str(out)}, accepted=False, file=None, reasons=["--quantize-only: not built, not gated"])
    return report


def calibrate_trt(bundle: Path, manifest: dict, calib: ClipSet, gate_clips: ClipSet, table: LabelTable,
                  options: CalibrationOptions, report: dict, cache_dir: Path) -> dict:
    chosen = check_trt_options(options)
    trt = tb.require_tensorrt()
    tb.cuda_device()
    major = tensorrt_major(trt.__version__)
    if options.qdq is not None:  # before any build: a wrong file is refused in seconds
        facts = read_qdq_facts(Path(options.qdq))
        check_qdq_facts(facts, manifest, major, chosen, options.method, Path(options.qdq))
    pre = manifest["preprocessing"]
    streams = pre["streams"]
    shapes = {"frames": (tuple(pre["input"]["shape"]),) * 3}
    engines_dir = bundle / mf.ENGINES_DIR
    video = manifest["onnx"]["video_encoder"]
    float_file = video.get("fp16_file") or video["file"]
    mf.verify_bundle(bundle, [float_file])
    float_spec = tb.EngineSpec("video_encoder", float_file, manifest["files"][float_file], shapes,
                               "fp16" if video.get("fp16_file") else "fp32", bool(video.get("layernorm_fp32")))
    log.info(f"building (or reusing) the TensorRT engine of {float_file}, the speed baseline")
    float_rec = tb.build_engine(bundle / float_file, float_spec, engines_dir)
    tmp = bundle / f".{TRT_INT8_ONNX}.{os.getpid()}.tmp"
    int8_rec = None
    try:
        if options.qdq is not None:
            log.info(f"building from {Path(options.qdq).name}, quantized from {facts['source']} on another machine")
            shutil.copyfile(options.qdq, tmp)
            source, why = qdq_source(manifest, major)
            info = {"route": "tensorrt-qdq", "source": source, "why_source": why, "tensorrt_major": major,
                    "variant": chosen, "method": options.method, "ops": options.ops, "qdq": str(options.qdq)}
            calibration = facts["calibration"]
        else:
            log.info(f"quantizing with ONNX Runtime ({options.method}, {options.ops} ops, symmetric int8) on {len(calib.frames)} clips")
            info = _quantize(bundle, manifest, calib, options, chosen, major, tmp, cache_dir)
            calibration = f"{options.method}:{options.ops}:{calib.digest()}"
        log.info(info["why_source"])
        spec = tb.EngineSpec("video_encoder", TRT_INT8_ONNX, mf.sha256_file(tmp), shapes, "int8", calibration=calibration)
        log.info("building the TensorRT int8 engine from the QDQ model")
        int8_rec = tb.build_engine(tmp, spec, engines_dir)
        log.info(f"gating on {len(gate_clips.frames)} held-out clips")
        with tb.TensorRTEngine(bundle / float_rec.file) as float_engine, tb.TensorRTEngine(bundle / int8_rec.file) as int8_engine:
            figures = measure(float_engine, int8_engine, gate_clips.frames, streams, table, options.reps)
            int8_out = run_in_streams(int8_engine, gate_clips.frames, streams)
        reference = run_in_streams(onnx_video_encoder(bundle / mf.VIDEO_ONNX), gate_clips.frames, streams)
        vs_fp32 = compare(int8_out, reference, table)
        figures.update(min_cosine=vs_fp32["min_cosine"], top1_agreement=vs_fp32["top1_agreement"],
                       speed_baseline=f"tensorrt {float_spec.precision} engine", agreement_reference="fp32 onnx")
        accepted, reasons = decide(figures, options.thresholds, options.force)
        int8_rec.parity = figures
        report.update(int8={**info, "onnx": TRT_INT8_ONNX, "engine": int8_rec.file, "typing": int8_rec.typing},
                      gate=figures, accepted=accepted, forced=bool(options.force and reasons), reasons=reasons,
                      file=int8_rec.file if accepted else None)
        if accepted:
            os.replace(tmp, bundle / TRT_INT8_ONNX)
            keys = (float_rec.key, int8_rec.key)
            engines = [e for e in manifest.get("engines", []) if e.get("key") not in keys]
            section = {k: report[k] for k in ("file", "int8", "gate", "thresholds", "forced", "reasons", "calibration", "held_out")}
            mf.update_files(bundle, manifest, [float_rec.file, int8_rec.file, TRT_INT8_ONNX],
                            engines=engines + [float_rec.to_dict(), int8_rec.to_dict()], int8_trt=section)
    finally:
        tmp.unlink(missing_ok=True)
        if int8_rec is not None and not int8_rec.reused and not report.get("accepted"):
            (bundle / int8_rec.file).unlink(missing_ok=True)
    return report
