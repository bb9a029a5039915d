"""Video lists, class files, samplers and the Dataset, against hand computations and real clips."""

from __future__ import annotations

import json
import math
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from froster_edge.data import (
    VideoDataset,
    VideoItem,
    check_class_names,
    collate_clips,
    make_loader,
    read_classes,
    read_video_list,
    train_transform,
)
from froster_edge.errors import ConfigError
from froster_edge.evaluation import load_protocol, prepare_part
from froster_edge.prompts import ClassText
from froster_edge.sampling import SamplingConfig
from froster_edge.spatial import SpatialConfig
from froster_edge.video import VideoError, normalize_clip, read_frames, resize_center_crop

from .helpers import CLIPS, ROOT, VIDEOS, shared_data

# --- video lists -------------------------------------------------------------------------------


def test_space_and_comma_lists_with_root(tmp_path):
    (tmp_path / "a.txt").write_text("# comment\n\nval/x_000001_000011.mp4 3\n  val/y.mp4   0  \n/abs/z.mp4 1\n")
    items = read_video_list(tmp_path / "a.txt", root="data/k400", require_existing=False)
    assert items == [VideoItem(Path("data/k400/val/x_000001_000011.mp4"), 3), VideoItem(Path("data/k400/val/y.mp4"), 0),
                     VideoItem(Path("/abs/z.mp4"), 1)]
    (tmp_path / "b.csv").write_text("path,label\nApplyEyeMakeup/v_A.avi,17\nBrush Hair/clip one.avi , 2\n")
    items = read_video_list(tmp_path / "b.csv", num_classes=18, require_existing=False)  # no root: the list's folder
    assert items == [VideoItem(tmp_path / "ApplyEyeMakeup/v_A.avi", 17), VideoItem(tmp_path / "Brush Hair/clip one.avi", 2)]


@pytest.mark.parametrize("text,match", [
    ("a.mp4 1\nb.mp4\n", r"b\.txt:2: expected 'path label'"),
    ("a.mp4,1,extra\n", r"b\.txt:1: expected"),
    ("a.mp4 1\nb.mp4 x\n", r"b\.txt:2: expected"),
    ("a.mp4 5\n", r"b\.txt:1: label 5 is outside the classes \(0\.\.4\)"),
    ("a.mp4 -1\n", r"label -1 is outside"),
    ("# nothing\n\n", "lists no videos"),
])
def test_bad_lists_fail_with_one_line(tmp_path, text, match):
    (tmp_path / "b.txt").write_text(text)
    with pytest.raises(ConfigError, match=match) as e:
        read_video_list(tmp_path / "b.txt", num_classes=5, require_existing=False)
    assert "\n" not in str(e.value)


def test_list_needs_one_existing_video(tmp_path, example_clips):
    (tmp_path / "l.txt").write_text("nope.mp4 0\nalso/nope.mp4 1\n")
    with pytest.raises(ConfigError, match=r"none of the 2 videos of .*l\.txt exists under .*is --root right"):
        read_video_list(tmp_path / "l.txt", root=CLIPS)
    with pytest.raises(ConfigError, match="video list not found"):
        read_video_list(tmp_path / "missing.txt")
    (tmp_path / "l.txt").write_text(f"nope.mp4 0\n{example_clips[0]['file']} 1\n")
    assert len(read_video_list(tmp_path / "l.txt", root=CLIPS)) == 2  # a missing video is the loader's to report


# --- class files -------------------------------------------------------------------------------


def test_class_csv_json_and_names(tmp_path):
    (tmp_path / "c.csv").write_text('id,name\n1,"Pushing something from left to right"\n0,kick ball\n')
    assert [c.name for c in read_classes(tmp_path / "c.csv")] == ["kick ball", "Pushing something from left to right"]
    (tmp_path / "c.json").write_text(json.dumps({"1": "Kick: A person kicks", "0": "Kick ball: A person kicks a ball"}))
    assert [c.text for c in read_classes(tmp_path / "c.json")] == ["Kick ball: A person kicks a ball", "Kick: A person kicks"]
    (tmp_path / "bad.csv").write_text("id,label\n0,x\n")
    with pytest.raises(ConfigError, match="'name' column"):
        read_classes(tmp_path / "bad.csv")
    (tmp_path / "gap.csv").write_text("id,name\n0,x\n2,y\n")
    with pytest.raises(ConfigError, match="without gaps"):
        read_classes(tmp_path / "gap.csv")


