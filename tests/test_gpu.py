"""CUDA paths: reduced-precision student and teacher against fp32. Skip without a GPU.

Run on a GPU machine by scripts/device_check.sh.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from froster_edge.model.factory import create_distiller
from froster_edge.video import clip_view, read_frames

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine (torch.cuda.is_available() is False)"),
]


@pytest.fixture
def real_clip(example_clips, tiny_config):
    view = clip_view(read_frames(example_clips[1]["path"]), tiny_config.num_frames, tiny_config.image_size)
    return torch.from_numpy(view)[None].cuda()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_student_autocast_matches_fp32(tiny_config, real_clip, dtype):
    torch.manual_seed(0)
    d = create_distiller(tiny_config).cuda().eval()
    with torch.no_grad():
        ref = d.student.encode_video(real_clip)
        with torch.autocast("cuda", dtype=dtype):
            low = d.student.encode_video(real_clip)
    cos = F.cosine_similarity(ref.frames.float().flatten(0, 1), low.frames.float().flatten(0, 1), dim=-1)
    assert cos.min().item() >= 0.999


def test_teacher_reduced_precision_close_to_fp32(tiny_config, real_clip):
    torch.manual_seed(0)
    d = create_distiller(tiny_config).cuda()
    low = d.teacher.encode_frames(real_clip)
    assert low.dtype == torch.float32
    with torch.no_grad():
        ref = F.normalize(d.teacher.clip.encode_image(real_clip.flatten(0, 1)).float(), dim=-1)
    cos = F.cosine_similarity(low.flatten(0, 1), ref, dim=-1)
    assert cos.min().item() >= 0.999
    assert not torch.equal(low.flatten(0, 1), ref)  # it really ran in reduced precision


def test_training_step_on_gpu(tiny_config, real_clip):
    torch.manual_seed(0)
    d = create_distiller(tiny_config).cuda().train()
    tokens = d.student.tokenize(["a video of yoga.", "yoga", "a photo of fencing.", "fencing"]).reshape(2, 2, -1).cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16):
        terms = d(real_clip.repeat(2, 1, 1, 1, 1), torch.tensor([0, 1], device="cuda"), tokens)
    terms.total.backward()
    assert torch.isfinite(terms.total)
    assert all(p.grad is None for p in d.teacher.parameters())
    assert all(torch.isfinite(p.grad).all() for p in d.student.parameters() if p.grad is not None)
