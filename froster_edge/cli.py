"""The `froster-edge` command: a thin typer layer over the library.

Each command checks its arguments, calls the library, and prints. `main` is the one place that
turns the project's exceptions into a single line and an exit code (1 bad input, 2 a missing
capability); FROSTER_EDGE_DEBUG=1 keeps tracebacks. Heavy imports (torch, open_clip) happen
inside the commands so `--help` and `info` stay fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import FrosterError
from .calibration.options import CALIBRATION_DEFAULTS as _CAL
from .export.options import EXPORT_DEFAULTS as _EXPORT
from .runtime.options import RUN_DEFAULTS as _RUN

app = typer.Typer(
    name="froster-edge",
    help="Open-vocabulary video action recognition: FROSTER training, ONNX/TensorRT export, real-time runtime.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def info(as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False) -> None:
    """Versions of froster-edge and its stack, ONNX Runtime providers, TensorRT, GPUs seen.

    Example: froster-edge info --json
    """
    from .info import environment

    env = environment()
    if as_json:
        print(json.dumps(env, indent=2))
        return
    for key, value in env.items():
        if isinstance(value, list):
            value = ", ".join(value) if value else "none"
        print(f"{key:24s} {value}")


@app.command("import-froster")
def import_froster_cmd(
    ckpt: Annotated[Path, typer.Argument(help="The official FROSTER release checkpoint (.pyth/.pt).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Student directory to write.")],
    frames: Annotated[Optional[int], typer.Option(help="Frames per clip; default: the checkpoint's DATA.NUM_FRAMES, else 8.", min=1)] = None,
) -> None:
    """Convert an official FROSTER checkpoint into a student directory (safetensors + config).

    Reads the file with weights_only=True (no code is unpickled), infers the ViT from the tensor
    shapes, keeps fp32, and also writes the projectors and the frozen teacher when present.

    Example: froster-edge import-froster froster_k400.pyth -o students/froster-b16
    """
    from .model.froster_import import import_froster
    from .model.checkpoint import read_student_config

    out_dir = import_froster(ckpt, out, num_frames=frames)
    cfg = read_student_config(out_dir)
    s = cfg["student"]
    print(f"wrote {out_dir}: {s['model_name']} T={s['num_frames']} {s['image_size']}px, files: {', '.join(cfg['weights'])}")


@app.command()
def predict(
    video: Annotated[Path, typer.Argument(help="A video file.")],
    classes: Annotated[Path, typer.Option(help="Class names, one a line, or JSON {\"0\": \"Name: description\"}.")],
    student: Annotated[Optional[Path], typer.Option(help="A student directory (from train, average or import-froster).")] = None,
    model: Annotated[str, typer.Option(help="open_clip model name or model-config JSON, when no --student.")] = "ViT-B-16",
    pretrained: Annotated[str, typer.Option(help="open_clip tag (openai) or a local checkpoint file, when no --student.")] = "openai",
    frames: Annotated[Optional[int], typer.Option(help="Frames per clip; default: the student's, else 8.", min=1)] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1)] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Classify one video file zero-shot against class texts (one view, 29-prompt ensemble).

    Examples:
      froster-edge predict examples/clips/stgcn_clean_and_jerk.mp4 --classes examples/clips/classes.txt
      froster-edge predict clip.mp4 --classes k400.json --student students/froster-b16
      froster-edge predict clip.mp4 --classes names.txt --pretrained ~/weights/ViT-B-16.bin
    """
    from .predict import predict_video
    from .prompts import read_class_texts

    class_texts = read_class_texts(classes)
    net = _load_model(student, model, pretrained, frames)
    preds = predict_video(net, video, class_texts, top_k)
    if as_json:
        print(json.dumps({"video": str(video), "top": [p.__dict__ for p in preds]}))
        return
    print(f"{video.name}:")
    for p in preds:
        print(f"  {p.score:6.1%}  {p.label}")