def test_class_order_check_tolerates_spelling_not_swaps():
    texts = [ClassText.parse(t) for t in ["Barbecuing: grilling", "Eating a burger: eats", "Kick: strikes", "Kick ball: kicks"]]
    check_class_names(texts, ["barbequing", "eating burger", "kick", "kick_ball"], "t.json", "l.csv")
    with pytest.raises(ConfigError, match=r"class 2 of t\.json is 'Kick' but the label file l\.csv says 'kick ball'; "
                                          r"the label file has 'Kick' at 3"):
        check_class_names(texts, ["barbequing", "eating burger", "kick ball", "kick"], "t.json", "l.csv")
    with pytest.raises(ConfigError, match="has 4 classes but the label file l.csv has 3"):
        check_class_names(texts, ["barbequing", "eating burger", "kick"], "t.json", "l.csv")
    # Close spelling is not enough when the name sits elsewhere (a swapped near-duplicate pair).
    pair = [ClassText("Basketball"), ClassText("Basketball Dunk")]
    with pytest.raises(ConfigError, match="class 0"):
        check_class_names(pair, ["Basketball Dunk", "Basketball"], "t", "l")


def test_reference_label_files_agree_or_are_caught():
    froster, vifi = shared_data("froster_label_db"), shared_data("vificlip_splits")
    hmdb = read_classes(froster / "label_rephrase" / "hmdb_rephrased_classes.json")
    check_class_names(hmdb, [c.name for c in read_classes(froster / "zs_label_db" / "hmdb-index2cls.json")], "f", "l")
    # ViFi-CLIP's HMDB label CSV swaps kick / kick ball against its own lists (kick videos are 20).
    with pytest.raises(ConfigError, match="'Kick' but .* says 'kick ball'"):
        check_class_names(hmdb, [c.name for c in read_classes(vifi / "labels" / "hmdb_51_labels.csv")], "f", "l")
    kick = [it.label for it in read_video_list(froster / "zs_label_db" / "hmdb_split1" / "test.csv", require_existing=False)
            if it.path.parent.name == "kick"]
    assert set(kick) == {20} and hmdb[20].name == "Kick"
    k400 = read_classes(froster / "label_rephrase" / "k400_rephrased_classes.json")  # "Eating a burger" etc.
    check_class_names(k400, [c.name for c in read_classes(vifi / "labels" / "kinetics_400_labels.csv")], "f", "l")


# The documented class counts of the splits (shared/data/README.md, the method doc).
B2N = [("k400", "kinetics_400", 200, 200), ("ucf", "ucf_101", 51, 50), ("hmdb", "hmdb_51", 26, 25), ("ssv2", "ssv2_174", 87, 87)]


@pytest.mark.parametrize("short,labels,n_base,n_novel", B2N, ids=[b[0] for b in B2N])
def test_vifi_b2n_splits_have_documented_class_counts(short, labels, n_base, n_novel):
    vifi = shared_data("vificlip_splits")
    for part, n in (("base", n_base), ("novel", n_novel)):
        classes = read_classes(vifi / "labels" / f"{labels}_{part}_labels.csv")
        items = read_video_list(vifi / "datasets_splits" / "base2novel_splits" / f"{short}_splits" / f"{part}_val.txt",
                                num_classes=len(classes), require_existing=False)
        assert len(classes) == n and len({it.label for it in items}) == n


def test_vifi_k600_zero_shot_splits_have_160_classes():
    vifi = shared_data("vificlip_splits")
    for s in (1, 2, 3):
        classes = read_classes(vifi / "labels" / f"ZS_split{s}_K600.csv")
        items = read_video_list(vifi / "datasets_splits" / "k600_splits" / f"ZS_split{s}_K600_eval.txt",
                                num_classes=160, require_existing=False)
        assert len(classes) == 160 and len({it.label for it in items}) == 160


# classes per part of every protocol config, when its files are the shared copies
CONFIG_CLASSES = {
    "k400_b2n.yaml": {"base": 200, "novel": 200}, "ucf101_b2n.yaml": {"base": 51, "novel": 50},
    "hmdb51_b2n.yaml": {"base": 26, "novel": 25}, "ssv2_b2n.yaml": {"base": 87, "novel": 87},
    "k400_to_ucf101.yaml": {"test": 101}, "k400_to_hmdb51.yaml": {"test": 51}, "k400_to_k600.yaml": {"test": 160},
}


