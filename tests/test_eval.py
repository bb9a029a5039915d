"""Evaluation: protocol arithmetic by hand, scoring by hand, invariance to batching and processes,
and `froster-edge eval` end to end on real clips with a tiny random student."""

from __future__ import annotations

import json
import math

import pytest
import torch

from froster_edge.data import VideoDataset, VideoItem
from froster_edge.evaluation import (
    EncodedVideos,
    base_to_novel_summary,
    encode_videos,
    evaluate,
    harmonic_mean,
    load_protocol,
    mean_std,
    merge_encoded,
    run_protocol,
    score_videos,
    topk_hits,
)
from froster_edge.evaluation.command import EvalRequest, run_eval
from froster_edge.model.checkpoint import save_student
from froster_edge.prompts import ClassText, read_class_texts

from .helpers import CLIPS, ROOT, cli

# --- arithmetic ----------------------------------------------------------------------------------


@pytest.mark.parametrize("base,novel,hm", [(77.8, 64.3, 70.4), (74.1, 58.0, 65.1), (95.3, 80.0, 87.0), (18.3, 12.2, 14.6),
                                           (62.3, 53.4, 57.5), (4.9, 5.3, 5.1)])
def test_harmonic_mean_gives_the_papers_hm(base, novel, hm):
    assert round(harmonic_mean(base, novel), 1) == hm  # FROSTER's and frozen CLIP's B2N rows


def test_b2n_and_cross_dataset_summaries_by_hand():
    assert harmonic_mean(0.0, 0.0) == 0.0 and harmonic_mean(None, 50.0) is None
    s = base_to_novel_summary([70.0, 80.0, 90.0], [50.0, 60.0, 70.0])
    assert s["base"] == 80.0 and s["novel"] == 60.0
    assert s["hm"] == pytest.approx(2 * 80 * 60 / 140)  # HM of the means (68.57), not the mean of HMs (68.3)
    m, sd = mean_std([83.8, 84.8, 85.8])
    assert m == pytest.approx(84.8) and sd == pytest.approx(math.sqrt(2 / 3))  # population std
    assert mean_std([None, 10.0]) == (10.0, 0.0) and mean_std([]) == (None, None)


def test_topk_hits_by_hand():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.5, 0.2, 0.3], [0.0, 0.1, 0.2]])
    labels = torch.tensor([1, 2, 0])
    assert topk_hits(logits, labels, 1).tolist() == [True, False, False]
    assert topk_hits(logits, labels, 2).tolist() == [True, True, False]
    assert topk_hits(logits, labels, 5).tolist() == [True, True, True]  # k capped at C


def test_score_videos_by_hand():
    classes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])  # (C=3, D=2)
    feats = torch.tensor([[2.0, 0.1], [0.1, 1.0], [1.0, 1.0], [0.0, 0.0], [0.0, 3.0]])
    # logits (scale 1): v0 [2, .1, 1.28] -> 0; v1 [.1, 1, .86] -> 1; v2 [1, 1, 1.4] -> 2; v4 [0, 3, 2.4] -> 1
    items = [VideoItem(f"v{i}.mp4", label) for i, label in enumerate([0, 2, 2, 1, 2])]
    ok = torch.tensor([True, True, True, False, True])
    encoded = EncodedVideos(feats, ok, torch.arange(5), {"v3.mp4": "v3.mp4: corrupt"})
    r = score_videos(encoded, items, classes, torch.tensor(0.0), ["a", "b", "c"])
    assert (r.num_videos, r.num_scored, r.num_failed, r.failed) == (5, 4, 1, ["v3.mp4: corrupt"])
    assert r.top1 == 50.0  # v0 and v2 right, v1 and v4 wrong
    assert r.top5 == 100.0
    assert r.reference_top1 == 40.0 and r.reference_top5 == 80.0  # the reference: the undecodable v3 is wrong
    assert [(c.name, c.videos, c.top1) for c in r.per_class] == [("a", 1, 100.0), ("b", 0, None), ("c", 3, 100 / 3)]
    assert r.mean_class_top1 == pytest.approx((100 + 100 / 3) / 2)
    assert r.videos[1] == {"path": "v1.mp4", "label": 2, "ok": True, "top5": [1, 2, 0]}
    assert r.videos[3]["top5"] == [] and json.loads(json.dumps(r.to_dict()))["num_failed"] == 1


# --- invariance -------------------------------------------------------------------------------------


