"""Residual projectors, the FROSTER loss and the frozen teacher, against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from froster_edge.config import DistillConfig
from froster_edge.model.distill import ResidualProjector
from froster_edge.model.factory import create_distiller


def test_projector_starts_as_identity():
    torch.manual_seed(0)
    proj = ResidualProjector(64)
    z = torch.randn(10, 64)
    torch.testing.assert_close(proj(z), z)
    assert proj.fc1.bias is None and proj.fc2.bias is None
    assert torch.count_nonzero(proj.fc2.weight) == 0
    # Kaiming-normal (fan-in, gain sqrt 2): std sqrt(2 / 64)
    assert proj.fc1.weight.std().item() == pytest.approx(math.sqrt(2 / 64), rel=0.1)


def test_projector_formula():
    proj = ResidualProjector(2, alpha=0.1)
    with torch.no_grad():
        proj.fc1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
        proj.fc2.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 3.0]]))
    z = torch.tensor([[1.0, 2.0]])
    gelu = lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2)))
    h = [gelu(1.0), gelu(-2.0)]
    want = [1.0 + 0.1 * 2.0 * h[0], 2.0 + 0.1 * 3.0 * h[1]]
    torch.testing.assert_close(proj(z), torch.tensor([want]))


def _cos(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_loss_equals_hand_computation(tiny_config):
    torch.manual_seed(0)
    d = create_distiller(tiny_config, DistillConfig(alpha=0.1, vision_weight=2.0, text_weight=2.0))
    D = d.student.embed_dim
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # projectors away from identity, so they matter in the loss
        d.projector_v.fc2.weight.normal_(0, 0.1, generator=g)
        d.projector_t.fc2.weight.normal_(0, 0.1, generator=g)
    frames = torch.randn(2, 3, D, generator=g)
    text = torch.randn(4, D, generator=g)
    t_frames = torch.randn(2, 3, D, generator=g)
    t_text = torch.randn(4, D, generator=g)
    logits = torch.randn(2, 4, generator=g)
    labels = torch.tensor([3, 1])
    terms = d.loss(logits, labels, frames, text, t_frames, t_text)

    L = logits.numpy()
    ce = np.mean([-(L[i, labels[i]] - np.log(np.exp(L[i]).sum())) for i in range(2)])
    with torch.no_grad():
        pv = d.projector_v(frames.reshape(6, D)).numpy()
        pt = d.projector_t(text).numpy()
    vision = np.mean([1 - _cos(pv[i], t_frames.reshape(6, D)[i].numpy()) for i in range(6)])
    text_d = np.mean([1 - _cos(pt[i], t_text[i].numpy()) for i in range(4)])
    assert terms.ce.item() == pytest.approx(ce, rel=1e-5)
    assert terms.vision.item() == pytest.approx(vision, rel=1e-5)
    assert terms.text.item() == pytest.approx(text_d, rel=1e-5)
    assert terms.total.item() == pytest.approx(ce + 2.0 * vision + 2.0 * text_d, rel=1e-5)


def test_forward_uses_frame_level_teacher_targets(tiny_config):
    """forward = loss(...) on the student's and the teacher's own features, per frame."""
    torch.manual_seed(1)
    d = create_distiller(tiny_config)
    frames = torch.randn(2, 4, 3, 64, 64)
    tokens = d.student.tokenize(["a photo of x. x: y", "x: y", "a video of z. z: w", "z: w"]).reshape(2, 2, -1)
    labels = torch.tensor([0, 1])
    with torch.no_grad():
        terms = d(frames, labels, tokens)
        s = d.student.encode_video(frames)
        t_frames = torch.nn.functional.normalize(
            d.teacher.clip.encode_image(frames.flatten(0, 1)), dim=-1
        ).numpy()
        emb = torch.nn.functional.normalize(d.student.clip.encode_text(tokens.flatten(0, 1)), dim=-1)
        text = torch.nn.functional.normalize(emb.reshape(2, 2, -1).mean(1), dim=-1)
    logits = d.student.logit_scale.exp().item() * s.video.numpy() @ text.numpy().T
    np.testing.assert_allclose(terms.logits.numpy(), logits, rtol=1e-4, atol=1e-5)
    # projectors start as identity: the vision term is the student-teacher frame distance
    sf = s.frames.reshape(8, -1).numpy()
    want = np.mean([1 - _cos(sf[i], t_frames[i]) for i in range(8)])
    assert terms.vision.item() == pytest.approx(want, rel=1e-4, abs=1e-6)


def test_gradients_reach_student_never_teacher(tiny_config):
    torch.manual_seed(2)
    d = create_distiller(tiny_config)
    d.train()
    assert not d.teacher.training and not d.teacher.clip.training
    teacher_before = {k: v.clone() for k, v in d.teacher.state_dict().items()}
    with torch.no_grad():  # let gradient flow through the projectors' first layers too
        d.projector_v.fc2.weight.normal_(0, 0.01)
        d.projector_t.fc2.weight.normal_(0, 0.01)
    opt = torch.optim.SGD([p for p in d.parameters() if p.requires_grad], lr=0.1)
    tokens = d.student.tokenize(["a", "b", "c", "d"]).reshape(2, 2, -1)
    terms = d(torch.randn(2, 4, 3, 64, 64), torch.tensor([0, 1]), tokens)
    terms.total.backward()
    assert all(p.grad is None for p in d.teacher.parameters())
    assert all(not p.requires_grad for p in d.teacher.parameters())
    visual_grads = [p.grad for p in d.student.clip.visual.parameters()]
    assert all(g is not None and torch.count_nonzero(g) > 0 for g in visual_grads)
    assert d.student.clip.text_projection.grad is not None
    assert d.student.logit_scale.grad is not None
    assert d.projector_v.fc1.weight.grad is not None and d.projector_t.fc2.weight.grad is not None
    opt.step()
    for k, v in d.teacher.state_dict().items():
        torch.testing.assert_close(v, teacher_before[k])


def test_teacher_is_the_original_clip(tiny_config):
    """The teacher is plain per-frame CLIP with the student's initial weights, not its blocks."""
    from froster_edge.model.attention import NeighborFrameBlock

    torch.manual_seed(3)
    d = create_distiller(tiny_config)
    assert not any(isinstance(m, NeighborFrameBlock) for m in d.teacher.modules())
    s_state, t_state = d.student.clip.state_dict(), d.teacher.clip.state_dict()
    assert s_state.keys() == t_state.keys()
    for k in s_state:
        torch.testing.assert_close(s_state[k], t_state[k])
        assert s_state[k].data_ptr() != t_state[k].data_ptr()


def test_trimmed_text_encoding_equals_open_clips_full_length(tiny_student):
    """Dropping the positions after the longest end-of-text token changes nothing (causal tower)."""
    from froster_edge.model.clip import encode_text

    tokens = tiny_student.tokenize(["yoga", "a video of a person practicing archery.", "Fencing: two people duel with swords"])
    assert int(tokens.argmax(-1).max()) + 1 < tokens.shape[1]
    with torch.no_grad():
        want = tiny_student.clip.encode_text(tokens, normalize=True)  # open_clip's own, all 77 positions
        got = encode_text(tiny_student.clip, tokens)
        full = encode_text(tiny_student.clip, tokens, trim=False)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(full, want, atol=1e-6, rtol=0)
