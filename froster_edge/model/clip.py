"""Building open_clip CLIP models and loading their pretrained weights, in full precision.

The architecture comes from an open_clip name or a model-config JSON; weights from an open_clip tag
(downloaded and cached by open_clip), a local checkpoint file, or nowhere (random init, for tests).
The model config is kept as plain data so a saved student rebuilds without the open_clip registry.

See docs/method.md.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from open_clip.model import CLIP

from ..errors import ConfigError, PretrainedWeightsError, shorten
from ..io import read_json
from ..logs import quiet_logger
from ..reachability import address_of, hub_address, reachable

log = logging.getLogger(__name__)


def resolve_model_config(model_name: str, pretrained: str | None = None, image_size: int | None = None,
                         activation: str = "auto") -> dict[str, Any]:
    """The open_clip model config for `model_name` (a registry name or a JSON file path).

    `quick_gelu` is settled by `resolve_activation` (the weights' source decides, a conflict is
    refused); `image_size` overrides the config's, and pretrained positional embeddings are
    resized to it on load.
    """
    path = Path(model_name)
    if model_name.endswith(".json"):
        cfg = read_json(path, "model config file")
        if isinstance(cfg, dict) and isinstance(cfg.get("model_cfg"), dict):
            cfg = cfg["model_cfg"]
    else:
        cfg = open_clip.get_model_config(model_name)
        if cfg is None:
            raise ConfigError(
                f"unknown open_clip model {model_name!r}; try one of ViT-B-32, ViT-B-16, ViT-L-14 "
                "or a path to a model-config JSON"
            )
    cfg = copy.deepcopy(cfg)
    _check_supported(cfg, model_name)
    cfg["quick_gelu"] = resolve_activation(cfg, model_name, pretrained, activation) == "quick_gelu"
    if image_size is not None:
        cfg["vision_cfg"]["image_size"] = image_size
    check_model_size(cfg, model_name)
    return cfg


MAX_PARAMS = 5_000_000_000  # ViT-bigG-14, the largest open_clip CLIP, has about 2.5e9
MAX_TOKENS = 16_384  # image patches per frame (ViT-L/14 at 336 px has 576)


def check_model_size(cfg: dict[str, Any], name: str) -> None:
    """ConfigError naming the field unless the sizes are positive integers and the model stays under
    MAX_PARAMS parameters and MAX_TOKENS patches a frame: absurd sizes are refused before anything
    is allocated, instead of minutes of building and a terabyte allocation."""
    vision, text = cfg["vision_cfg"], cfg["text_cfg"]

    def size(section: dict, where: str, key: str, default: int | None = None) -> int:
        value = section.get(key, default)
        if not (isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 1 << 24):
            raise ConfigError(f"{name}: {where}{key} must be a positive integer, not {shorten(repr(value))}")
        return value

    embed = size(cfg, "", "embed_dim")
    # defaults: open_clip's CLIPVisionCfg / CLIPTextCfg
    vw, vl, patch, image = (size(vision, "vision_cfg.", k, d) for k, d in
                            (("width", 768), ("layers", 12), ("patch_size", 16), ("image_size", 224)))
    tw, tl, ctx, vocab = (size(text, "text_cfg.", k, d) for k, d in
                          (("width", 512), ("layers", 12), ("context_length", 77), ("vocab_size", 49408)))
    tokens = (image // patch) ** 2
    if patch > image or tokens > MAX_TOKENS:
        raise ConfigError(f"{name}: image_size {image} with patch_size {patch} gives {tokens} patches a frame "
                          f"(1 to {MAX_TOKENS})")
    params = 12 * (vl * vw * vw + tl * tw * tw) + (tokens + 3 * patch * patch) * vw + (vocab + ctx) * tw + embed * (vw + tw)
    if params > MAX_PARAMS:
        raise ConfigError(f"{name}: these sizes make a model of about {params:.2g} parameters (at most {MAX_PARAMS:.0e})")


ACTIVATIONS = ("quick_gelu", "gelu")
# Entries of OpenAI's own CLIP state dicts (its TorchScript releases) that are not parameters.
OPENAI_EXTRAS = ("input_resolution", "context_length", "vocab_size")


def activation_of(model_cfg: dict[str, Any]) -> str:
    """"quick_gelu" or "gelu": what `build_clip` builds from this model config."""
    return "quick_gelu" if model_cfg.get("quick_gelu") else "gelu"


def resolve_activation(cfg: dict[str, Any], model_name: str, pretrained: str | None, requested: str = "auto") -> str:
    """The MLP activation the weights were trained with, from every source that says one.

    Sources: `requested` (student.activation, unless "auto"), the model config's own `quick_gelu`
    key (a `*-quickgelu` name, a JSON file), the open_clip tag's config, and for a local file
    what `detect_file_activation` finds. They must agree (a CLIP built with the wrong activation
    is silently another network). With none: open_clip's default GELU for a model without
    weights or a tag that says nothing, but a local weights file that nothing speaks for is refused
    (OpenAI's weights under GELU are another network, and nothing would say so).
    """
    if requested not in ("auto", *ACTIVATIONS):
        raise ConfigError(f"student.activation must be auto, quick_gelu or gelu, got {requested!r}")
    claims: list[tuple[str, str]] = []
    if requested != "auto":
        claims.append((requested, "student.activation"))
    if "quick_gelu" in cfg:
        claims.append((activation_of(cfg), f"the model config of {model_name}"))
    hint: tuple[str, str] | None = None
    if pretrained and os.path.isfile(pretrained):
        found = detect_file_activation(pretrained)
        if found is not None and found[2]:
            claims.append(found[:2])
        elif found is not None:
            hint = found[:2]
    elif pretrained:
        tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
        if tag_cfg:
            claims.append((activation_of(tag_cfg), f"open_clip's config of {model_name}/{pretrained}"))
    names = {a for a, _ in claims}
    if len(names) > 1:
        said = "; ".join(f"{why} says {a}" for a, why in claims)
        raise ConfigError(f"conflicting activations for {model_name} ({said}): a CLIP built with the wrong one is "
                          "another network; fix the model name (e.g. ViT-B-16-quickgelu) or student.activation")
    if claims:
        return claims[0][0]
    if hint is not None:
        return hint[0]
    if pretrained and os.path.isfile(pretrained):
        raise ConfigError(f"nothing says which activation {pretrained} was trained with (no model config beside it, "
                          "no hint in its name): pass --activation quick_gelu (OpenAI CLIP) or --activation gelu "
                          "(student.activation in a recipe), or put its open_clip_config.json beside it")
    return "gelu"


def detect_file_activation(path: str | Path) -> tuple[str, str, bool] | None:
    """(activation, why, strong) for a local weights file when anything about it says which, else None.

    Evidence, strongest first: an open_clip/froster-edge config beside the file (HF hub folders
    hold open_clip_config.json, student folders config.json) that states it; OpenAI's own layout
    (a TorchScript archive, or the non-parameter entries input_resolution / context_length /
    vocab_size that its releases carry); a path naming it ("quickgelu", or "openai" as in
    open_clip's hub folders of the OpenAI weights). A path is weak evidence: it decides only
    when nothing else says, and never makes a conflict.
    """
    path = Path(path)
    for side in ("open_clip_config.json", "config.json"):
        cfg_path = path.parent / side
        if cfg_path.is_file():
            try:
                data = json.loads(cfg_path.read_text())
            except (json.JSONDecodeError, OSError, UnicodeDecodeError):
                continue
            model_cfg = data.get("model_cfg") if isinstance(data, dict) else None
            if isinstance(model_cfg, dict) and "quick_gelu" in model_cfg:
                return activation_of(model_cfg), f"{cfg_path.name} beside {path.name}", True
    if _is_torchscript(path):
        return "quick_gelu", f"{path.name} is a TorchScript archive (OpenAI's CLIP release format)", True
    if any(k in OPENAI_EXTRAS for k in _state_keys(path)):
        return "quick_gelu", f"{path.name} has OpenAI CLIP's layout ({'/'.join(OPENAI_EXTRAS)} entries)", True
    lowered = path.as_posix().lower()
    for word in ("quickgelu", "quick_gelu", "openai"):
        if word in lowered:
            return "quick_gelu", f"the path {path} says {word!r}", False
    return None


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _state_keys(path: Path) -> list[str]:
    """Top-level keys of a weights file, read without loading its tensors where possible."""
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                return list(f.keys())
        state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)  # tensors not read
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        return [str(k).removeprefix("module.") for k in state] if isinstance(state, dict) else []
    except Exception:  # unreadable here: load_pretrained names the problem
        return []


def _check_supported(cfg: dict[str, Any], name: str) -> None:
    if not isinstance(cfg, dict) or not all(isinstance(cfg.get(k), dict) for k in ("vision_cfg", "text_cfg")):
        raise ConfigError(f"{name}: a model config is a mapping with embed_dim, vision_cfg and text_cfg")
    vision, text = cfg["vision_cfg"], cfg["text_cfg"]
    if "embed_dim" not in cfg or not vision or not text:
        raise ConfigError(f"{name}: a model config needs embed_dim, vision_cfg and text_cfg")
    if "timm_model_name" in vision or isinstance(vision.get("layers"), (list, tuple)):
        raise ConfigError(f"{name}: froster-edge needs an open_clip ViT image tower (not timm or ResNet)")
    if "hf_model_name" in text or cfg.get("custom_text"):
        raise ConfigError(f"{name}: froster-edge needs open_clip's built-in CLIP text tower")
    for key in ("qk_norm", "scaled_cosine_attn", "scale_heads", "scale_attn", "scale_fc", "attentional_pool"):
        if vision.get(key):
            raise ConfigError(f"{name}: vision_cfg.{key} is not supported by neighbour-frame attention")
    if text.get("pool_type", "argmax") != "argmax" or text.get("no_causal_mask") or text.get("vocab_size", 49408) >= 2**24:
        raise ConfigError(f"{name}: froster-edge needs CLIP's causal text tower pooled at the end-of-text token")


def build_clip(model_cfg: dict[str, Any]) -> CLIP:
    """A randomly initialised fp32 CLIP from an open_clip model config."""
    cfg = copy.deepcopy(model_cfg)
    try:
        model = CLIP(
            embed_dim=cfg.pop("embed_dim"),
            vision_cfg=cfg.pop("vision_cfg"),
            text_cfg=cfg.pop("text_cfg"),
            quick_gelu=cfg.pop("quick_gelu", False),
            **{k: v for k, v in cfg.items() if k in ("init_logit_scale", "init_logit_bias", "nonscalar_logit_scale")},
        )
    except (TypeError, ValueError, AssertionError) as e:
        raise ConfigError(f"cannot build CLIP from this model config: {e}") from e
    return model.float()


def load_pretrained(model: CLIP, model_name: str, pretrained: str) -> None:
    """Load `pretrained` (open_clip tag or local file) into `model`, strictly, keeping fp32."""
    if os.path.isfile(pretrained):
        path = pretrained
    else:
        tag_cfg = _tag_cfg(model_name, pretrained)
        path = fetch_pretrained(tag_cfg, model_name, pretrained)
        if not path:
            raise PretrainedWeightsError(f"open_clip has no download for {model_name}/{pretrained}")
    try:
        state = open_clip.factory.load_state_dict(path, weights_only=True)
        for key in OPENAI_EXTRAS:  # OpenAI's releases carry them; they are not parameters
            state.pop(key, None)
        _load_state(model, state)
    except (RuntimeError, KeyError, ValueError, OSError, EOFError, pickle.UnpicklingError, StopIteration) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PretrainedWeightsError(f"cannot load {path} into {model_name}: {first}") from e
    model.float()


def _tag_cfg(model_name: str, pretrained: str) -> dict[str, Any]:
    """open_clip's download entry of a tag; a path that is no file, or an unknown tag, is an error."""
    tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not tag_cfg:
        if os.sep in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors")):
            raise PretrainedWeightsError(f"pretrained checkpoint file not found: {pretrained}")
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise PretrainedWeightsError(
            f"{pretrained!r} is neither a local file nor an open_clip tag of {model_name}"
            + (f" (tags: {', '.join(tags)})" if tags else "")
        )
    return tag_cfg


def pretrained_unavailable(model_name: str, pretrained: str) -> str | None:
    """None when `load_pretrained` can get these weights now (a local file, open_clip's cache, or a
    download host that answers); otherwise why not, in one line. Builds no model and makes no
    download, so it answers at once where a failing download retries for a long time."""
    if os.path.isfile(pretrained):
        return None
    tag_cfg = _tag_cfg(model_name, pretrained)
    if _cached(tag_cfg):
        return None
    address = _download_address(tag_cfg)
    if address is None or not _reachable(address):
        where = f"{address[0]}:{address[1]}" if address else "no download address"
        return f"CLIP weights {model_name}/{pretrained} are unreachable ({where} does not answer) and not in the cache"
    return None


def _load_state(model: CLIP, state: dict[str, torch.Tensor]) -> None:
    """open_clip's load_checkpoint from a state dict: format conversion, resized position embeddings, strict."""
    from open_clip.factory import convert_state_dict, resize_pos_embed, resize_text_pos_embed

    state = convert_state_dict(model, state)
    if "logit_scale" in state and model.logit_scale.ndim != state["logit_scale"].ndim:
        state["logit_scale"] = state["logit_scale"].reshape(model.logit_scale.shape)
    resize_pos_embed(state, model)
    resize_text_pos_embed(state, model)
    model.load_state_dict(state, strict=True)


def fetch_pretrained(tag_cfg: dict[str, Any], model_name: str, tag: str) -> str:
    """Path of a tag's weights: open_clip's cache first (no network), then a download.

    Without network the hub client retries for a long time; a quick reachability check turns
    that into one immediate, clear error.
    """
    cached = _cached(tag_cfg)
    if cached:
        return cached
    address = _download_address(tag_cfg)
    if address is None or not _reachable(address):
        raise PretrainedWeightsError(
            f"cannot get open_clip weights {model_name}/{tag}: no network and not in the cache; "
            "download them once elsewhere, or pass a local checkpoint file as --pretrained PATH"
        )
    try:
        with quiet_logger("huggingface_hub"):
            return open_clip.download_pretrained(tag_cfg)
    except Exception as e:  # hub errors come as many types; all mean "could not download"
        raise PretrainedWeightsError(
            f"cannot download open_clip weights {model_name}/{tag} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
            "pass a local checkpoint file as --pretrained PATH"
        ) from e


def _cached(tag_cfg: dict[str, Any]) -> str | None:
    try:
        with _hub_offline():
            return open_clip.download_pretrained(tag_cfg) or None
    except Exception:  # not cached: any hub/url error type
        return None


def _download_address(tag_cfg: dict[str, Any]) -> tuple[str, int] | None:
    """(host, port) a tag downloads from: the Hugging Face endpoint for hub weights, else its URL."""
    return hub_address() if tag_cfg.get("hf_hub") else address_of(tag_cfg.get("url", ""))


@contextlib.contextmanager
def _hub_offline():
    """huggingface_hub in offline mode: cached files only, no request and no retry."""
    try:
        from huggingface_hub import constants
    except ImportError:
        yield
        return
    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved


def _reachable(address: tuple[str, int], timeout: float = 3.0) -> bool:
    return reachable(address, timeout)  # a module-level name the tests replace


def create_clip(model_name: str, pretrained: str | None, image_size: int | None = None,
                activation: str = "auto") -> tuple[CLIP, dict[str, Any]]:
    """Build CLIP from a name or config file and load its weights; returns (model, model_cfg)."""
    cfg = resolve_model_config(model_name, pretrained, image_size, activation)
    model = build_clip(cfg)
    if pretrained:
        load_pretrained(model, model_name, pretrained)
    return model, cfg


@functools.lru_cache(maxsize=4)
def get_tokenizer(context_length: int = 77) -> open_clip.tokenizer.SimpleTokenizer:
    """open_clip's CLIP BPE tokenizer, built once (loading the vocabulary is not free)."""
    return open_clip.tokenizer.SimpleTokenizer(context_length=context_length)


def tokenize(prompts: list[str], model_cfg: dict[str, Any]) -> torch.Tensor:
    """Token ids [N, context_length] (int64) for `prompts`."""
    return get_tokenizer(model_cfg["text_cfg"].get("context_length", 77))(prompts)


def encode_text(clip: CLIP, tokens: torch.Tensor, normalize: bool = True, trim: bool = True) -> torch.Tensor:
    """CLIP's text features, as open_clip's `CLIP.encode_text`, computed only as far as needed.

    The text tower is causal and pools at the end-of-text token (the highest id), so positions
    after the longest prompt's end-of-text cannot change the result: `trim` drops them (prompts
    are mostly far shorter than the context). `trim=False` keeps the static shape an
    ONNX export needs; the pooling index is an ArgMax over float ids there too (exact below 2^24),
    which TensorRT accepts where it refuses an int64 ArgMax. (N, L) -> (N, D)
    """
    eot = tokens.float().argmax(dim=-1)  # (N,)
    if trim:
        length = int(eot.max()) + 1
        tokens = tokens[:, :length]
    length = tokens.shape[1]
    cast = clip.transformer.get_cast_dtype()
    x = clip.token_embedding(tokens).to(cast) + clip.positional_embedding[:length].to(cast)  # (N, L, W)
    mask = clip.attn_mask[:length, :length] if clip.attn_mask is not None else None
    x = clip.ln_final(clip.transformer(x, attn_mask=mask))
    x = x[torch.arange(x.shape[0], device=x.device), eot]  # (N, W)
    x = clip.text_projection(x) if isinstance(clip.text_projection, torch.nn.Linear) else x @ clip.text_projection
    return F.normalize(x, dim=-1) if normalize else x