@pytest.fixture
def clip_items(example_clips) -> list[VideoItem]:
    return [VideoItem(r["path"], i) for i, r in enumerate(example_clips)]


@pytest.mark.timeout(300)
def test_results_do_not_depend_on_batch_size_workers_or_processes(tiny_student, clip_items):
    items = clip_items + [VideoItem(CLIPS / "missing.mp4", 0)]
    one = encode_videos(tiny_student, items, views=3, batch_size=1, num_workers=0, progress=False)
    many = encode_videos(tiny_student, items, views=3, batch_size=4, num_workers=2, progress=False)
    shards = merge_encoded([encode_videos(tiny_student, items, batch_size=2, shard=(r, 2), progress=False) for r in (1, 0)])
    classes = tiny_student.class_embeddings(read_class_texts(CLIPS / "classes.txt"))
    names = [str(i) for i in range(len(classes))]
    results = [score_videos(e, items, classes, tiny_student.logit_scale, names) for e in (one, many, shards)]
    for e, r in zip((many, shards), results[1:], strict=False):
        assert torch.equal(e.indices, one.indices) and torch.equal(e.ok, one.ok)
        torch.testing.assert_close(e.features, one.features, atol=1e-5, rtol=1e-5)
        assert [v["top5"] for v in r.videos] == [v["top5"] for v in results[0].videos]
        assert (r.top1, r.top5, r.failed) == (results[0].top1, results[0].top5, results[0].failed)
    assert one.ok.tolist() == [True] * 5 + [False] and results[0].num_scored == 5
    # Each row is the sum over the 3 views of the student's video feature, computed here view by view.
    sample = VideoDataset(clip_items[2:3], num_frames=4, image_size=64, train=False, views=3)[0]["frames"]
    with torch.no_grad():
        by_view = tiny_student.encode_video(sample).video.sum(0)
    torch.testing.assert_close(one.features[2], by_view, atol=1e-5, rtol=1e-5)


def test_evaluate_restores_train_mode(tiny_student, clip_items):
    tiny_student.train()
    r = evaluate(tiny_student, clip_items[:2], read_class_texts(CLIPS / "classes.txt"), views=1, progress=False)
    assert tiny_student.training and r.num_scored == 2 and len(r.per_class) == 12


# --- protocols and the command ----------------------------------------------------------------------


def write_protocol(tmp_path, kind: str) -> tuple:
    """A tiny protocol over the example clips: base = the K400 clips, novel = the UCF clips."""
    (tmp_path / "lists").mkdir(exist_ok=True)
    (tmp_path / "lists" / "base.csv").write_text("mmaction2_demo_arm_wrestling.mp4,0\nstgcn_clean_and_jerk.mp4,1\n"
                                                 "mmaction2_test_cleaning_pool.mp4,2\ngone.mp4,1\n")
    (tmp_path / "lists" / "novel.txt").write_text("mmaction2_test_v_ApplyEyeMakeup.avi 0\nv_Basketball_g01_c02.mp4 1\n")
    (tmp_path / "lists" / "base.json").write_text(json.dumps({"0": "Arm wrestling: two people", "1": "Clean and jerk: a lift",
                                                              "2": "Cleaning pool: a net"}))
    (tmp_path / "lists" / "base_names.txt").write_text("arm wrestling\nclean and jerk\ncleaning pool\n")
    (tmp_path / "lists" / "novel.txt.classes").write_text("applying eye makeup\nplaying basketball\n")
    part = lambda lst, cls, lab=None: {"list": f"{{ann}}/{lst}", "classes": f"{{ann}}/{cls}",
                                       **({"labels": f"{{ann}}/{lab}"} if lab else {})}
    base = part("base.csv", "base.json", "base_names.txt")
    novel = part("novel.txt", "novel.txt.classes")
    if kind == "base2novel":
        splits = [{"name": "s1", "base": base, "novel": novel}, {"name": "s2", "base": base, "novel": novel}]
        extra = {}
    else:
        splits = [{"name": "a", "test": base}, {"name": "b", "test": novel}]
        extra = {"full": base}
    config = {"protocol": kind, "name": f"tiny {kind}", "root": "data/videos", "paths": {"ann": "data/lists"},
              "splits": splits, **extra}
    path = tmp_path / f"{kind}.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path, {"ann": str(tmp_path / "lists")}


