"""`froster-edge train` end to end on the repository's clips: outputs, averaging, metrics, bad recipes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from froster_edge.model.checkpoint import PROJECTORS_FILE, load_student, load_tensors
from froster_edge.model.factory import create_distiller
from froster_edge.train import ddp
from froster_edge.train.config import load_recipe
from froster_edge.train.loop import Trainer
from froster_edge.video import clip_view, read_frames

from .helpers import TINY_RECIPE, train_cli

FAST = ["train.epochs=3", "train.eval_every=3", "train.progress=false", "data.num_workers=0"]


def test_tiny_recipe_trains_and_writes_a_loadable_student(tmp_path, example_clips):
    cfg = load_recipe(TINY_RECIPE, FAST)
    trainer = Trainer(cfg, tmp_path / "run", ddp.setup("cpu"))
    final = trainer.fit()
    run = tmp_path / "run"
    trained = trainer.distiller.student.eval()

    # the last epoch's checkpoint reloads to the very model that was trained
    view = torch.from_numpy(clip_view(read_frames(example_clips[1]["path"]), 4, 64))[None]
    reloaded = load_student(run / "checkpoints" / "epoch_003")
    with torch.no_grad():
        want, got = trained.encode_video(view), reloaded.encode_video(view)
    torch.testing.assert_close(got.frames, want.frames, rtol=0, atol=0)
    torch.manual_seed(cfg.train.seed)  # and training moved it away from its initialisation
    init = create_distiller(cfg.student, cfg.distill).student.clip.state_dict()
    assert any(not torch.equal(init[k], v) for k, v in reloaded.clip.state_dict().items())

    # the final student is the mean of epochs 2 and 3 (average_from: 2), projectors included
    assert final == run / "student"
    avg = load_student(final).clip.state_dict()
    e2, e3 = (load_student(run / "checkpoints" / f"epoch_00{e}").clip.state_dict() for e in (2, 3))
    for k in avg:
        np.testing.assert_allclose(avg[k].numpy(), (e2[k].double().numpy() + e3[k].double().numpy()) / 2, rtol=1e-6, atol=1e-8)
    p2, p3, pa = (load_tensors(d, PROJECTORS_FILE) for d in (run / "checkpoints/epoch_002", run / "checkpoints/epoch_003", final))
    torch.testing.assert_close(pa["projector_v.fc2.weight"], (p2["projector_v.fc2.weight"] + p3["projector_v.fc2.weight"]) / 2)

    # the run's record: resolved recipe, metrics per step and per epoch with the validation result
    assert load_recipe(run / "config.yaml") == cfg
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in lines if "kind" not in m]
    epochs = [m for m in lines if m.get("kind") == "epoch"]
    assert [m["step"] for m in steps] == [1, 2, 3, 4, 5, 6] and [m["epoch"] for m in epochs] == [1, 2, 3]
    assert all(set(m) >= {"loss", "ce", "vision", "text", "lr", "clips_per_s", "grad_norm"} for m in steps)
    assert all(abs(m["loss"] - (m["ce"] + 2 * m["vision"] + 2 * m["text"])) < 1e-4 for m in steps)
    assert "val" in epochs[2] and "val" not in epochs[0] and 0 <= epochs[2]["val"]["top1"] <= 100
    assert [p.name for p in (run / "state").iterdir()] == ["step_00000006"]
    assert not (run / "failed_videos.txt").exists()


@pytest.mark.parametrize("sets,message", [
    (["optim.lrr=1e-5"], "unknown config key(s) optim.lrr"),
    (["data.root=null"], "data.root is not set"),
    (["data.root=no/such/folder"], "is not a folder"),
    (["data.num_classes=400"], "data.num_classes is 400 but"),
    (["data.classes=../shared/none.json"], "class file not found"),
    (["train.batch_size=8"], "fewer than one global batch (8)"),
    (["train.amp=fp16"], "fp16 needs a CUDA GPU"),
])
def test_bad_recipes_fail_with_one_line(sets, message, tmp_path):
    args = [str(TINY_RECIPE), "--out", str(tmp_path / "run")]
    for s in sets:
        args += ["--set", s]
    code, err = train_cli(*args)
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err


def test_label_outside_the_classes_fails_with_one_line(tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_text("stgcn_clean_and_jerk.mp4 7\n")
    code, err = train_cli(str(TINY_RECIPE), "--set", f"data.train_list={lst}", "--out", str(tmp_path / "r"))
    assert code == 1 and err.count("\n") == 1 and "label 7 is outside the classes (0..4)" in err


def test_a_used_run_directory_needs_resume_and_the_same_recipe(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"optim": {"lr": 0.5}}))
    (run / "state" / "step_00000002").mkdir(parents=True)  # it trained: a fresh run must not overwrite it
    code, err = train_cli(str(TINY_RECIPE), "--out", str(run))
    assert code == 1 and "already holds a training run; pass --resume" in err
    code, err = train_cli(str(TINY_RECIPE), "--out", str(run), "--resume")
    assert code == 1 and err.count("\n") == 1 and "differs from the one" in err and "optim.lr" in err


def test_resuming_a_run_saved_before_the_spatial_spec_asks_for_its_transforms(tmp_path):
    from froster_edge.train.config import recipe_to_yaml

    run = tmp_path / "run"
    (run / "state" / "step_00000002").mkdir(parents=True)
    saved = yaml.safe_load(recipe_to_yaml(load_recipe(TINY_RECIPE)))
    del saved["student"]["spatial"]  # started before student.spatial existed: the legacy transforms
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    code, err = train_cli(str(TINY_RECIPE), "--out", str(run), "--resume")
    assert code == 1 and err.count("\n") == 1 and "differs from the one" in err and "student.spatial" in err