@app.command("export")
def export_cmd(
    out: Annotated[Path, typer.Option("-o", "--out", help="Bundle directory to write (replaced only after every gate passes).")],
    classes: Annotated[Path, typer.Option(help="Class names, one a line, or JSON {\"0\": \"Name: description\"}: the bundle's label table.")],
    student: Annotated[Optional[Path], typer.Option(help="A student directory (from train, average or import-froster).")] = None,
    model: Annotated[str, typer.Option(help="open_clip model name or model-config JSON, when no --student.")] = "ViT-B-16",
    pretrained: Annotated[str, typer.Option(help="open_clip tag (openai) or a local checkpoint file, when no --student.")] = "openai",
    frames: Annotated[Optional[int], typer.Option(help="Frames per clip fixed in the video graph; default: the student's, else 8.", min=1)] = None,
    streams: Annotated[int, typer.Option(help="Clips per video-encoder call (cameras batched together), fixed in the graph.", min=1)] = _EXPORT.streams,
    videos: Annotated[Optional[list[Path]], typer.Option("--videos", help="Real clips for the parity gates: files or folders, repeatable. Without it the gates run on noise.")] = None,
    fp16: Annotated[bool, typer.Option("--fp16/--no-fp16", help="Also write video_encoder.fp16.onnx and gate it against fp32.")] = _EXPORT.fp16,
    layernorm_fp32: Annotated[bool, typer.Option("--layernorm-fp32", help="Keep LayerNorm in fp32 in fp16 models and engines.")] = _EXPORT.layernorm_fp32,
    trt: Annotated[bool, typer.Option("--trt", help="Also build TensorRT fp16 engines (needs a GPU and tensorrt; exit 2 without).")] = _EXPORT.trt,
    trt_route: Annotated[str, typer.Option(help="tensorrt (the TensorRT API) or ort-trt (ONNX Runtime's TensorRT provider).")] = _EXPORT.trt_route,
    workspace_gb: Annotated[float, typer.Option(help="TensorRT builder memory-pool limit, GiB.", min=0.25)] = _EXPORT.workspace_gb,
    max_parity_clips: Annotated[int, typer.Option(help="At most this many clips go through the parity gates.", min=1)] = _EXPORT.max_parity_clips,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Export a student to a deployable bundle: ONNX encoders, label table, manifest, parity gates.

    The video encoder takes uint8 RGB frames (streams, T, S, S, 3) with CLIP's normalisation in
    the graph; the text encoder takes tokens (N, 77). Parity gates (fp32 ONNX Runtime vs torch,
    fp16 vs fp32) run on --videos and fail the export when broken; the previous bundle stays.

    Examples:
      froster-edge export --student students/froster-b16 --classes k400.json --videos clips/ -o bundles/b16
      froster-edge export --pretrained ~/weights/ViT-B-16.bin --classes names.txt --videos clip.mp4 -o bundles/zs --trt
    """
    from .export.bundle import check_target, export_bundle
    from .export.options import ExportOptions
    from .bundle.parity import find_videos
    from .prompts import read_class_texts

    if trt_route not in ("tensorrt", "ort-trt"):
        raise typer.BadParameter(f"--trt-route must be tensorrt or ort-trt, not {trt_route!r}")
    check_target(out)
    class_texts = read_class_texts(classes)
    clips = find_videos(videos or [])
    net = _load_model(student, model, pretrained, frames)
    options = ExportOptions(streams=streams, fp16=fp16, layernorm_fp32=layernorm_fp32, trt=trt, trt_route=trt_route,
                            workspace_gb=workspace_gb, max_parity_clips=max_parity_clips)
    log = (lambda msg: None) if as_json else (lambda msg: print(f"  {msg}", file=sys.stderr))
    if not clips and not as_json:
        print("  no --videos: the parity gates run on noise clips; pass real clips to gate on real data", file=sys.stderr)
    try:
        result = export_bundle(net, out, class_texts, clips, options, _source(student, model, pretrained), log)
    except FrosterError as e:
        if e.exit_code == 2 and (out / "manifest.json").is_file():
            raise type(e)(f"{e} (the ONNX bundle in {out} is complete)") from e
        raise
    if as_json:
        print(json.dumps(result.manifest, indent=2))
        return
    _print_export(result)


def _print_export(result) -> None:
    m = result.manifest
    pre = m["preprocessing"]["input"]
    print(f"wrote {result.bundle}: frames {pre['dtype']} {pre['shape']} -> {m['model']['embed_dim']}-d, "
          f"{m['labels']['classes']} classes, model {m['model']['fingerprint'][:12]}")
    for g in m["parity"]["gates"] + [e["parity"] for e in m["engines"] if e.get("parity")]:
        top1 = f"  top-1 agree {g['top1_agreement']:.0%}" if "top1_agreement" in g else ""
        print(f"  {'pass' if g['passed'] else 'FAIL'}  {g['name']:38s} max|d| {g['max_abs']:.1e}  min cos {g['min_cosine']:.6f}{top1}")
    for e in m["engines"]:
        print(f"  engine {e.get('name', e.get('onnx_file'))}: {e.get('file', e.get('cache_dir'))}")
    print("  " + ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items()))


@app.command("labels")
def labels_cmd(
    classes: Annotated[Path, typer.Option(help="Class names, one a line, or JSON {\"0\": \"Name: description\"}.")],
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="labels.npz to write; with --bundle the default is the bundle's own table.")] = None,
    student: Annotated[Optional[Path], typer.Option(help="Encode with this student directory's torch text encoder.")] = None,
    bundle: Annotated[Optional[Path], typer.Option(help="Encode with this bundle's ONNX text encoder (no torch model needed).")] = None,
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
    from .prompts import read_class_texts

    if (student is None) == (bundle is None):
        raise typer.BadParameter("give exactly one of --student and --bundle")
    class_texts = read_class_texts(classes)
    if bundle is not None:
        from .bundle.relabel import relabel_bundle

        table = relabel_bundle(bundle, class_texts, out, append)
        target = out or bundle / "labels.npz"
    else:
        if out is None:
            raise typer.BadParameter("-o is required with --student")
        from .bundle.label_builder import build_label_table
        from .bundle.relabel import write_labels
        from .export.reference import torch_text_encoder
        from .model.checkpoint import load_student, model_fingerprint

        net = load_student(student).eval()
        table = build_label_table(class_texts, torch_text_encoder(net), net.model_cfg, model_fingerprint(net),
                                  float(net.logit_scale.detach().exp()))
        table = write_labels(table, out, append)
        target = out
    print(f"wrote {target}: {len(table.names)} classes, {table.dim}-d, model {table.fingerprint[:12]}")


@app.command("calibrate")
def calibrate_cmd(
    bundle: Annotated[Path, typer.Option(help="The bundle to calibrate (from froster-edge export).")],
    videos: Annotated[Optional[Path], typer.Option(help="INT8: calibration videos, a folder or a `path [label]` list.")] = None,
    held_out: Annotated[Optional[Path], typer.Option("--held-out", help="INT8: videos for the gate; default: a seeded quarter of --videos, kept out of calibration.")] = None,
    root: Annotated[Optional[Path], typer.Option(help="Folder that list paths are relative to (default: the list's folder).")] = None,
    confidence: Annotated[bool, typer.Option("--confidence", help="Fit the confidence temperature on --val.")] = False,
    val: Annotated[Optional[Path], typer.Option(help="Labelled `path label` list for --confidence (labels index the bundle's table).")] = None,
    trt: Annotated[bool, typer.Option("--trt", help="INT8 as a TensorRT int8+fp16 engine instead of ONNX Runtime QDQ (GPU + tensorrt).")] = _CAL.trt,
    method: Annotated[str, typer.Option(help="Range calibration: minmax, entropy or percentile (TensorRT: entropy or minmax).")] = _CAL.method,
    ops: Annotated[str, typer.Option(help="linear: quantize weight MatMuls only; all: every op ONNX Runtime can.")] = _CAL.ops,
    activation: Annotated[Optional[str], typer.Option(help="Activation type uint8 or int8; default uint8 on x86, int8 on ARM.")] = _CAL.activation,
    max_clips: Annotated[int, typer.Option(help="Calibration clips at most.", min=1)] = _CAL.max_clips,
    max_held_out: Annotated[int, typer.Option(help="Gate clips at most.", min=1)] = _CAL.max_held_out,
    seed: Annotated[int, typer.Option(help="Seed of the video order, clip starts and held-out split.")] = _CAL.seed,
    min_agreement: Annotated[float, typer.Option(help="Gate: INT8 top-1 must agree with float on this share of held-out clips.", min=0.0, max=1.0)] = _CAL.thresholds.min_top1_agreement,
    min_speedup: Annotated[float, typer.Option(help="Gate: INT8 must be this many times faster than float here.", min=0.0)] = _CAL.thresholds.min_speedup,
    force: Annotated[bool, typer.Option("--force", help="Keep the INT8 model even when the gate fails (the reasons are recorded).")] = False,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the report (gate figures, temperature, ECE) to this file.")] = None,
) -> None:
    """INT8 that pays and confidence that means something, for an exported bundle.

    INT8: quantizes the video encoder on clips of --videos (decoded and cropped as the runtime
    does), then measures on held-out clips the cosine and top-1 agreement with float and the
    speed-up on this machine. The INT8 model enters the bundle only when agreement and speed-up
    both pass (or --force). --confidence fits a temperature on --val so that the runtime's
    --threshold is a probability.

    Examples:
      froster-edge calibrate --bundle bundles/b32 --videos my_videos/
      froster-edge calibrate --bundle bundles/b32 --videos calib.txt --held-out test.txt --root /data
      froster-edge calibrate --bundle bundles/b32 --confidence --val val.txt --root /data
    """
    from dataclasses import replace as dc_replace

    from .calibration.options import GateThresholds

    if videos is None and not confidence:
        raise typer.BadParameter("give --videos for INT8, --confidence --val for the temperature, or both")
    if confidence and val is None:
        raise typer.BadParameter("--confidence needs --val LIST")
    log = lambda msg: print(f"  {msg}", file=sys.stderr)  # noqa: E731
    report: dict = {}
    if videos is not None:
        from .calibration.calibrate import calibrate_int8

        options = dc_replace(_CAL, trt=trt, method=method, ops=ops, activation=activation, max_clips=max_clips,
                             max_held_out=max_held_out, seed=seed, force=force,
                             thresholds=GateThresholds(min_agreement, min_speedup))
        report["int8"] = r = calibrate_int8(bundle, videos, held_out, root, options, log)
        g = r["gate"]
        verdict = "kept" if r["accepted"] else "rejected, the bundle is unchanged"
        print(f"int8 ({r['int8']['route']}): agreement {g['top1_agreement']:.1%}, min cosine {g['min_cosine']:.4f}, "
              f"speed-up {g['speedup']:.2f}x ({g['float_ms']:.1f} -> {g['int8_ms']:.1f} ms) on {g['held_out_clips']} held-out clips: {verdict}"
              + (f" ({'; '.join(r['reasons'])})" if r["reasons"] else ""))
    if confidence:
        from .calibration.calibrate import calibrate_confidence

        report["confidence"] = c = calibrate_confidence(bundle, val, root, seed, log=log)
        print(f"temperature {c['temperature']:.3f} on {c['clips']} clips: ECE {c['ece_before']:.3f} -> {c['ece_after']:.3f}, "
              f"NLL {c['nll_before']:.3f} -> {c['nll_after']:.3f}")
    if json_out is not None:
        from .io import atomic_write_json

        atomic_write_json(json_out, report)


def _load_model(student: Optional[Path], model: str, pretrained: str, frames: Optional[int]):
    """The student of a directory, or zero-shot open_clip CLIP with neighbour-frame attention."""
    from .config import StudentConfig
    from .model.checkpoint import load_student
    from .model.factory import create_student

    if student is not None:
        net = load_student(student)
        if frames is not None and frames != net.config.num_frames:
            from dataclasses import replace

            net.config = replace(net.config, num_frames=frames)  # attention works for any T; the export fixes it
        return net
    return create_student(StudentConfig(model_name=model, pretrained=pretrained, num_frames=frames or 8))


def _source(student: Optional[Path], model: str, pretrained: str) -> dict:
    if student is not None:
        return {"student": str(student)}
    return {"model": model, "pretrained": pretrained}


@app.command("train")
def train_cmd(
    config: Annotated[Path, typer.Argument(help="A training recipe (YAML), e.g. configs/tiny.yaml or configs/train/*.yaml.")],
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="KEY=VALUE override of a recipe option, repeatable: --set optim.lr=1e-5.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Run directory; default runs/<recipe name>.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its newest complete checkpoint.")] = False,
) -> None:
    """Distil a student from videos with FROSTER's recipe; writes checkpoints and OUT/student.

    Multi-GPU: the same command under torchrun, one process per GPU (train.batch_size is global).

    Paths in the YAML are relative to the YAML file; --set paths to the current directory.

    Examples:
      froster-edge train configs/tiny.yaml
      froster-edge train configs/train/b2n_hmdb51_vitb16.yaml --set data.root=/data/hmdb51 --set data.train_list=lists/base_train.txt
      torchrun --nproc_per_node 8 -m froster_edge.cli train configs/train/k400_vitb16.yaml --set data.root=/data/k400 --out runs/k400
      froster-edge train configs/train/k400_vitb16.yaml --out runs/k400 --resume
    """
    from .train.config import load_recipe
    from .train.loop import default_out_dir, train

    recipe = load_recipe(config, overrides or [])
    student_dir = train(recipe, out or default_out_dir(config), resume=resume)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"student: {student_dir}")


@app.command("average")
def average_cmd(
    ckpts: Annotated[list[Path], typer.Argument(help="Student directories to average, or one run directory with --epochs.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Student directory to write.")],
    epochs: Annotated[Optional[str], typer.Option(help="START..END (or START..) epochs of the run directory given, 1-based.")] = None,
) -> None:
    """Uniform weight average of student checkpoints (FROSTER averages epochs 2..last).

    Examples:
      froster-edge average runs/k400/checkpoints/epoch_002 runs/k400/checkpoints/epoch_003 -o students/avg
      froster-edge average runs/k400 --epochs 2..22 -o students/k400-avg
    """
    from .train.average import average_students, epoch_dirs, parse_epoch_range

    if epochs is not None:
        if len(ckpts) != 1:
            raise typer.BadParameter("--epochs takes exactly one run directory")
        dirs = epoch_dirs(ckpts[0], *parse_epoch_range(epochs))
    else:
        dirs = ckpts
    average_students(dirs, out)
    print(f"wrote {out}: the average of {len(dirs)} checkpoints")


@app.command("eval")
def eval_cmd(
    protocol: Annotated[Optional[Path], typer.Option(help="A protocol config (configs/eval/*.yaml): base-to-novel or cross-dataset splits.")] = None,
    data: Annotated[Optional[Path], typer.Option(help="A video list: 'path label' or 'path,label' lines (instead of --protocol).")] = None,
    classes: Annotated[Optional[Path], typer.Option(help="Class texts of --data: names, JSON {\"0\": \"Name: description\"}, or an id,name CSV.")] = None,
    labels: Annotated[Optional[Path], typer.Option(help="A plain label file to check the count and order of --classes against.")] = None,
    root: Annotated[Optional[Path], typer.Option(help="Folder the list's video paths are relative to (default: the list's folder, or the config's root).")] = None,
    path: Annotated[Optional[list[str]], typer.Option("--path", help="NAME=DIR: where a protocol config's {NAME} folder is (repeatable).")] = None,
    student: Annotated[Optional[str], typer.Option(help="A student directory; '{split}' in it becomes each split's name.")] = None,
    model: Annotated[str, typer.Option(help="open_clip model name or model-config JSON, when no --student.")] = "ViT-B-16",
    pretrained: Annotated[str, typer.Option(help="open_clip tag (openai) or a local checkpoint file, when no --student.")] = "openai",
    frames: Annotated[int, typer.Option(help="Frames per clip, when no --student.", min=1)] = 8,
    views: Annotated[Optional[int], typer.Option(help="Temporal views per video, logits summed (default 3).", min=1)] = None,
    batch_size: Annotated[int, typer.Option(help="Videos per forward pass (results do not depend on it).", min=1)] = 8,
    workers: Annotated[int, typer.Option(help="Decoding worker processes.", min=0)] = 2,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the JSON report here (per split, per class, per video, failures).")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar on stderr.")] = True,
) -> None:
    """Score a student on video lists: top-1/top-5, 3 views x 1 centre crop, the paper's protocols.

    Examples:
      froster-edge eval --student students/mine --data lists/val.txt --root /data/ucf101 --classes ucf101.json --json r.json
      froster-edge eval --protocol configs/eval/k400_to_ucf101.yaml --student students/froster-b16 \\
          --root /data/ucf101 --path froster=/data/froster_label_db
      froster-edge eval --protocol configs/eval/k400_b2n.yaml --student 'runs/k400_b2n_{split}/student' \\
          --root /data/k400 --path froster=/data/froster_label_db --path vifi=/data/vificlip_splits
    """
    from rich.console import Console

    from .evaluation.command import EvalRequest, run_eval

    req = EvalRequest(protocol=protocol, data=data, classes=classes, labels=labels, root=root, paths=path or [],
                      student=student, model=model, pretrained=pretrained, frames=frames, views=views,
                      batch_size=batch_size, workers=workers, device=device, json_out=json_out, progress=progress)
    report = run_eval(req, log=lambda msg: print(msg, file=sys.stderr))
    Console(width=120).print(report.table())
    failed = report.failed
    if failed:
        print(f"{len(failed)} video(s) could not be scored:", file=sys.stderr)
        for line in failed[:20]:
            print(f"  {line}", file=sys.stderr)
        if len(failed) > 20:
            print(f"  ... and {len(failed) - 20} more" + (f", all in {json_out}" if json_out else ""), file=sys.stderr)
    if json_out:
        print(f"wrote {json_out}")
    report.require_scored()


@app.command("run")
def run_cmd(
    bundle: Annotated[Optional[Path], typer.Option(help="The bundle to run (from froster-edge export); or `bundle:` in --config.")] = None,
    source: Annotated[Optional[list[str]], typer.Option("--source", help="Camera index, video file, or rtsp:// / http:// URL; repeat for several streams.")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="Site file (YAML): named cameras with their own hop, threshold, labels; events, clips, metrics. The run flags below are its defaults. SIGHUP reloads its cameras.")] = None,
    labels: Annotated[Optional[Path], typer.Option(help="Label table (labels.npz) of the bundle's model; default: the bundle's. Watched: a new table is swapped in between decisions.")] = None,
    backend: Annotated[str, typer.Option(help="auto, trt-int8, trt, ort-trt, ort-cuda, ort-cpu-int8, ort-cpu or torch (auto: the fastest available; the int8 ones where calibrate kept an INT8 model).")] = _RUN.backend,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="One JSON object per decision on stdout instead of readable lines.")] = False,
    hop: Annotated[int, typer.Option(help="Sampled frames between decisions.", min=1)] = _RUN.sampling.hop,
    sample_fps: Annotated[Optional[float], typer.Option("--sample-fps", help="Sampled frames per second of video; default the training's 30/16 = 1.875.", min=0.001)] = _RUN.sampling.fps,
    subsample: Annotated[Optional[int], typer.Option(help="Take every Nth source frame instead of --sample-fps.", min=1)] = _RUN.sampling.subsample,
    threshold: Annotated[float, typer.Option(help="Below this smoothed top-1 probability the outcome is 'unknown'.", min=0.0, max=1.0)] = _RUN.classifier.threshold,
    smoothing: Annotated[str, typer.Option(help="ema, mean (of the last --window decisions) or none.")] = _RUN.classifier.smoothing,
    ema_alpha: Annotated[float, typer.Option(help="EMA weight of the newest decision.", min=0.0, max=1.0)] = _RUN.classifier.ema_alpha,
    window: Annotated[int, typer.Option(help="Decisions averaged by --smoothing mean.", min=1)] = _RUN.classifier.window,
    top_k: Annotated[int, typer.Option("--top-k", help="Classes reported per decision.", min=1)] = _RUN.classifier.top_k,
    realtime: Annotated[bool, typer.Option("--realtime", help="Play files at their own pace, as a camera (frames may drop).")] = _RUN.capture.realtime,
    loop: Annotated[bool, typer.Option("--loop", help="Start files again at their end.")] = _RUN.capture.loop,
    record: Annotated[Optional[Path], typer.Option(help="Write the annotated video here (.mp4/.avi/.mkv; FILE_<i> per stream with several).")] = None,
    show: Annotated[bool, typer.Option("--show", help="Overlay window per stream (needs a display; exit 2 without). q quits.")] = False,
    stats_json: Annotated[Optional[Path], typer.Option("--stats-json", help="Write the run's stats (latency percentiles, drops, decisions/s) here at the end.")] = None,
    max_decisions: Annotated[Optional[int], typer.Option(help="Stop after this many decisions.", min=1)] = _RUN.max_decisions,
    events: Annotated[Optional[Path], typer.Option("--events", help="Append action events (start/end, hysteresis from the site file or its defaults) to this JSONL file.")] = None,
    clips: Annotated[Optional[Path], typer.Option("--clips", help="Write an mp4 and a peak JPEG per action event into this folder (disk budget, pre-roll: site file `clips:`).")] = None,
    metrics: Annotated[Optional[str], typer.Option("--metrics", help="Serve Prometheus metrics on HOST:PORT (127.0.0.1:9108; another host needs a token, see README).")] = None,
    metrics_insecure: Annotated[bool, typer.Option("--metrics-insecure", help="Serve --metrics on a non-loopback address without a token.")] = False,
) -> None:
    """Classify live video against a label table: cameras, streams, files; several at once.

    Each source has a reader thread (newest frame only, reconnects with backoff); sampled frames
    are resized once into a ring buffer of T; every --hop sampled frames the streams' clips go
    through one encoder call; scores are smoothed and printed. Ctrl-C stops and prints the stats.

    Examples:
      froster-edge run --bundle bundles/b16 --source examples/clips/stgcn_clean_and_jerk.mp4
      froster-edge run --bundle bundles/b16 --source 0 --show --threshold 0.3
      froster-edge run --bundle bundles/b16 --source rtsp://cam1/stream --source rtsp://cam2/stream --jsonl
      froster-edge run --bundle bundles/b16 --source clip.mp4 --realtime --record out.mp4 --stats-json stats.json
      froster-edge run --config examples/site.yaml --events events.jsonl --metrics 127.0.0.1:9108
    """
    from dataclasses import replace as dc_replace

    from .runtime.command import RunRequest, run
    from .runtime.options import ClassifierOptions, SamplingOptions
    from .runtime.site import site_from_flags

    options = dc_replace(
        _RUN, sources=list(source or []), labels=labels, backend=backend, max_decisions=max_decisions,
        sampling=SamplingOptions(fps=sample_fps, subsample=subsample, hop=hop),
        capture=dc_replace(_RUN.capture, realtime=realtime, loop=loop),
        classifier=ClassifierOptions(top_k=top_k, threshold=threshold, smoothing=smoothing, ema_alpha=ema_alpha, window=window),
    )
    site = site_from_flags(options, bundle, config, events=events, clips=clips, metrics=metrics,
                           metrics_insecure=metrics_insecure)
    run(RunRequest(site.bundle, site.run, jsonl=jsonl, show=show, record=record, stats_json=stats_json, site=site))


@app.command("bench")
def bench_cmd(
    bundle: Annotated[Path, typer.Option(help="The bundle to measure.")],
    backend: Annotated[Optional[list[str]], typer.Option("--backend", help="A backend to measure (repeatable); default: every available one of trt-int8, trt, ort-trt, ort-cuda, ort-cpu-int8, ort-cpu.")] = None,
    clip: Annotated[Optional[Path], typer.Option(help="Video for the pipeline runs; default examples/clips/stgcn_clean_and_jerk.mp4.")] = None,
    hop: Annotated[int, typer.Option(help="Sampled frames between decisions in the pipeline runs.", min=1)] = _RUN.sampling.hop,
    reps: Annotated[int, typer.Option(help="Interleaved pipeline / backend-alone pairs per backend.", min=1)] = 3,
    realtime_check: Annotated[bool, typer.Option("--realtime-check/--no-realtime-check", help="Also play the clip at its own pace for capture-to-decision latency.")] = True,
    realtime_decisions: Annotated[int, typer.Option(help="Decisions of the real-time run.", min=1)] = 8,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the results here as JSON.")] = None,
) -> None:
    """Encoder latency and throughput per backend, and the whole pipeline's decisions/s, in one run.

    Ratios measured in the same run hold on a noisy machine: the pipeline against the backend
    alone on the same clips (runtime overhead), capture-to-decision against encoder latency.

    Examples:
      froster-edge bench --bundle bundles/b32
      froster-edge bench --bundle bundles/b16 --backend trt --backend ort-cuda --json bench.json
    """
    from .runtime.bench import BenchOptions, bench, table

    default_clip = Path(__file__).resolve().parents[1] / "examples" / "clips" / "stgcn_clean_and_jerk.mp4"
    if clip is None and not default_clip.is_file():
        raise typer.BadParameter("give --clip VIDEO (the repository's example clip is not here)")
    options = BenchOptions(clip=clip or default_clip, backends=list(backend or []), reps=reps, hop=hop,
                           realtime_check=realtime_check, realtime_decisions=realtime_decisions)
    result = bench(bundle, options, log=lambda msg: print(f"  {msg}", file=sys.stderr))
    print(table(result))
    if json_out is not None:
        from .io import atomic_write_json

        atomic_write_json(json_out, result)


def main() -> None:
    """Console entry point: one line and an exit code for every expected failure."""
    debug = os.environ.get("FROSTER_EDGE_DEBUG") == "1"
    try:
        app()  # typer reports usage errors itself (exit 2) and raises everything else here
    except FrosterError as e:
        if debug:
            raise
        print(f"froster-edge: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("froster-edge: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # a bug: say so in one line unless debugging
        if debug:
            raise
        print(f"froster-edge: internal error: {type(e).__name__}: {e} (set FROSTER_EDGE_DEBUG=1 for the traceback)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