@pytest.mark.timeout(300)
def test_base_to_novel_protocol_with_a_student_per_split(tiny_student, tiny_config, tmp_path):
    from froster_edge.model.factory import create_student

    save_student(tiny_student, tmp_path / "run_s1")
    torch.manual_seed(1)
    save_student(create_student(tiny_config), tmp_path / "run_s2")
    config, paths = write_protocol(tmp_path, "base2novel")
    req = EvalRequest(protocol=config, root=CLIPS, paths=[f"{k}={v}" for k, v in paths.items()],
                      student=str(tmp_path / "run_{split}"), workers=0, batch_size=2, device="cpu", progress=False,
                      json_out=tmp_path / "report.json")
    report = run_eval(req)
    d = json.loads((tmp_path / "report.json").read_text())
    assert [s["student"] for s in d["splits"]] == [str(tmp_path / "run_s1"), str(tmp_path / "run_s2")]
    for s in d["splits"]:
        assert (s["base"]["num_videos"], s["base"]["num_scored"], s["novel"]["num_scored"]) == (4, 3, 2)
        assert len(s["base"]["per_class"]) == 3 and len(s["novel"]["per_class"]) == 2
        assert s["hm_top1"] == pytest.approx(harmonic_mean(s["base"]["top1"], s["novel"]["top1"]))
    b = [s["base"]["top1"] for s in d["splits"]]
    n = [s["novel"]["top1"] for s in d["splits"]]
    assert d["summary"]["base_top1"] == pytest.approx(sum(b) / 2) and d["summary"]["novel_top1"] == pytest.approx(sum(n) / 2)
    assert d["summary"]["hm_top1"] == pytest.approx(harmonic_mean(sum(b) / 2, sum(n) / 2))
    assert d["failed_videos"] == [f"{CLIPS / 'gone.mp4'}: video not found"]
    # each seed's figures and their mean on the terminal; the reference's base figure counts gone.mp4 wrong
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(report.table())
    text = console.export_text()
    cells = [line.replace("│", " ").split() for line in text.splitlines()]
    rows = {c[0]: " ".join(c) for c in cells if c and c[0] in ("s1", "s2", "mean")}
    for name, s in zip(("s1", "s2"), d["splits"], strict=False):
        assert s["base"]["reference_top1"] == pytest.approx(s["base"]["top1"] * 3 / 4)
        assert f"{s['base']['top1']:.1f}" in rows[name] and f"{s['base']['reference_top1']:.1f}" in rows[name]
    assert f"{sum(b) / 2:.1f}" in rows["mean"] and "mean of 2" in text
    # --split scores one seed
    one = run_eval(EvalRequest(protocol=config, root=CLIPS, paths=[f"{k}={v}" for k, v in paths.items()], splits=["s2"],
                               student=str(tmp_path / "run_{split}"), workers=0, batch_size=2, device="cpu",
                               progress=False))
    assert [r.name for r in one.splits] == ["s2"] and one.splits[0].results["base"].top1 == b[1]
    # the split's student alone, through evaluate(), scores the same
    alone = evaluate(tiny_student, [VideoItem(CLIPS / p, i) for i, p in enumerate(
        ["mmaction2_test_v_ApplyEyeMakeup.avi", "v_Basketball_g01_c02.mp4"])],
        [ClassText("applying eye makeup"), ClassText("playing basketball")], progress=False)
    assert alone.top1 == report.splits[0].results["novel"].top1


def test_cross_dataset_protocol_mean_std_and_full(tiny_student, tmp_path):
    config, paths = write_protocol(tmp_path, "cross_dataset")
    protocol = load_protocol(config, root=CLIPS, paths=paths, views=1)
    report = run_protocol(protocol, tiny_student, num_workers=0, progress=False)
    d = report.to_dict(videos=False)
    tops = [s["test"]["top1"] for s in d["splits"]]
    m, sd = sum(tops) / 2, abs(tops[0] - tops[1]) / 2  # population std of two values
    assert d["summary"]["top1_mean"] == pytest.approx(m) and d["summary"]["top1_std"] == pytest.approx(sd)
    assert d["full"]["test"]["top1"] == d["splits"][0]["test"]["top1"]  # the same list, encoded once
    assert d["views"] == 1 and "videos" not in d["splits"][0]["test"]


