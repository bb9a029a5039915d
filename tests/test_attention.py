"""Neighbour-frame attention against a naive per-frame reference written here."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from froster_edge.config import StudentConfig
from froster_edge.model.attention import NeighborFrameBlock
from froster_edge.model.clip import build_clip
from froster_edge.model.factory import create_student


def naive_neighbor_attention(block, x: torch.Tensor, T: int) -> torch.Tensor:
    """Loop over clips, frames and heads; keys/values of [t+1, t-1, t], zeros past the ends."""
    attn = block.attn
    BT, L, C = x.shape
    H, d = attn.num_heads, C // attn.num_heads
    Wq, Wk, Wv = attn.in_proj_weight.split(C)
    bq, bk, bv = attn.in_proj_bias.split(C)
    frames = x.reshape(BT // T, T, L, C)
    out = torch.zeros(BT // T, T, L, C)
    for b in range(BT // T):
        for t in range(T):
            def kv(s, b=b):
                if 0 <= s < T:
                    return frames[b, s] @ Wk.T + bk, frames[b, s] @ Wv.T + bv
                return torch.zeros(L, C), torch.zeros(L, C)

            (kn, vn), (kp, vp), (ks, vs) = kv(t + 1), kv(t - 1), kv(t)
            K, V = torch.cat([kn, kp, ks]), torch.cat([vn, vp, vs])  # (3L, C)
            q = frames[b, t] @ Wq.T + bq  # (L, C)
            heads = []
            for h in range(H):
                sl = slice(h * d, (h + 1) * d)
                w = torch.softmax(q[:, sl] @ K[:, sl].T / math.sqrt(d), dim=-1)
                heads.append(w @ V[:, sl])
            out[b, t] = torch.cat(heads, dim=-1) @ attn.out_proj.weight.T + attn.out_proj.bias
    return out.reshape(BT, L, C)


def naive_student_frames(clip, frames: torch.Tensor) -> torch.Tensor:
    """The whole temporal image tower written out with the naive attention."""
    B, T = frames.shape[:2]
    v = clip.visual
    x = v.conv1(frames.flatten(0, 1)).flatten(2).transpose(1, 2)  # (BT, grid^2, W)
    x = torch.cat([v.class_embedding.expand(x.shape[0], 1, -1), x], dim=1) + v.positional_embedding
    x = v.ln_pre(x)
    for blk in v.transformer.resblocks:
        x = x + naive_neighbor_attention(blk, blk.ln_1(x), T)
        x = x + blk.mlp(blk.ln_2(x))
    feats = v.ln_post(x[:, 0]) @ v.proj
    return F.normalize(feats, dim=-1).reshape(B, T, -1)


@pytest.mark.parametrize("B,T", [(1, 1), (2, 2), (3, 5)])
def test_block_matches_naive_reference(tiny_student, B, T):
    block = tiny_student.clip.visual.transformer.resblocks[0]
    assert isinstance(block, NeighborFrameBlock)
    torch.manual_seed(1)
    x = torch.randn(B * T, 5, 64)
    with torch.no_grad():
        got = block.neighbor_attention(x, T)
        want = naive_neighbor_attention(block, x, T)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("B,T", [(1, 1), (2, 3), (1, 8)])
def test_student_matches_naive_tower(tiny_student, B, T):
    torch.manual_seed(2)
    frames = torch.randn(B, T, 3, 64, 64)
    with torch.no_grad():
        got = tiny_student.encode_video(frames)
        want = naive_student_frames(tiny_student.clip, frames)
    torch.testing.assert_close(got.frames, want, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(got.video, want.mean(1), atol=2e-5, rtol=1e-4)
    # the video feature is the mean of normalised frames, deliberately not re-normalised
    assert T == 1 or not torch.allclose(got.video.norm(dim=-1), torch.ones(B))


def test_zero_neighbours_take_softmax_mass(tiny_student):
    """A single frame still attends to two all-zero neighbours: it differs from plain CLIP."""
    block = tiny_student.clip.visual.transformer.resblocks[0]
    x = torch.randn(1, 5, 64)
    with torch.no_grad():
        temporal = block.neighbor_attention(x, 1)
        plain = block.attn(x, x, x, need_weights=False)[0]
    assert not torch.allclose(temporal, plain, atol=1e-4)


def test_frames_interact_only_with_neighbours(tiny_student):
    """Changing frame 0 changes frame 1's output after one block, and frames 2 and 3 not at all.

    The perturbation is random per token and channel: a constant added to every channel would
    be removed by the block's LayerNorm and leave only float rounding to compare.
    """
    block = tiny_student.clip.visual.transformer.resblocks[0]
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(4, 5, 64, generator=gen)
    y = x.clone()
    y[0] += torch.randn(5, 64, generator=gen)
    with torch.no_grad():
        a, b = block(x, 4), block(y, 4)
    assert (a[1] - b[1]).abs().max() > 1e-2  # float noise here is ~1e-7
    assert torch.equal(a[2:], b[2:])


def test_none_equals_plain_open_clip(tiny_config, tiny_model_cfg):
    torch.manual_seed(3)
    cfg = StudentConfig(**{**tiny_config.__dict__, "temporal_attention": "none"})
    student = create_student(cfg).eval()
    plain = build_clip(tiny_model_cfg).eval()
    plain.load_state_dict(student.clip.state_dict())
    frames = torch.randn(2, 3, 3, 64, 64)
    with torch.no_grad():
        got = student.encode_video(frames).frames
        want = torch.stack([F.normalize(plain.encode_image(frames[:, t]), dim=-1) for t in range(3)], dim=1)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_no_new_parameters(tiny_student, tiny_model_cfg):
    plain = build_clip(tiny_model_cfg)
    got = {k: v.shape for k, v in tiny_student.clip.state_dict().items()}
    assert got == {k: v.shape for k, v in plain.state_dict().items()}
    plain.load_state_dict(tiny_student.clip.state_dict(), strict=True)


def test_gradient_checkpointing_same_output_and_grads(tiny_config):
    torch.manual_seed(4)
    student = create_student(tiny_config).train()
    frames = torch.randn(2, 4, 3, 64, 64)
    out = student.encode_video(frames).video.sum()
    out.backward()
    grads = [p.grad.clone() for p in student.clip.visual.parameters()]
    student.zero_grad()
    student.set_grad_checkpointing(True)
    out2 = student.encode_video(frames).video.sum()
    out2.backward()
    torch.testing.assert_close(out2, out)
    for g, p in zip(grads, student.clip.visual.parameters(), strict=False):
        torch.testing.assert_close(p.grad, g, atol=1e-6, rtol=1e-5)


def test_refuses_unsupported_blocks(tiny_model_cfg):
    cfg = {**tiny_model_cfg, "vision_cfg": {**tiny_model_cfg["vision_cfg"], "qk_norm": True}}
    from froster_edge.errors import ConfigError
    from froster_edge.model.clip import _check_supported

    with pytest.raises(ConfigError, match="qk_norm"):
        _check_supported(cfg, "custom")
