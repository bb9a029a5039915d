"""`froster-edge calibrate`: INT8 behind a measured gate, and the confidence temperature."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..calibration.options import CALIBRATION_DEFAULTS as _CAL
from ..calibration.options import Activation, Method, Ops
from ..errors import ConfigError
from .base import command
from .options import JsonOut, readable, write_json


@command("calibrate")
def calibrate_cmd(
    bundle: Annotated[Path, typer.Option(help="The bundle to calibrate (from froster-edge export).")],
    videos: Annotated[Optional[Path], typer.Option(help="INT8: calibration videos, a folder or a `path [label]` list.")] = None,
    held_out: Annotated[Optional[Path], typer.Option(
        "--held-out", help="INT8: videos for the gate; default: a seeded quarter of --videos, kept out of calibration.")] = None,
    root: Annotated[Optional[Path], typer.Option(help="Folder that list paths are relative to (default: the list's folder).")] = None,
    confidence: Annotated[bool, typer.Option("--confidence", help="Fit the confidence temperature on --val.")] = False,
    val: Annotated[Optional[Path], typer.Option(help="Labelled `path label` list for --confidence (labels index the bundle's table).")] = None,
    trt: Annotated[bool, typer.Option(
        "--trt", help="INT8 as a TensorRT int8+fp16 engine instead of ONNX Runtime QDQ (GPU + tensorrt; exit 3 without).")] = _CAL.trt,
    method: Annotated[Method, typer.Option(help="Range calibration: minmax, entropy or percentile (TensorRT: entropy or minmax).")] = _CAL.method,
    ops: Annotated[Ops, typer.Option(help="linear: quantize weight MatMuls only; all: every op ONNX Runtime can.")] = _CAL.ops,
    activation: Annotated[Optional[Activation], typer.Option(help="Activation type uint8 or int8; default uint8 on x86, int8 on ARM.")] = _CAL.activation,
    max_clips: Annotated[int, typer.Option(help="Calibration clips at most.", min=1)] = _CAL.max_clips,
    max_held_out: Annotated[int, typer.Option(help="Gate clips at most.", min=1)] = _CAL.max_held_out,
    seed: Annotated[int, typer.Option(help="Seed of the video order, clip starts and held-out split.")] = _CAL.seed,
    min_agreement: Annotated[float, typer.Option(
        help="Gate: INT8 top-1 must agree with float on this share of held-out clips.", min=0.0, max=1.0)] = _CAL.thresholds.min_top1_agreement,
    min_speedup: Annotated[float, typer.Option(help="Gate: INT8 must be this many times faster than float here.", min=0.0)] = _CAL.thresholds.min_speedup,
    force: Annotated[bool, typer.Option("--force", help="Keep the INT8 model even when the gate fails (the reasons are recorded).")] = False,
    json_out: JsonOut = None,
) -> None:
    """INT8 that pays and confidence that means something, for an exported bundle.

    INT8: quantizes the video encoder on clips of --videos (decoded and cropped as the runtime
    does), then measures on held-out clips the cosine and top-1 agreement with float and the
    speed-up on this machine. The INT8 model enters the bundle only when agreement and speed-up
    both pass (or --force). --confidence fits a temperature on --val so that the runtime's
    --threshold is a probability. --json writes the report (gate figures, temperature, ECE).

    Examples:
      froster-edge calibrate --bundle bundles/b32 --videos my_videos/
      froster-edge calibrate --bundle bundles/b32 --videos calib.txt --held-out test.txt --root /data
      froster-edge calibrate --bundle bundles/b32 --confidence --val val.txt --root /data --json report.json
    """
    from dataclasses import replace as dc_replace

    from ..calibration.options import GateThresholds

    if videos is None and not confidence:
        raise ConfigError("give --videos for INT8, --confidence --val for the temperature, or both")
    if confidence and val is None:
        raise ConfigError("--confidence needs --val LIST")
    if trt and method == "percentile":
        raise ConfigError("--trt calibrates with --method entropy or minmax (TensorRT has no percentile calibrator)")
    out = readable(json_out)
    log = lambda msg: print(f"  {msg}", file=sys.stderr)
    report: dict = {}
    if videos is not None:
        from ..calibration.calibrate import calibrate_int8

        options = dc_replace(_CAL, trt=trt, method=method, ops=ops, activation=activation, max_clips=max_clips,
                             max_held_out=max_held_out, seed=seed, force=force,
                             thresholds=GateThresholds(min_agreement, min_speedup))
        report["int8"] = r = calibrate_int8(bundle, videos, held_out, root, options, log)
        g = r["gate"]
        verdict = "kept" if r["accepted"] else "rejected, the bundle is unchanged"
        print(f"int8 ({r['int8']['route']}): agreement {g['top1_agreement']:.1%}, min cosine {g['min_cosine']:.4f}, "
              f"speed-up {g['speedup']:.2f}x ({g['float_ms']:.1f} -> {g['int8_ms']:.1f} ms) on {g['held_out_clips']} held-out clips: {verdict}"
              + (f" ({'; '.join(r['reasons'])})" if r["reasons"] else ""), file=out)
    if confidence:
        from ..calibration.calibrate import calibrate_confidence

        report["confidence"] = c = calibrate_confidence(bundle, val, root, seed, log=log)
        print(f"temperature {c['temperature']:.3f} on {c['clips']} clips: ECE {c['ece_before']:.3f} -> {c['ece_after']:.3f}, "
              f"NLL {c['nll_before']:.3f} -> {c['nll_after']:.3f}", file=out)
    write_json(json_out, report)
