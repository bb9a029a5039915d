"""The resumable sampler and training checkpoints: round trip, damaged files, and a kill mid-save."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from froster_edge.config import OptimConfig
from froster_edge.errors import ConfigError
from froster_edge.io import atomic_dir, recover
from froster_edge.model.factory import create_distiller
from froster_edge.train.batches import ResumableBatchSampler
from froster_edge.train.optim import build_optimizer
from froster_edge.train.state import OPTIMIZER_FILE, STATE_FILE, capture_rng, latest_state, list_states, read_state, restore_rng, save_state

from .helpers import ROOT, sigkill

# ---- sampler ----------------------------------------------------------------------------------

def test_processes_share_each_global_batch():
    n, batch = 23, 8
    one = ResumableBatchSampler(n, batch, 8, seed=3)
    assert one.steps_per_epoch == 2 and len(one) == 2
    two = [ResumableBatchSampler(n, batch, 2, rank=r, world_size=2, seed=3) for r in range(2)]
    assert two[0].accumulation == 2 and len(two[0]) == 4
    for epoch in (0, 1):
        for s in [one, *two]:
            s.set_epoch(epoch)
        single = list(one)
        per_rank = [list(s) for s in two]
        for step in range(2):
            # rank r's two micro-batches of step `step`, together: the single process's batch
            union = sorted(i for r in range(2) for mb in per_rank[r][2 * step:2 * step + 2] for i in mb)
            assert union == sorted(single[step]) == sorted(one.global_batch(epoch, step))
        assert all(len(mb) == 2 for r in per_rank for mb in r)
    one.set_epoch(0)
    e0 = list(one)
    one.set_epoch(1)
    assert list(one) != e0  # a new permutation each epoch
    assert len({i for b in e0 for i in b}) == 16  # drop-last, no repeats


def test_sampler_resumes_mid_epoch():
    s = ResumableBatchSampler(20, 4, 2, seed=0)
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2, start_step=3)
    assert list(s) == full[6:] and len(s) == 4


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_items=10, batch_size=5, micro_batch_size=1, world_size=2), "not a multiple of the 2 processes"),
    (dict(num_items=10, batch_size=8, micro_batch_size=3), "does not divide"),
    (dict(num_items=3, batch_size=4, micro_batch_size=4), "fewer than one global batch"),
])
def test_sampler_rejects_impossible_batches(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ResumableBatchSampler(**kwargs)


# ---- state round trip --------------------------------------------------------------------------

def _trained(tiny_config, steps=2):
    torch.manual_seed(0)
    d = create_distiller(tiny_config)
    opt = build_optimizer(d, OptimConfig(lr=1e-3))
    tokens = d.student.tokenize(["a", "b", "c", "d"]).reshape(2, 2, -1)
    for _ in range(steps):
        d(torch.randn(2, 4, 3, 64, 64), torch.tensor([0, 1]), tokens).total.backward()
        opt.step()
        opt.zero_grad()
    return d, opt


def test_state_round_trip(tiny_config, tmp_path):
    d, opt = _trained(tiny_config)
    torch.manual_seed(123)
    np.random.seed(5)
    random.seed(9)
    rng = capture_rng()
    path = save_state(tmp_path, step=7, epoch=1, epoch_step=3, distiller=d, optimizer=opt, scaler=None,
                      rng_states=[rng], extra={"teacher": "abc"})
    assert path.name == "step_00000007" and (path / STATE_FILE).is_file()
    want_draws = (torch.rand(3), np.random.rand(3), random.random())

    torch.manual_seed(99)  # a different model and optimizer, then load the state into them
    d2 = create_distiller(tiny_config)
    opt2 = build_optimizer(d2, OptimConfig(lr=1e-3))
    state = read_state(path)
    assert (state.step, state.epoch, state.epoch_step, state.meta["teacher"]) == (7, 1, 3, "abc")
    state.apply(d2, opt2, None)
    for (k, v), (_, v2) in zip(d.state_dict().items(), d2.state_dict().items(), strict=True):
        if not k.startswith("teacher."):
            torch.testing.assert_close(v2, v, rtol=0, atol=0, msg=k)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for pid in s1["state"]:
        for name in s1["state"][pid]:
            torch.testing.assert_close(s2["state"][pid][name], s1["state"][pid][name], rtol=0, atol=0)
    restore_rng(state.rng[0])
    draws = (torch.rand(3), np.random.rand(3), random.random())
    torch.testing.assert_close(draws[0], want_draws[0])
    np.testing.assert_array_equal(draws[1], want_draws[1])
    assert draws[2] == want_draws[2]


def test_damaged_newest_state_is_skipped(tiny_config, tmp_path):
    d, opt = _trained(tiny_config, steps=1)
    for step in (1, 2):
        save_state(tmp_path, step=step, epoch=0, epoch_step=step, distiller=d, optimizer=opt, scaler=None,
                   rng_states=[capture_rng()], keep=5)
    assert [p.name for p in list_states(tmp_path)] == ["step_00000002", "step_00000001"]
    newest = tmp_path / "step_00000002" / OPTIMIZER_FILE
    newest.write_bytes(newest.read_bytes()[:-10])  # a torn write that slipped past the rename
    state, skipped = latest_state(tmp_path)
    assert state.step == 1 and len(skipped) == 1 and "does not match the hash" in skipped[0]
    (tmp_path / "step_00000001" / STATE_FILE).write_text("{")
    state, skipped = latest_state(tmp_path)
    assert state is None and len(skipped) == 2


def test_pruning_keeps_the_newest(tiny_config, tmp_path):
    d, opt = _trained(tiny_config, steps=1)
    for step in (1, 2, 3):
        save_state(tmp_path, step=step, epoch=0, epoch_step=step, distiller=d, optimizer=opt, scaler=None,
                   rng_states=[capture_rng()], keep=2)
    assert [p.name for p in list_states(tmp_path)] == ["step_00000003", "step_00000002"]


def test_atomic_dir_replaces_only_on_success(tmp_path):
    final = tmp_path / "epoch_001"
    with atomic_dir(final) as tmp:
        (tmp / "a").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "a").write_text("new")
            raise RuntimeError("killed")
    assert (final / "a").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["epoch_001"]
    with atomic_dir(final) as tmp:
        (tmp / "a").write_text("new")
    assert (final / "a").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["epoch_001"]


SAVER = textwrap.dedent("""
    import sys, torch
    from froster_edge.config import StudentConfig, OptimConfig
    from froster_edge.model.factory import create_distiller
    from froster_edge.train.optim import build_optimizer
    from froster_edge.train.state import capture_rng, save_state
    torch.manual_seed(0)
    d = create_distiller(StudentConfig(model_name=sys.argv[2], pretrained=None, num_frames=4, image_size=64))
    opt = build_optimizer(d, OptimConfig())
    for p in d.parameters():
        if p.requires_grad:
            p.grad = torch.zeros_like(p)
    opt.step()
    step = 0
    while True:
        step += 1
        with torch.no_grad():  # the state of step k carries k in its weights, optimizer and RNG
            d.projector_v.fc2.weight.fill_(step)
            for s in opt.state.values():
                s["exp_avg"].fill_(step)
        torch.manual_seed(step)
        save_state(sys.argv[1], step=step, epoch=0, epoch_step=step, distiller=d, optimizer=opt, scaler=None,
                   rng_states=[capture_rng()], extra={"teacher": "t"})
        print(step, flush=True)
