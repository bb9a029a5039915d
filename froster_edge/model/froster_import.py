"""Import the official FROSTER release checkpoint into a froster-edge student directory.

The release is a PySlowFast checkpoint: the student CLIP under `model.`, the teacher under
`raw_model.`, the projectors under `projector_v.` / `projector_t.`. It is read with
`weights_only=True` (tensors and plain containers only); the architecture is inferred from tensor
shapes, so ViT-B/32, B/16 and L/14 import; weights stay fp32.

See docs/method.md.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch
import yaml

from ..config import StudentConfig
from ..errors import CheckpointError
from ..io import yaml_loader
from .checkpoint import load_state_strict, save_student
from .clip import OPENAI_EXTRAS, build_clip
from .distill import ResidualProjector
from .student import VideoStudent

# Names of the architectures open_clip ships, by (vision width, layers, patch, image, embed dim).
_KNOWN = {
    (768, 12, 32, 224, 512): "ViT-B-32",
    (768, 12, 16, 224, 512): "ViT-B-16",
    (1024, 24, 14, 224, 768): "ViT-L-14",
    (1024, 24, 14, 336, 768): "ViT-L-14-336",
}


def infer_model_cfg(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """An open_clip model config from an OpenAI-layout CLIP state dict (shapes only)."""
    try:
        width = state["visual.conv1.weight"].shape[0]
        patch = state["visual.conv1.weight"].shape[-1]
        grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        text_width = state["ln_final.weight"].shape[0]
        cfg = {
            "embed_dim": state["text_projection"].shape[1],
            "quick_gelu": True,  # OpenAI CLIP, and so FROSTER, uses QuickGELU
            "vision_cfg": {
                "image_size": patch * grid,
                "layers": _count_blocks(state, "visual.transformer.resblocks."),
                "width": width,
                "patch_size": patch,
                "head_width": 64,
            },
            "text_cfg": {
                "context_length": state["positional_embedding"].shape[0],
                "vocab_size": state["token_embedding.weight"].shape[0],
                "width": text_width,
                "heads": text_width // 64,
                "layers": _count_blocks(state, "transformer.resblocks."),
            },
        }
    except KeyError as e:
        raise CheckpointError(f"not an OpenAI-layout ViT CLIP: key {e.args[0]!r} is missing") from e
    if "visual.proj" not in state:
        raise CheckpointError("not a ViT CLIP (no visual.proj): ResNet CLIP students are not supported")
    return cfg


def _count_blocks(state: dict[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    if not indices:
        raise CheckpointError(f"no transformer blocks under {prefix!r}")
    return max(indices) + 1


def known_name(cfg: dict[str, Any]) -> str | None:
    v = cfg["vision_cfg"]
    return _KNOWN.get((v["width"], v["layers"], v["patch_size"], v["image_size"], cfg["embed_dim"]))


def read_release(path: str | Path) -> dict[str, Any]:
    """torch.load the release file safely, with one-line errors for the usual failures."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        detail = next((ln.strip() for ln in str(e).splitlines() if "Unsupported" in ln), "")
        found = re.search(r"Unsupported global: GLOBAL (\S+)", detail)
        if found:
            raise CheckpointError(
                f"{path} holds objects other than tensors and plain data (it references {found.group(1)}); "
                "refusing to unpickle them"
            ) from e
        raise CheckpointError(f"{path} is not a readable torch checkpoint ({detail or 'unpickling failed'})") from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} is not a readable torch checkpoint: {first}") from e
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model_state"), dict):
        raise CheckpointError(f"{path} is not a FROSTER/PySlowFast checkpoint: no 'model_state' dict")
    return ckpt


def split_release_state(model_state: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """Group the release's keys into student / teacher / projector_v / projector_t."""
    groups: dict[str, dict[str, torch.Tensor]] = {"model": {}, "raw_model": {}, "projector_v": {}, "projector_t": {}}
    unexpected = []
    for key, value in model_state.items():
        key = key.removeprefix("module.")
        head, _, rest = key.partition(".")
        if head in groups and rest:
            if rest not in OPENAI_EXTRAS:
                groups[head][rest] = value
        else:
            unexpected.append(key)
    if unexpected:
        raise CheckpointError(f"unexpected keys in the checkpoint: {', '.join(sorted(unexpected)[:5])}"
                              + (f" (+{len(unexpected) - 5} more)" if len(unexpected) > 5 else ""))
    if not groups["model"]:
        raise CheckpointError("the checkpoint has no student weights under 'model.'")
    return groups


def _projector_state(seq_state: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """nn.Sequential(Linear, GELU, Linear) keys `0.weight`, `2.weight` -> our `fc1`, `fc2`."""
    expected = {"0.weight", "2.weight"}
    if set(seq_state) != expected:
        raise CheckpointError(
            f"{name} has keys {sorted(seq_state)}; expected {sorted(expected)} (Linear-GELU-Linear, bias-free)"
        )
    return {"fc1.weight": seq_state["0.weight"].float(), "fc2.weight": seq_state["2.weight"].float()}


def _fp32(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _num_frames(cfg: Any, default: int = 8) -> int:
    """DATA.NUM_FRAMES from the checkpoint's PySlowFast config (a YAML string)."""
    if not isinstance(cfg, str):
        return default
    try:
        data = yaml.load(cfg, Loader=yaml_loader())
    except (yaml.YAMLError, RecursionError):
        return default
    value = (data or {}).get("DATA", {}).get("NUM_FRAMES") if isinstance(data, dict) else None
    return int(value) if isinstance(value, int) and value > 0 else default


def import_froster(ckpt_path: str | Path, out_dir: str | Path, num_frames: int | None = None) -> Path:
    """Convert the release checkpoint at `ckpt_path` into a student directory at `out_dir`."""
    ckpt = read_release(ckpt_path)
    groups = split_release_state(ckpt["model_state"])
    student_state = _fp32(groups["model"])
    model_cfg = infer_model_cfg(student_state)
    clip = build_clip(model_cfg)
    load_state_strict(clip, student_state, f"{ckpt_path} (model.)")

    config = StudentConfig(
        model_name=known_name(model_cfg) or "custom",
        pretrained=None,
        num_frames=num_frames or _num_frames(ckpt.get("cfg")),
        image_size=model_cfg["vision_cfg"]["image_size"],
        temporal_attention="neighbors",
        activation="quick_gelu",  # OpenAI CLIP's, as infer_model_cfg builds
    )
    student = VideoStudent(clip, config, model_cfg)

    projectors = {}
    for name in ("projector_v", "projector_t"):
        if groups[name]:
            proj = ResidualProjector(model_cfg["embed_dim"])
            load_state_strict(proj, _projector_state(groups[name], name), f"{ckpt_path} ({name}.)")
            projectors[name] = proj

    teacher_state = None
    if groups["raw_model"]:
        teacher_state = _fp32(groups["raw_model"])
        load_state_strict(build_clip(model_cfg), teacher_state, f"{ckpt_path} (raw_model.)")

    extra = {"imported_from": Path(ckpt_path).name, "epoch": ckpt.get("epoch")}
    return save_student(student, out_dir, projectors=projectors or None, teacher_state=teacher_state, extra=extra)
