"""The same pixels as FROSTER's transforms, checked against a re-statement of them in torch.

`reference_resize_crop` re-states slowfast/datasets/transform.py's arithmetic as the reference
runs it on a clip: uint8 -> float / 255, normalised, then the short side scaled by bilinear
interpolation (no antialias) with the long side floored, then a crop (the test view's at
ceil((side - S) / 2)). froster-edge resizes uint8 frames and normalises after (the exported
model takes uint8), so the two differ by rounding each pixel to a level: at most 0.5 levels on
average, which the legacy transforms (bicubic, long side rounded, floor-centred) miss on the
UCF101/HMDB51 frame sizes.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from froster_edge.config import StudentConfig
from froster_edge.spatial import LEGACY, REFERENCE, SpatialConfig, SpatialSpec
from froster_edge.video import decode_video, normalize_clip

from .helpers import CLIPS, MEAN, SHARED_DATA, STD

SIZE = 224


def reference_resize_crop(frames: np.ndarray, short: int, size: int, top: int | None = None,
                          left: int | None = None, flip: bool = False) -> torch.Tensor:
    """FROSTER's pixels of uint8 (T, H, W, 3) frames: (T, 3, S, S), normalised. Without `top`/`left`
    the test view's ceil-centred crop."""
    x = (torch.from_numpy(frames).float() / 255.0 - torch.from_numpy(MEAN)) / torch.from_numpy(STD)
    x = x.permute(3, 0, 1, 2)  # (C, T, H, W), as the reference's dataset hands it over
    h, w = x.shape[2:]
    if not ((w <= h and w == short) or (h <= w and h == short)):
        if w < h:
            h, w = int(math.floor(float(h) / w * short)), short
        else:
            h, w = short, int(math.floor(float(w) / h * short))
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    y0 = int(math.ceil((h - size) / 2)) if top is None else top
    x0 = int(math.ceil((w - size) / 2)) if left is None else left
    x = x[:, :, y0:y0 + size, x0:x0 + size]
    if flip:
        x = x.flip(-1)
    return x.permute(1, 0, 2, 3)  # (T, C, S, S)


def levels(ours: np.ndarray, reference: torch.Tensor) -> np.ndarray:
    """|difference| in 8-bit levels of normalised (T, 3, S, S) clips."""
    return np.abs(ours - reference.numpy()) * (STD * 255.0)[None, :, None, None]


def real_frames(name: str) -> np.ndarray:
    path = CLIPS / name
    if not path.exists():
        path = SHARED_DATA / "action_clips" / name
        if not path.exists():
            pytest.skip(f"../shared/data/action_clips/{name} is not present on this machine")
    frames, _ = decode_video(path, lambda count, fps: np.linspace(0, count - 1, 6).astype(int))
    return frames


# UCF101's 340x256, HMDB51's (and some UCF101 clips') 320x240, a K400 clip at 426x320
SIZES = {"v_Basketball_g01_c02.mp4": (256, 340), "mmaction2_test_v_ApplyEyeMakeup.avi": (240, 320),
         "Tw2yXa6CzWE.mp4": (320, 426)}


@pytest.mark.parametrize("name", list(SIZES))
def test_the_test_view_is_the_references_to_rounding(name):
    frames = real_frames(name)
    assert frames.shape[1:3] == SIZES[name]
    want = reference_resize_crop(frames, SIZE, SIZE)
    ours = normalize_clip(np.stack([REFERENCE.center_crop(f, SIZE) for f in frames]))
    diff = levels(ours, want)
    assert diff.mean() <= 0.5 and diff.max() <= 1.5, (diff.mean(), diff.max())
    legacy = levels(normalize_clip(np.stack([LEGACY.center_crop(f, SIZE) for f in frames])), want)
    if SIZES[name] != (320, 426):  # there the legacy long side is the same width: interpolation alone
        assert legacy.mean() > 1.0, legacy.mean()  # the test tells the two rules apart


def test_resized_shapes_and_crop_offsets_follow_the_reference():
    assert REFERENCE.resized_shape(256, 340, 224) == (224, 297)  # floor(297.5); legacy rounds to 298
    assert LEGACY.resized_shape(256, 340, 224) == (224, 298)
    assert REFERENCE.resized_shape(240, 320, 224) == (224, 298)  # floor(298.67)
    assert REFERENCE.resized_shape(340, 256, 224) == (297, 224)  # portrait: the height is the long side
    assert REFERENCE.centre_offset(297, 224) == 37 and LEGACY.centre_offset(297, 224) == 36  # ceil(36.5)
    frame = np.zeros((224, 300, 3), np.uint8)
    assert REFERENCE.resize(frame, 224) is frame  # the right short side already: no resampling


