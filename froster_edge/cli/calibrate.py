"""`froster-edge calibrate`: INT8 behind a measured gate, and the confidence temperature.

See docs/cli.md.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..calibration.options import CALIBRATION_DEFAULTS as _CAL
from ..calibration.options import Method, Ops
from ..calibration.ov_route import OV_CANDIDATES
from ..calibration.variants import VARIANTS
from ..errors import ConfigError
from ..logs import install_cli_handler
from .base import command
from .options import JsonOut, readable, videos_option, write_json

VariantName = Enum("VariantName", {name: name for name in (*VARIANTS, *OV_CANDIDATES)}, type=str)  # --variant's choices, checked at parse time


@command("calibrate")
def calibrate_cmd(
    bundle: Annotated[Path, typer.Option(help="The bundle to calibrate (from froster-edge export).")],
    videos: Annotated[Optional[list[Path]], videos_option("INT8: calibration videos.")] = None,
    held_out: Annotated[Optional[list[Path]], videos_option(
        "INT8: videos for the gate; default: a seeded quarter of --videos, kept out of calibration.", "--held-out")] = None,
    root: Annotated[Optional[Path], typer.Option(help="Folder that list paths are relative to (default: the list's folder).")] = None,
    confidence: Annotated[bool, typer.Option("--confidence", help="Fit the confidence temperature on --val.")] = False,
    val: Annotated[Optional[Path], typer.Option(help="Labelled `path label` list for --confidence (labels index the bundle's table).")] = None,
    trt: Annotated[bool, typer.Option(
        "--trt", help="INT8 as a TensorRT engine built from a symmetric-int8 QDQ model, gated on the GPU "
                      "(GPU + TensorRT 10.3-11.x; exit 3 without).")] = _CAL.trt,
    openvino: Annotated[Optional[bool], typer.Option(
        "--openvino/--no-openvino", help="CPU route: also gate OpenVINO candidates (NNCF INT8, bf16/fp16 hints) beside "
        "ONNX Runtime's; default: where openvino is installed (--openvino without it: exit 3).")] = _CAL.openvino,
    quantize_only: Annotated[bool, typer.Option(
        "--quantize-only", help="With --trt: only write the QDQ model into the bundle's calibration/ folder (no GPU "
        "needed), for the TensorRT installed here, else JetPack 6's 10.x; build it on the GPU box with --qdq.")] = False,
    qdq: Annotated[Optional[Path], typer.Option(
        help="With --trt: build and gate this QDQ model (from --quantize-only on another machine) instead of "
             "quantizing here.")] = None,
    method: Annotated[Method, typer.Option(help="Range calibration: minmax, entropy or percentile.")] = _CAL.method,
    ops: Annotated[Ops, typer.Option(help="linear: quantize weight MatMuls only; all: every op ONNX Runtime can.")] = _CAL.ops,
    variant: Annotated[Optional[list[VariantName]], typer.Option(
        "--variant", help="Candidate to try (repeatable): an ONNX Runtime INT8 variant or an OpenVINO one (ov-...); "
        "default: the ONNX Runtime variants this CPU's 8-bit dot product does not saturate, and OpenVINO's where it is "
        "installed. --trt takes one, s8s8 (default) or s8s8-7bit.")] = None,
    max_clips: Annotated[int, typer.Option(help="Calibration clips at most.", min=1)] = _CAL.max_clips,
    max_held_out: Annotated[int, typer.Option(help="Gate clips at most.", min=1)] = _CAL.max_held_out,
    seed: Annotated[int, typer.Option(help="Seed of the video order, clip starts and held-out split.")] = _CAL.seed,
    min_agreement: Annotated[float, typer.Option(
        help="Gate: INT8 top-1 must agree with float on this share of held-out clips.", min=0.0, max=1.0)] = _CAL.thresholds.min_top1_agreement,
    min_speedup: Annotated[float, typer.Option(help="Gate: INT8 must be this many times faster than float here.", min=0.0)] = _CAL.thresholds.min_speedup,
    min_cosine: Annotated[float, typer.Option(
        help="Gate: every held-out INT8 embedding's cosine to float at least this.", min=-1.0, max=1.0)] = _CAL.thresholds.min_cosine,
    force: Annotated[bool, typer.Option("--force", help="Keep the INT8 model even when the gate fails (the reasons are recorded).")] = False,
    json_out: JsonOut = None,
) -> None:
    """INT8 that pays and confidence that means something, for an exported bundle.

    INT8: quantizes the video encoder on clips of --videos (decoded and cropped as the runtime
    does) in the variants this CPU's 8-bit dot product does not saturate (e.g. 7-bit weights on
    x86 without VNNI), then measures on held-out clips each one's cosine and top-1 agreement with
    float and its speed-up on this machine, and keeps the fastest that passes (or, with --force,
    the most faithful). Where openvino is installed, OpenVINO's candidates (NNCF INT8, and bf16/fp16
    where the CPU lists them) are gated in the same run, and the fastest of both runtimes is kept
    (`run --backend auto` then uses it). The manifest records this CPU's features, the kept
    candidate's route, backend, device and precision, and why.
    --confidence fits a temperature on --val so that the runtime's
    --threshold is a probability. --json writes the report (gate figures, temperature, ECE).

    Examples:
      froster-edge calibrate --bundle bundles/b32 --videos my_videos/
      froster-edge calibrate --bundle bundles/b32 --videos calib.txt --held-out test.txt --root /data
      froster-edge calibrate --bundle bundles/b32 --videos day/ --videos night/ --videos extra.mp4
      froster-edge calibrate --bundle bundles/b32 --confidence --val val.txt --root /data --json report.json
      froster-edge calibrate --bundle bundles/b32 --videos my_videos/ --variant ov-int8 --variant s8s8
      froster-edge calibrate --bundle b32 --videos calib/ --trt --quantize-only
      froster-edge calibrate --bundle b32 --videos calib/ --trt --qdq b32/calibration/video_encoder.int8-trt.qdq.onnx
    (the last two: quantize on an x86 box without a GPU, then build and gate on the Jetson)
    """
    from dataclasses import replace as dc_replace

    from ..calibration.options import GateThresholds

    if videos is None and not confidence:
        raise ConfigError("give --videos for INT8, --confidence --val for the temperature, or both")
    if confidence and val is None:
        raise ConfigError("--confidence needs --val LIST")
    if openvino and trt:
        raise ConfigError("--openvino gates CPU candidates; --trt builds a TensorRT engine: give one of them")
    if (quantize_only or qdq is not None) and not trt:
        raise ConfigError("--quantize-only and --qdq belong to --trt")
    options = dc_replace(_CAL, trt=trt, quantize_only=quantize_only, qdq=qdq, method=method, ops=ops,
                         variants=tuple(v.value for v in variant or ()), max_clips=max_clips, max_held_out=max_held_out,
                         seed=seed, force=force, openvino=openvino, thresholds=GateThresholds(min_agreement, min_speedup, min_cosine))
    if trt:
        from ..calibration.trt_route import check_trt_options

        check_trt_options(options)
    out = readable(json_out)
    install_cli_handler(indent="  ")
    report: dict = {}
    if videos is not None:
        from ..calibration.calibrate import calibrate_int8

        report["int8"] = r = calibrate_int8(bundle, videos, held_out, root, options)
        if quantize_only:
            print(f"int8 (tensorrt-qdq for TensorRT {r['int8']['tensorrt_major']}.x, from {r['int8']['source']}): "
                  f"wrote {r['int8']['qdq']}; build and gate it on the GPU box with --trt --qdq", file=out)
        else:
            _print_int8(r, out)
    if confidence:
        from ..calibration.calibrate import calibrate_confidence

        report["confidence"] = c = calibrate_confidence(bundle, val, root, seed)
        print(f"temperature {c['temperature']:.3f} on {c['clips']} clips: ECE {c['ece_before']:.3f} -> {c['ece_after']:.3f}, "
              f"NLL {c['nll_before']:.3f} -> {c['nll_after']:.3f}", file=out)
    write_json(json_out, report)


def _figures(g: dict) -> str:
    return (f"agreement {g['top1_agreement']:.1%}, min cosine {g['min_cosine']:.4f}, "
            f"speed-up {g['speedup']:.2f}x ({g['float_ms']:.1f} -> {g['int8_ms']:.1f} ms)")


def _print_int8(r: dict, out) -> None:
    """The gate's verdict (and each candidate's figures) in a few lines."""
    for c in r.get("candidates", []):
        print(f"  candidate {c['name']}: {_figures(c)}: " + ("passed" if c["passed"] else "; ".join(c["reasons"])), file=out)
    g = r["gate"]
    verdict = "kept" if r["accepted"] else "rejected, the bundle is unchanged"
    what = r["int8"]["route"] + (f", {r['variant']} on {r['cpu']['arch']} {r['cpu']['dot_product']}" if "variant" in r else "")
    what += f", backend {r['backend']}" if "backend" in r else ""
    print(f"int8 ({what}): {_figures(g)} on {g['held_out_clips']} held-out clips: {verdict}"
          + (f" ({'; '.join(r['reasons'])})" if r["reasons"] else ""), file=out)