@pytest.mark.parametrize("name", sorted(CONFIG_CLASSES))
def test_protocol_configs_resolve_to_the_shared_files(name):
    folders = {"froster": str(shared_data("froster_label_db")), "vifi": str(shared_data("vificlip_splits"))}
    config = ROOT / "configs" / "eval" / name
    used = {k: v for k, v in folders.items() if "{" + k + "}" in config.read_text()}
    protocol = load_protocol(config, paths=used)
    assert protocol.root is not None and not protocol.root.is_absolute()  # a placeholder the user replaces
    parts = [(s.name, k, p) for s in protocol.splits for k, p in s.parts.items()]
    parts += [("full", "test", protocol.full)] if protocol.full else []
    for split, key, part in parts:
        prepared = prepare_part(part, protocol.root, require_existing=False)  # labels in range, order checked
        assert len(prepared.classes) == CONFIG_CLASSES[name][key], (split, key)
        assert len({it.label for it in prepared.items}) == len(prepared.classes), (split, key)
    assert len(protocol.splits) == 3  # B2N: the three training seeds (ViFi-CLIP's protocol); cross-dataset: 3 test splits
    if protocol.kind == "base2novel":
        assert [s.name for s in protocol.splits] == ["s1", "s2", "s3"]
        assert load_protocol(config, paths=used, only=["s2"]).splits[0].name == "s2"


# --- temporal sampling -------------------------------------------------------------------------


# The "even" rule, kept as a named option (the reference rule: tests/test_fidelity.py).


def even(T: int):
    return SamplingConfig(rule="even").spec(T)


def eval_clip_indices(count, fps, T, views=3):
    return even(T).view_indices(count, fps, views)


def train_clip_indices(count, fps, T, rng):
    return even(T).train_indices(count, fps, rng)


def reference_clips(count: int, fps: float, T: int, views: int, stride: int = 16) -> list[list[int]]:
    """The even rule in exact arithmetic: step = stride*fps/30 (stride if no fps), shrunk to
    (count-1)/(T-1) for a short video; starts evenly spaced over [0, count-1-span]; round half up."""
    step = Fraction(stride) * Fraction(fps) / 30 if fps else Fraction(stride)
    if T > 1 and step * (T - 1) > count - 1:
        step = Fraction(count - 1, T - 1)
    last = max(Fraction(0), count - 1 - step * (T - 1))
    starts = [last / 2] if views == 1 else [last * v / (views - 1) for v in range(views)]
    return [[min(count - 1, math.floor(s + k * step + Fraction(1, 2))) for k in range(T)] for s in starts]


def test_eval_clips_hand_computed():
    # 300 frames at 30 fps, T=8: step 16, span 112, starts 0, 93.5, 187
    assert eval_clip_indices(300, 30.0, 8, 3).tolist() == [
        [0, 16, 32, 48, 64, 80, 96, 112],
        [94, 110, 126, 142, 158, 174, 190, 206],
        [187, 203, 219, 235, 251, 267, 283, 299],
    ]
    # 25 fps: step 16*25/30 = 13.33; 180 frames: last start 179 - 93.33 = 85.67
    assert eval_clip_indices(180, 25.0, 8, 3)[[0, 2]].tolist() == [
        [0, 13, 27, 40, 53, 67, 80, 93],
        [86, 99, 112, 126, 139, 152, 166, 179],
    ]
    assert eval_clip_indices(300, 30.0, 8, 1).tolist() == [[94, 110, 126, 142, 158, 174, 190, 206]]  # the centre
    # short: 32 frames cannot hold 7 x 16, so the clip spreads over all of it (step 31/7), every view alike
    assert eval_clip_indices(32, 30.0, 8, 3).tolist() == [[0, 4, 9, 13, 18, 22, 27, 31]] * 3
    assert eval_clip_indices(2, 30.0, 4, 1).tolist() == [[0, 0, 1, 1]]  # fewer frames than T: repeats in order
    assert eval_clip_indices(1, 25.0, 8, 2).tolist() == [[0] * 8] * 2
    assert even(8).spacing(25.0) == pytest.approx(40 / 3) and even(8).spacing(0.0) == 16.0  # no fps: the stride


@pytest.mark.parametrize("fps", [0.0, 12.0, 25.0, 29.97, 30.0, 60.0])
def test_eval_clips_match_the_exact_reference(fps):
    for count in (1, 2, 7, 31, 32, 90, 101, 164, 300, 1000):
        for T in (1, 4, 8, 16):
            for views in (1, 2, 3):
                assert eval_clip_indices(count, fps, T, views).tolist() == reference_clips(count, fps, T, views), (count, T, views)