def test_the_training_jitter_draws_as_the_reference():
    h, w = 256, 340
    shorts, tops, flips = [], [], 0
    for seed in range(6000):
        short, top, left, flip = REFERENCE.train_draw(h, w, SIZE, np.random.default_rng(seed))
        nh, nw = REFERENCE.resized_shape(h, w, short) if short != h else (h, w)
        assert 0 <= top < nh - SIZE or (nh == SIZE and top == 0)  # randint(0, side - S): never the last offset
        assert 0 <= left < nw - SIZE
        shorts.append(short)
        tops.append((top, nh))
        flips += flip
    counts = np.bincount(shorts, minlength=257)[SIZE:]
    assert set(shorts) == set(range(224, 257))  # round(uniform(224, 256))
    inner = counts[1:-1].mean()
    assert counts[0] < 0.75 * inner and counts[-1] < 0.75 * inner  # the ends get half a bin each
    assert max(t for t, nh in tops if nh == 256) == 256 - SIZE - 1
    assert 2500 < flips < 3500
    legacy = [LEGACY.train_draw(h, w, SIZE, np.random.default_rng(s))[0] for s in range(3000)]
    ends = np.bincount(legacy, minlength=257)[SIZE:]
    assert ends[0] > 0.75 * ends[1:-1].mean()  # integers(224, 257): flat


@pytest.mark.parametrize("name", list(SIZES)[:2])
def test_a_training_crop_is_the_references_to_rounding(name):
    frames = real_frames(name)
    for seed in range(4):
        draw = REFERENCE.train_draw(*frames.shape[1:3], SIZE, np.random.default_rng(seed))
        ours = normalize_clip(REFERENCE.train_crop(frames, SIZE, np.random.default_rng(seed)))
        diff = levels(ours, reference_resize_crop(frames, *draw[:1], SIZE, *draw[1:]))
        assert diff.mean() <= 0.5, (seed, draw, diff.mean())


def test_the_spec_travels_from_student_to_bundle_and_old_artifacts_keep_theirs(tmp_path):
    from froster_edge.bundle.manifest import spatial_spec
    from froster_edge.config import saved_student_config

    assert StudentConfig().spatial_spec() == REFERENCE
    assert saved_student_config({"model_name": "ViT-B-16"}).spatial_spec() == LEGACY  # saved before specs
    assert saved_student_config({"spatial": {"rule": "reference"}}).spatial_spec() == REFERENCE
    assert spatial_spec({"preprocessing": {}}) == LEGACY
    assert spatial_spec({"preprocessing": {"spatial": REFERENCE.to_dict()}}) == REFERENCE
    mixed = SpatialConfig(rule="legacy", interpolation="bilinear").spec()
    assert (mixed.interpolation, mixed.long_side, mixed.centre) == ("bilinear", "nearest", "floor")
    assert SpatialSpec.from_manifest(json.loads(json.dumps(mixed.to_dict()))) == mixed


def test_a_bundle_records_its_spatial_spec_and_an_old_one_reads_as_legacy(tiny_bundle, tiny_student, tmp_path):
    from froster_edge.bundle.manifest import read_manifest, spatial_spec
    from froster_edge.model.checkpoint import load_student, save_student

    manifest = read_manifest(tiny_bundle)
    assert manifest["preprocessing"]["spatial"] == REFERENCE.to_dict() and spatial_spec(manifest) == REFERENCE
    old = json.loads(json.dumps(manifest))
    del old["preprocessing"]["spatial"]  # exported before the spec was recorded
    assert spatial_spec(old) == LEGACY
    save_student(tiny_student, tmp_path / "student")
    assert load_student(tmp_path / "student").config.spatial_spec() == REFERENCE
    config = json.loads((tmp_path / "student" / "config.json").read_text())
    del config["student"]["spatial"]  # saved before the spec existed
    (tmp_path / "student" / "config.json").write_text(json.dumps(config))
    assert load_student(tmp_path / "student").config.spatial_spec() == LEGACY
