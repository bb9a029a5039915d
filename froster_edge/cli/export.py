"""`froster-edge export` and `labels`: a student into a bundle, new class texts into a label table.

See docs/cli.md.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import ConfigError, FrosterError, MissingCapability
from ..export.options import EXPORT_DEFAULTS as _EXPORT
from ..export.options import TrtRoute
from .base import command
from .models import model_source
from .options import (
    DEFAULT_MODEL,
    DEFAULT_PRETRAINED,
    ActivationOption,
    Classes,
    Frames,
    JsonOut,
    Model,
    Pretrained,
    Student,
    out_option,
    readable,
    videos_option,
    write_json,
)


@command("export")
def export_cmd(
    out: Annotated[Path, out_option("Bundle directory to write (replaced only after every gate passes).")],
    classes: Classes,
    student: Student = None,
    model: Model = DEFAULT_MODEL,
    pretrained: Pretrained = DEFAULT_PRETRAINED,
    activation: ActivationOption = "auto",
    frames: Frames = None,
    streams: Annotated[int, typer.Option(help="Clips per video-encoder call (cameras batched together), fixed in the graph.", min=1)] = _EXPORT.streams,
    videos: Annotated[Optional[list[Path]], videos_option("Real clips for the parity gates (without them the gates run on noise).")] = None,
    fp16: Annotated[bool, typer.Option("--fp16/--no-fp16", help="Also write video_encoder.fp16.onnx and gate it against fp32.")] = _EXPORT.fp16,
    layernorm_fp32: Annotated[bool, typer.Option(
        "--layernorm-fp32", help="Keep LayerNorm in fp32 inside video_encoder.fp16.onnx (and so in the engine built from it).")] = _EXPORT.layernorm_fp32,
    trt: Annotated[bool, typer.Option(
        "--trt", help="Also build the TensorRT video engine from the fp16 ONNX, strongly typed, gated against fp32 ONNX "
                      "(needs a GPU and TensorRT 10.3-11.x; exit 3 without).")] = _EXPORT.trt,
    trt_route: Annotated[TrtRoute, typer.Option(
        help="tensorrt (the TensorRT API) or ort-trt (ONNX Runtime's TensorRT provider, its engine cache in the bundle).")] = _EXPORT.trt_route,
    workspace_gb: Annotated[float, typer.Option(help="TensorRT builder memory-pool limit, GiB.", min=0.25)] = _EXPORT.workspace_gb,
    max_parity_clips: Annotated[int, typer.Option(help="At most this many clips go through the parity gates.", min=1)] = _EXPORT.max_parity_clips,
    json_out: JsonOut = None,
) -> None:
    """Export a student to a deployable bundle: ONNX encoders, label table, manifest, parity gates.

    The video encoder takes uint8 RGB frames (streams, T, S, S, 3) with CLIP's normalisation in
    the graph (--frames fixes T); the text encoder takes tokens (N, L), L up to the 77-token
    context. Parity gates (fp32 ONNX Runtime vs torch, fp16 vs fp32) run on --videos and fail the
    export when broken; the previous bundle stays. --json writes the manifest.

    Examples:
      froster-edge export --student students/froster-b16 --classes k400.json --videos clips/ -o bundles/b16
      froster-edge export --pretrained ~/weights/ViT-B-16.bin --classes names.txt --videos clip.mp4 -o bundles/zs --trt
    """
    from ..data.lists import gather_videos, read_classes
    from ..export.bundle import check_target, export_bundle
    from ..logs import install_cli_handler

    install_cli_handler(indent="  ")
    from ..export.options import ExportOptions
    from ..model.factory import load_model

    check_target(out)
    class_texts = read_classes(classes)
    clips = [item.path for item in gather_videos(videos or [])]
    net = load_model(student, model, pretrained, frames, activation)
    options = ExportOptions(streams=streams, fp16=fp16, layernorm_fp32=layernorm_fp32, trt=trt, trt_route=trt_route,
                            workspace_gb=workspace_gb, max_parity_clips=max_parity_clips)
    if not clips:
        print("  no --videos: the parity gates run on noise clips; pass real clips to gate on real data", file=sys.stderr)
    try:
        result = export_bundle(net, out, class_texts, clips, options, model_source(student, model, pretrained))
    except OSError as e:  # a full or read-only disk, a file-size limit: the staged bundle is already gone
        raise ConfigError(f"-o {out}: writing the bundle failed ({e.strerror or e}); nothing was replaced") from e
    except FrosterError as e:
        if isinstance(e, MissingCapability) and (out / "manifest.json").is_file():
            raise type(e)(f"{e} (the ONNX bundle in {out} is complete)") from e
        raise
    _print_export(result, readable(json_out))
    write_json(json_out, result.manifest)


def _print_export(result, out) -> None:
    m = result.manifest
    pre = m["preprocessing"]["input"]
    print(f"wrote {result.bundle}: frames {pre['dtype']} {pre['shape']} -> {m['model']['embed_dim']}-d, "
          f"{m['labels']['classes']} classes, model {m['model']['fingerprint'][:12]}", file=out)
    for g in m["parity"]["gates"] + [e["parity"] for e in m["engines"] if e.get("parity")]:
        top1 = f"  top-1 agree {g['top1_agreement']:.0%}" if "top1_agreement" in g else ""
        print(f"  {'pass' if g['passed'] else 'FAIL'}  {g['name']:38s} max|d| {g['max_abs']:.1e}  min cos {g['min_cosine']:.6f}{top1}",
              file=out)
    for e in m["engines"]:
        print(f"  engine {e.get('name', e.get('onnx_file'))}: {e.get('file', e.get('cache_dir'))}", file=out)
    print("  " + ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items()), file=out)


@command("labels")
def labels_cmd(
    classes: Classes,
    out: Annotated[Optional[Path], out_option("labels.npz to write; with --bundle the default is the bundle's own table.")] = None,
    student: Student = None,
    bundle: Annotated[Optional[Path], typer.Option(
        help="Encode with this bundle's ONNX text encoder (no torch needed); else with --student's torch one.")] = None,
    append: Annotated[bool, typer.Option("--append", help="Add the classes to the existing table instead of replacing it.")] = False,
) -> None:
    """Write a label table (labels.npz) for new class texts: change what is recognised without retraining.

    Each class is encoded with the 28-template prompt ensemble plus its bare text. Empty or
    duplicate classes and prompts longer than the text encoder's context are refused.

    Examples:
      froster-edge labels --bundle bundles/b16 --classes my_actions.txt
      froster-edge labels --bundle bundles/b16 --classes more.txt --append
      froster-edge labels --student students/froster-b16 --classes k400.json -o k400_labels.npz
    """
    from ..data.lists import read_classes

    if (student is None) == (bundle is None):
        raise ConfigError("give exactly one of --student and --bundle")
    if student is not None and out is None:
        raise ConfigError("-o is required with --student")
    class_texts = read_classes(classes)
    if bundle is not None:
        from ..bundle.manifest import LABELS_FILE
        from ..bundle.relabel import relabel_bundle

        table = relabel_bundle(bundle, class_texts, out, append)
        target = out or bundle / LABELS_FILE
    else:
        from ..bundle.label_builder import build_label_table
        from ..bundle.relabel import table_lock, write_labels
        from ..export.reference import torch_text_encoder
        from ..model.checkpoint import load_student, model_fingerprint

        net = load_student(student).eval()
        table = build_label_table(class_texts, torch_text_encoder(net), net.model_cfg, model_fingerprint(net),
                                  float(net.logit_scale.detach().exp()))
        with table_lock(out):
            table = write_labels(table, out, append)
        target = out
    print(f"wrote {target}: {len(table.names)} classes, {table.dim}-d, model {table.fingerprint[:12]}")