def test_train_clip_is_one_reference_clip_at_a_random_start():
    rng = np.random.default_rng(0)
    starts = []
    for _ in range(300):
        idx = train_clip_indices(300, 30.0, 8, rng)
        assert np.diff(idx).tolist() == [16] * 7  # integer step at 30 fps
        starts.append(int(idx[0]))
    assert min(starts) <= 5 and max(starts) >= 182 and all(0 <= s <= 187 for s in starts)  # uniform over [0, 187]
    a = train_clip_indices(300, 25.0, 8, np.random.default_rng([1, 2, 3]))
    assert np.array_equal(a, train_clip_indices(300, 25.0, 8, np.random.default_rng([1, 2, 3])))
    assert train_clip_indices(32, 30.0, 8, rng).tolist() == [0, 4, 9, 13, 18, 22, 27, 31]  # short: no randomness left


# --- spatial transforms ------------------------------------------------------------------------


def test_train_transform_crops_flips_and_shares_them_over_frames():
    base = np.tile(np.arange(100, dtype=np.uint8)[None, :, None], (64, 1, 3))  # pixel value = its column
    frames = np.stack([base + t for t in range(4)])  # (4, 64, 100, 3)
    flips = 0
    for seed in range(60):
        out = train_transform(frames, 64, np.random.default_rng(seed), SpatialConfig(jitter_ratio=1.0).spec())  # short side 64
        assert out.shape == (4, 64, 64, 3)
        assert all(np.array_equal(out[t], out[0] + t) for t in range(4))  # one crop and flip for every frame
        row = out[0, 0, :, 0].astype(int)
        flipped = row[0] > row[-1]
        flips += flipped
        left = row[-1] if flipped else row[0]
        assert row.tolist() == (list(range(left, left + 64))[::-1] if flipped else list(range(left, left + 64)))
        assert 0 <= left <= 36
    assert 15 <= flips <= 45
    shorts = set()
    for seed in range(40):  # with jitter the short side is drawn from [64, round(64*256/224)] = [64, 73]
        row = train_transform(frames[:1], 64, np.random.default_rng(seed))[0, 32, :, 0].astype(float)
        shorts.add(round(64 * 63 / abs(row[-1] - row[0])))  # the gradient flattens by 64/short
    assert shorts <= set(range(63, 75)) and len(shorts) >= 5


# --- the Dataset ---------------------------------------------------------------------------------


def items_of(example_clips) -> list[VideoItem]:
    return [VideoItem(r["path"], i) for i, r in enumerate(example_clips)]


def test_test_sample_is_three_centre_cropped_views(example_clips):
    row = example_clips[4]  # a raw MPEG-4 stream, 25 fps, 180 frames
    ds = VideoDataset([VideoItem(row["path"], 7)], num_frames=4, image_size=64, train=False, views=3, sampling=even(4))
    s = ds[0]
    assert s["frames"].shape == (3, 4, 3, 64, 64) and s["frames"].dtype == torch.float32
    assert (s["label"], s["index"], s["ok"], s["failed"]) == (7, 0, True, [])
    full = read_frames(row["path"])
    idx = reference_clips(len(full), 25.0, 4, 3)
    expected = normalize_clip(np.stack([[resize_center_crop(full[i], 64) for i in view] for view in idx]))
    np.testing.assert_allclose(s["frames"].numpy(), expected, atol=1e-6)


def test_train_samples_are_a_function_of_seed_epoch_index(example_clips):
    items = items_of(example_clips)
    a = VideoDataset(items, num_frames=4, image_size=64, train=True, seed=3)
    b = VideoDataset(items, num_frames=4, image_size=64, train=True, seed=3)
    assert a[1]["frames"].shape == (1, 4, 3, 64, 64)
    assert torch.equal(a[1]["frames"], b[1]["frames"])
    a.set_epoch(1)
    assert not torch.equal(a[1]["frames"], b[1]["frames"])
    b.set_epoch(1)
    assert torch.equal(a[1]["frames"], b[1]["frames"])
    assert not torch.equal(a[1]["frames"], VideoDataset(items, num_frames=4, image_size=64, train=True, seed=4)[1]["frames"])


def _batches(ds, workers, batch_size, persistent=False):
    loader = make_loader(ds, batch_size, num_workers=workers, persistent_workers=persistent)
    return loader, lambda: {int(i): f for b in loader for i, f in zip(b["index"], b["frames"], strict=False)}


