"""Uniform weight averaging: known state dicts against the hand-computed mean, student dirs, the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from froster_edge.config import StudentConfig
from froster_edge.errors import CheckpointError, ConfigError
from froster_edge.model.checkpoint import PROJECTORS_FILE, load_student, load_tensors, read_student_config, save_student
from froster_edge.model.distill import ResidualProjector
from froster_edge.model.factory import create_student
from froster_edge.train.average import average_state_dicts, average_students, epoch_dir, epoch_dirs, parse_epoch_range

from .helpers import cli


def test_average_of_known_state_dicts():
    a = {"w": torch.tensor([[1.0, 2.0], [3.0, 4.0]]), "b": torch.tensor([0.5]), "n": torch.tensor([7])}
    b = {"w": torch.tensor([[3.0, 2.0], [1.0, 0.0]]), "b": torch.tensor([1.5]), "n": torch.tensor([7])}
    c = {"w": torch.tensor([[2.0, 5.0], [-1.0, 5.0]]), "b": torch.tensor([-2.0]), "n": torch.tensor([7])}
    mean = average_state_dicts([a, b, c])
    # by hand: w = ([1+3+2, 2+2+5], [3+1-1, 4+0+5]) / 3, b = (0.5 + 1.5 - 2) / 3, integers kept
    torch.testing.assert_close(mean["w"], torch.tensor([[2.0, 3.0], [1.0, 3.0]]))
    torch.testing.assert_close(mean["b"], torch.tensor([0.0]))
    assert mean["n"].dtype == torch.int64 and mean["n"].item() == 7
    assert mean["w"].dtype == torch.float32


def test_average_state_dicts_rejects_mismatches():
    with pytest.raises(CheckpointError, match="different keys"):
        average_state_dicts([{"a": torch.zeros(1)}, {"b": torch.zeros(1)}])
    with pytest.raises(CheckpointError, match="different shapes"):
        average_state_dicts([{"a": torch.zeros(1)}, {"a": torch.zeros(2)}])
    with pytest.raises(CheckpointError, match="integer tensor that differs"):
        average_state_dicts([{"a": torch.tensor([1])}, {"a": torch.tensor([2])}])
    with pytest.raises(ConfigError, match="nothing to average"):
        average_state_dicts([])


def _students(tiny_config, dirs, seed=0):
    """Write students with different random weights (and projectors) into `dirs`."""
    for i, d in enumerate(dirs):
        torch.manual_seed(seed + i)
        s = create_student(tiny_config)
        proj = {"projector_v": ResidualProjector(s.embed_dim), "projector_t": ResidualProjector(s.embed_dim)}
        for p in proj.values():
            torch.nn.init.normal_(p.fc2.weight)
        save_student(s, d, projectors=proj)


def test_average_students_is_the_elementwise_mean(tiny_config, tmp_path):
    dirs = [tmp_path / f"e{i}" for i in range(3)]
    _students(tiny_config, dirs)
    out = average_students(dirs, tmp_path / "avg")
    avg = load_student(out)
    states = [load_student(d).clip.state_dict() for d in dirs]
    for k, v in avg.clip.state_dict().items():
        want = np.mean([s[k].numpy().astype(np.float64) for s in states], axis=0)
        np.testing.assert_allclose(v.numpy(), want, rtol=1e-6, atol=1e-7, err_msg=k)
    proj = load_tensors(out, PROJECTORS_FILE)
    projs = [load_tensors(d, PROJECTORS_FILE) for d in dirs]
    for k, v in proj.items():
        np.testing.assert_allclose(v.numpy(), np.mean([p[k].numpy().astype(np.float64) for p in projs], axis=0), rtol=1e-6)
    assert read_student_config(out)["extra"]["averaged_from"] == [str(d) for d in dirs]
    x = torch.randn(1, tiny_config.num_frames, 3, 64, 64)
    with torch.no_grad():
        assert torch.isfinite(avg.encode_video(x).video).all()


def test_average_refuses_different_models(tiny_config, tmp_path):
    _students(tiny_config, [tmp_path / "a"])
    torch.manual_seed(0)
    save_student(create_student(StudentConfig(**{**tiny_config.__dict__, "num_frames": 8})), tmp_path / "b")
    with pytest.raises(CheckpointError, match="different model"):
        average_students([tmp_path / "a", tmp_path / "b"], tmp_path / "out")


def test_epoch_ranges(tiny_config, tmp_path):
    assert parse_epoch_range("2..12") == (2, 12)
    assert parse_epoch_range("2..") == (2, None)
    assert parse_epoch_range("5") == (5, 5)
    with pytest.raises(ConfigError, match="START..END"):
        parse_epoch_range("2-12")
    run = tmp_path / "run"
    for e in (1, 2, 3):
        epoch_dir(run, e).mkdir(parents=True)
    assert epoch_dirs(run, 2) == [epoch_dir(run, 2), epoch_dir(run, 3)]
    with pytest.raises(CheckpointError, match="lacks epoch checkpoint"):
        epoch_dirs(run, 2, 5)
    with pytest.raises(CheckpointError, match="no epoch checkpoints"):
        epoch_dirs(tmp_path / "empty", 1)


def _average(*args: str) -> tuple[int, str, str]:
    r = cli("average", *args)
    return r.returncode, r.stdout, r.stderr


def test_average_command_over_a_run_and_one_line_errors(tiny_config, tmp_path):
    run = tmp_path / "run"
    _students(tiny_config, [epoch_dir(run, e) for e in (1, 2, 3)], seed=10)
    code, out, err = _average(str(run), "--epochs", "2..", "-o", str(tmp_path / "avg"))
    assert code == 0, err
    assert "average of 2 checkpoints" in out
    want = average_state_dicts([load_student(epoch_dir(run, e)).clip.state_dict() for e in (2, 3)])
    got = load_student(tmp_path / "avg").clip.state_dict()
    for k in want:
        torch.testing.assert_close(got[k], want[k])
    code, _, err = _average(str(run), "--epochs", "2..9", "-o", str(tmp_path / "x"))
    assert code == 1 and err.count("\n") == 1 and "lacks epoch checkpoint(s) 4, 5" in err
    code, _, err = _average(str(tmp_path / "nothing"), "-o", str(tmp_path / "y"))
    assert code == 1 and err.count("\n") == 1 and "student directory not found" in err