""")


def test_kill_during_saves_leaves_a_loadable_state(tmp_path):
    """SIGKILL a process that saves state after state: the newest state left reads back whole."""
    root = tmp_path / "state"
    proc = subprocess.Popen([sys.executable, "-c", SAVER, str(root), str(ROOT / "configs/models/tiny-vit.json")],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        for _ in range(3):  # a few complete saves, then kill at an arbitrary moment of the next
            assert proc.stdout.readline(), "the saver died"
        time.sleep(random.uniform(0.0, 0.15))
    finally:
        sigkill(proc)
    state, skipped = latest_state(root)
    assert state is not None and state.step >= 3 and skipped == []
    k = state.step
    assert torch.all(state.projectors["projector_v.fc2.weight"] == k)
    assert all(torch.all(v == k) for key, v in _exp_avgs(state.optimizer))
    torch.manual_seed(k)
    assert torch.equal(state.rng[0]["torch"], torch.get_rng_state())
    # what the kill interrupted is a hidden temporary directory, never a visible step_ one
    assert all(".tmp-" in p.name for p in root.iterdir() if p.name.startswith("."))
    recover(root)
    assert list_states(root)[0].name == f"step_{k:08d}" and all(p.name.startswith("step_") for p in root.iterdir())


def _exp_avgs(optimizer_state):
    return [(f"{pid}.exp_avg", s["exp_avg"]) for pid, s in optimizer_state["state"].items()]