@pytest.mark.timeout(120)
def test_workers_batch_size_and_persistent_workers_see_the_same_data(example_clips):
    items = items_of(example_clips)
    ref = VideoDataset(items, num_frames=4, image_size=64, train=True, seed=1)
    ref.set_epoch(2)
    expected = {i: ref[i]["frames"] for i in range(len(items))}
    ds = VideoDataset(items, num_frames=4, image_size=64, train=True, seed=1)
    loader, collect = _batches(ds, workers=2, batch_size=2, persistent=True)
    first = collect()  # epoch 0
    ds.set_epoch(2)  # reaches the running workers through shared memory
    second = collect()
    assert all(torch.equal(second[i], expected[i]) for i in expected)
    assert not all(torch.equal(first[i], expected[i]) for i in expected)
    _, collect_single = _batches(ref, workers=0, batch_size=3)
    assert all(torch.equal(f, expected[i]) for i, f in collect_single().items())


@pytest.mark.timeout(120)
def test_the_training_loader_follows_its_batch_sampler_across_epochs_and_a_resume(example_clips):
    """The trainer's loader is make_loader with its resumable batch sampler: persistent, non-forked
    workers give exactly the sampler's batches, in order, for each epoch and for an epoch resumed mid-way."""
    from froster_edge.train.batches import ResumableBatchSampler

    items = items_of(example_clips)
    ds = VideoDataset(items, num_frames=2, image_size=32, train=True, seed=5)
    sampler = ResumableBatchSampler(len(items), batch_size=2, micro_batch_size=1, seed=5)
    loader = make_loader(ds, batch_sampler=sampler, num_workers=1, persistent_workers=True)
    assert loader.multiprocessing_context.get_start_method() != "fork" and loader.persistent_workers
    for epoch, start in [(0, 0), (1, 0), (1, 1)]:
        ds.set_epoch(epoch)
        sampler.set_epoch(epoch, start)
        got = [b["index"].tolist() for b in loader]
        perm = sampler.permutation(epoch).tolist()  # the reference: the epoch's permutation cut into batches of 2, one clip each
        want = [[i] for step in range(start, len(items) // 2) for i in perm[2 * step:2 * step + 2]]
        assert got == want
    ref = VideoDataset(items, num_frames=2, image_size=32, train=True, seed=5)
    ref.set_epoch(1)
    last = next(iter(loader))  # epoch 1 from step 1, through the running worker
    assert torch.equal(last["frames"][0], ref[last["index"][0].item()]["frames"])


def test_bad_videos_are_replaced_in_training_and_flagged_in_test(example_clips, tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "junk.avi").write_bytes(b"\x00junk" * 500)
    good = example_clips[1]["path"]
    items = [VideoItem(tmp_path / "missing.mp4", 0), VideoItem(tmp_path / "empty.mp4", 1),
             VideoItem(tmp_path / "junk.avi", 2), VideoItem(good, 3)]
    s = VideoDataset(items, num_frames=4, image_size=64, train=True)[0]
    assert (s["index"], s["label"], s["path"], s["ok"]) == (3, 3, str(good), True)
    assert [f.split(": ")[0] for f in s["failed"]] == [str(tmp_path / n) for n in ("missing.mp4", "empty.mp4", "junk.avi")]
    assert "video not found" in s["failed"][0] and "empty file" in s["failed"][1]
    test = VideoDataset(items, num_frames=4, image_size=64, train=False, views=2)
    bad = test[2]
    assert (bad["ok"], bad["index"], bad["label"]) == (False, 2, 2) and bad["failed"][0].startswith(str(tmp_path / "junk.avi"))
    assert bad["frames"].shape == (2, 4, 3, 64, 64) and not bad["frames"].any()
    batch = collate_clips([test[i] for i in range(4)])
    assert batch["frames"].shape == (4, 2, 4, 3, 64, 64)
    assert batch["ok"].tolist() == [False, False, False, True] and batch["label"].tolist() == [0, 1, 2, 3]
    assert batch["labels"] is batch["label"] and batch["indices"].tolist() == [0, 1, 2, 3] and len(batch["failed"]) == 3
    with pytest.raises(VideoError, match="3 videos in a row"):
        VideoDataset(items[:3], num_frames=4, image_size=64, train=True)[1]


_FORKED_WORKERS = """
import sys
import torch
from froster_edge.data import VideoDataset, VideoItem, collate_clips, init_worker, make_loader
from froster_edge.video import VideoError, read_frames, resize_center_crop
corrupt, paths = sys.argv[1], sys.argv[2:]
try:
    read_frames(corrupt)
except VideoError:
    pass
for p in paths[:2]:
    resize_center_crop(read_frames(p)[0], 64)
ds = VideoDataset([VideoItem(p, i) for i, p in enumerate(paths)], num_frames=2, image_size=32, train=True)
forked = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate_clips,
                                     worker_init_fn=init_worker, multiprocessing_context="fork", timeout=30)
for loader in [make_loader(ds, 2, num_workers=2)] * 2 + [forked] * 3:
    assert sorted(i for b in loader for i in b["index"].tolist()) == list(range(len(ds)))
assert make_loader(ds, 2, num_workers=2).multiprocessing_context.get_start_method() != "fork"
print("ok")
"""


@pytest.mark.timeout(360)
def test_workers_start_clean_after_the_parent_decoded(example_clips):
    # A forked worker inherited OpenCV's half-alive thread pool and hung in cv2.setNumThreads about
    # 4 runs in 10 once this process had decoded a corrupt file: make_loader's workers are not
    # forked, and init_worker no longer touches OpenCV, so a plain forking DataLoader is safe too.
    # In a fresh interpreter: a process that an earlier test left with other libraries' threads
    # (OpenVINO's, in calibration tests) must not fork at all, which is not what this checks.
    import subprocess
    import sys

    corrupt = shared_data("video_robustness") / "decord" / "corrupted.mp4"
    done = subprocess.run([sys.executable, "-c", _FORKED_WORKERS, str(corrupt), *[str(r["path"]) for r in example_clips]],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_gather_videos_reads_files_folders_and_lists_in_order(tmp_path):
    """What --videos names in every command (export, calibrate --videos/--held-out)."""
    from froster_edge.data.lists import gather_videos

    clips = VIDEOS
    (tmp_path / "list.txt").write_text(f"{clips[1].name} 3\n{clips[0].name} 0\n")
    (tmp_path / "notes.md").write_text("not a video")
    shutil.copy(clips[0], tmp_path / "a.mp4")
    got = gather_videos([clips[2], tmp_path, tmp_path / "list.txt"], root=CLIPS)
    want = [(clips[2], -1), (tmp_path / "a.mp4", -1), (CLIPS / clips[1].name, 3), (CLIPS / clips[0].name, 0)]
    assert [(i.path, i.label) for i in got] == want
    assert [(i.path, i.label) for i in gather_videos(tmp_path / "list.txt", root=CLIPS)] == want[2:]  # one path alone
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no video files"):
        gather_videos([tmp_path / "empty"])
    with pytest.raises(ConfigError, match="no such video, folder or list"):
        gather_videos([clips[0], tmp_path / "missing.mp4"])


_FORKED_DECODERS = """
import multiprocessing, sys, time
from pathlib import Path
from froster_edge.video import _decode_pyav

def child(path):
    frames, _ = _decode_pyav(Path(path), None)
    assert frames.shape[0] > 0

if __name__ == "__main__":
    clip = sys.argv[1]
    _decode_pyav(Path(clip), None)  # the parent converts frames of this size first
    children = [multiprocessing.get_context("fork").Process(target=child, args=(clip,)) for _ in range(3)]
    for c in children:
        c.start()
    deadline = time.monotonic() + 90  # a bound for a hang, not a speed check
    for c in children:
        c.join(max(0.0, deadline - time.monotonic()))
    hung = [c.pid for c in children if c.is_alive()]
    for c in children:
        if c.is_alive():
            c.kill()
    print("hung", hung, "exitcodes", [c.exitcode for c in children])
"""


@pytest.mark.timeout(180)
def test_pyav_decoding_works_in_a_child_forked_after_the_parent_decoded():
    """The cause of the forked loader's hang: PyAV keeps one swscale context per thread; a threaded
    one (FFmpeg's slice threads) is copied into a forked child without its threads, and the child's
    next conversion of frames of the same size waits for them forever. Conversions here use one
    thread, so nothing half alive is inherited. In a fresh interpreter: pytest's own process may
    hold other libraries' threads by now, and must not fork."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _FORKED_DECODERS, str(VIDEOS[0])], capture_output=True, text=True,
                          timeout=150, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "hung [] exitcodes [0, 0, 0]", (done.stdout, done.stderr[-3000:])