@pytest.mark.parametrize("change,match", [
    ({"protocol": "zero_shot"}, "protocol: must be 'base2novel' or 'cross_dataset', not 'zero_shot'"),
    ({"splits": [{"name": "a", "base": {"list": "x", "classes": "y"}}]}, r"splits\[0\] \(a\) must have exactly test"),
    ({"splits": [{"name": "a", "test": {"list": "x", "classes": "y", "colour": 1}}]}, r"splits\[0\]\.test\.colour: unknown key"),
    ({"views": 0}, "views: must be greater than or equal to 1, not 0"),
    ({"paths": {}}, "names an unknown folder 'ann'"),
    ({"extra": 1}, "extra: unknown key"),
])
def test_bad_protocol_configs(tmp_path, change, match):
    config, _ = write_protocol(tmp_path, "cross_dataset")
    data = {**json.loads(config.read_text()), **change}
    config.write_text(json.dumps(data))
    with pytest.raises(Exception, match=match):
        load_protocol(config)


@pytest.fixture
def run_eval_cli(monkeypatch):
    """`froster-edge eval ARGS` in this process (helpers.cli), run from the repository root."""
    monkeypatch.chdir(ROOT)
    return lambda *args: cli("eval", *args)


@pytest.mark.timeout(300)
def test_eval_command_end_to_end_on_real_clips(tiny_student, example_clips, tmp_path, run_eval_cli):
    save_student(tiny_student, tmp_path / "student")
    lines = [f"{r['file']} {i}" for i, r in enumerate(example_clips)] + ["lost/clip.mp4 3"]
    (tmp_path / "val.txt").write_text("\n".join(lines) + "\n")
    proc = run_eval_cli("--student", str(tmp_path / "student"), "--data", str(tmp_path / "val.txt"), "--root", str(CLIPS),
                   "--classes", str(CLIPS / "classes.txt"), "--json", str(tmp_path / "r.json"), "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert "top-1" in proc.stdout and "5/6" in proc.stdout  # the table
    assert "1 video(s) could not be scored" in proc.stderr and "lost/clip.mp4: video not found" in proc.stderr
    d = json.loads((tmp_path / "r.json").read_text())
    test = d["splits"][0]["test"]
    assert (d["protocol"], d["views"], test["num_videos"], test["num_scored"], test["num_failed"]) == ("single", 3, 6, 5, 1)
    assert len(test["per_class"]) == 12 and sum(c["videos"] for c in test["per_class"]) == 5
    assert [v["ok"] for v in test["videos"]] == [True] * 5 + [False]
    hits = sum(v["top5"][0] == v["label"] for v in test["videos"] if v["ok"])
    assert test["top1"] == pytest.approx(100 * hits / 5) and d["summary"]["top1"] == test["top1"]
    assert test["reference_top1"] == pytest.approx(100 * hits / 6) == d["summary"]["reference_top1"]
    assert d["summary"]["failed"] == 1
    assert "ref top-1" in proc.stdout and "skipped" in proc.stdout
    row = next(line for line in proc.stdout.splitlines() if "5/6" in line)
    assert f"{100 * hits / 5:.1f}" in row and f"{100 * hits / 6:.1f}" in row  # both figures, the skipped count beside


def test_eval_command_bad_input_is_one_line(tmp_path, run_eval_cli):
    (tmp_path / "val.txt").write_text("nothing/here.mp4 0\n")
    cases = [
        (["--data", str(tmp_path / "val.txt"), "--classes", str(CLIPS / "classes.txt")], "none of the 1 videos"),
        (["--protocol", "configs/eval/k400_b2n.yaml", "--data", str(tmp_path / "val.txt")], "either --protocol"),
        (["--protocol", "configs/eval/k400_to_ucf101.yaml", "--path", "vifi=/x"], "has no folder 'vifi'"),
    ]
    for args, text in cases:
        proc = run_eval_cli(*args, "--no-progress")
        assert proc.returncode == 1, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr and text in lines[0], proc.stderr


def test_a_part_with_no_scored_video_is_an_error(tiny_student, tmp_path):
    from froster_edge.errors import FrosterError
    from froster_edge.evaluation import single_protocol

    (tmp_path / "junk.mp4").write_bytes(b"\x00junk" * 300)
    (tmp_path / "list.txt").write_text("junk.mp4 0\n")
    (tmp_path / "c.txt").write_text("a\nb\n")
    report = run_protocol(single_protocol(tmp_path / "list.txt", tmp_path / "c.txt"), tiny_student, num_workers=0,
                          progress=False)
    t = report.splits[0].results["test"]
    assert (t.num_scored, t.top1, report.failed[0].split(": ")[0]) == (0, None, str(tmp_path / "junk.mp4"))
    with pytest.raises(FrosterError, match=r"no video could be scored in list\.test \(1 videos\)"):
        report.require_scored()
