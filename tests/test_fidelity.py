"""The same frames from training to the camera, checked against FROSTER's decoder re-stated here.

`reference_clip` re-states the arithmetic of the reference's slowfast/datasets/decoder.py
(pyav backend, FROSTER's test config USE_OFFSET_SAMPLING: True) in exact arithmetic, for both of
its container cases. Real clips are re-timed to 30, 25, 24 and 29.97 fps with OpenCV, each frame
carrying its index as a flat colour in its centre, so every stage's output says which frames it
took: the training sampler at a given start, the eval views, the calibration clips and the
runtime on the file, read as fast as possible and at its own pace.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from fractions import Fraction

import cv2
import numpy as np
import pytest
import torch

from froster_edge.calibration.clips import sample_clips
from froster_edge.config import StudentConfig
from froster_edge.data import VideoDataset, VideoItem
from froster_edge.runtime.options import CaptureOptions, ClassifierOptions, RunOptions, SamplingOptions
from froster_edge.runtime.pipeline import Pipeline
from froster_edge.sampling import SamplingConfig, SamplingSpec
from froster_edge.video import CLIP_MEAN, CLIP_STD, read_frames, stream_timing

from .helpers import CLASSES, CLIPS, SHARED_DATA, TINY_MODEL, Collect

av = pytest.importorskip("av", reason="PyAV (the reference decoder's backend) is not installed: pip install av")

FPS = [30.0, 25.0, 24.0, 30000 / 1001]
LEVEL = 36  # colour step of the index code: 8 levels a channel, 512 indices


def reference_clip(count: int, fps: float, timed: bool, *, start: float | None = None, view: int = 0,
                   views: int = 1, T: int = 8, stride: int = 16, pts_per_frame: float = 512.0) -> list[int]:
    """FROSTER's decoder: the frames of one clip (at `start`, or test view `view` of `views`).

    timed (pyav_decode with a stream duration): clip_sizes = ceil(stride (T-1) fps/30) frames
    from start in [0, frames - size] (views at size * view / views), decoded by pts from
    int(start * pts/frame) to int(end * pts/frame) plus the one frame after (buffer_size 0), then
    decode()'s temporal_sampling(linspace(0, stride T fps/30 - 1, T)) clamped to those frames.
    untimed (all frames decoded): linspace(s, s + stride T fps/30 - 1, T) clamped, s in
    [0, frames - that size], views at view * floor(range / (views - 1)) (use_offset).
    """
    fps = Fraction(fps).limit_denominator(100000)
    size = max(Fraction(1), Fraction(stride * T) / 30 * fps)  # decode(): clip_sizes
    if timed:
        selective = max(1, math.ceil(Fraction(stride * (T - 1)) / 30 * fps))
        top = max(count - selective, 0)
        s = Fraction(start) if start is not None else Fraction(top * view, views)
        start_pts, end_pts = int(s * pts_per_frame), int((s + selective - 1) * pts_per_frame)
        frames = []
        for k in range(count):  # pyav_decode_stream
            pts = k * pts_per_frame
            if pts < start_pts:
                continue
            frames.append(k)
            if pts > end_pts:
                break
        local_start, end = Fraction(0), size - 1  # get_start_end_idx(len(frames), size, 0, 1)
        return [frames[min(len(frames) - 1, int(local_start + (end - local_start) * i / (T - 1)))] for i in range(T)]
    top = max(count - size, Fraction(0))
    if start is not None:
        s = Fraction(start)
    else:
        s = Fraction(math.floor(top / 2)) if views == 1 else view * math.floor(top / (views - 1))
    return [min(count - 1, int(s + (size - 1) * i / (T - 1))) for i in range(T)]


def test_our_reference_rule_is_the_decoder_for_both_containers():
    spec = SamplingConfig().spec(8)
    rng = np.random.default_rng(0)
    for timed in (True, False):
        for fps in FPS + [12.0, 60.0, 0.0]:
            for count in (1, 2, 7, 40, 90, 111, 112, 113, 127, 128, 129, 164, 300, 1000):
                f = fps or 30.0  # no fps: the reference's own
                pts = 512.0 if timed else 0.0  # the container's pts per frame (mp4 at 30 fps: 15360 / 30)
                for views in (1, 2, 3):
                    want = [reference_clip(count, f, timed, view=v, views=views) for v in range(views)]
                    assert spec.view_indices(count, fps, views, pts).tolist() == want, (timed, fps, count, views)
                for _ in range(20):
                    start = spec.train_start(count, fps, rng, pts)
                    assert spec.clip(count, fps, start, pts).tolist() == reference_clip(count, f, timed, start=start)
    # a start just past a whole frame: the decoder's pts truncation keeps the frame before
    assert spec.clip(164, 30.0, 32.00002, 512.0).tolist() == reference_clip(164, 30.0, True, start=32.00002)
    # the method doc's numbers: 30 fps, both container cases
    assert spec.view_indices(300, 30.0, 1, True)[0].tolist() == [0, 18, 36, 54, 72, 90, 108, 112]
    assert spec.clip(300, 30.0, 0.0, False).tolist() == [0, 18, 36, 54, 72, 90, 108, 127]
    assert spec.spacing(30.0) == pytest.approx(127 / 7) and 30.0 / spec.spacing(30.0) == pytest.approx(1.65, abs=0.01)
    assert spec.clip(40, 30.0, 0.0, False).tolist() == [0, 18, 36, 39, 39, 39, 39, 39]  # short: the last frame repeats


# --- real clips re-timed, each frame saying its index ------------------------------------------


def code_color(i: int) -> np.ndarray:
    return np.array([i // 64, (i // 8) % 8, i % 8]) * LEVEL + 3


def read_code(rgb: np.ndarray) -> int:
    """The index in the centre of an RGB frame (uint8 or float 0..255)."""
    h, w = rgb.shape[:2]
    px = np.asarray(rgb[h // 2 - 2:h // 2 + 3, w // 2 - 2:w // 2 + 3], np.float64).reshape(-1, 3).mean(0)
    d = np.clip(np.round((px - 3) / LEVEL), 0, 7).astype(int)
    return int(d[0] * 64 + d[1] * 8 + d[2])


def codes(frames: np.ndarray) -> list[int]:
    return [read_code(f) for f in frames]


def unnormalize(clip: torch.Tensor) -> np.ndarray:
    """A CLIP-normalised (T, 3, S, S) clip back to RGB 0..255 (T, S, S, 3)."""
    x = clip.numpy().transpose(0, 2, 3, 1)
    return (x * CLIP_STD + CLIP_MEAN) * 255


@pytest.fixture(scope="module")
def real_frames() -> np.ndarray:
    """A real clip's frames at 160 x 120, a flat code patch in the middle of each written later."""
    source = SHARED_DATA / "action_clips" / "stgcn_clean_and_jerk.mp4"
    frames = read_frames(source if source.is_file() else CLIPS / "stgcn_clean_and_jerk.mp4")
    return np.stack([cv2.resize(f, (160, 120), interpolation=cv2.INTER_AREA) for f in frames])


def write_coded(real_frames: np.ndarray, path, fps: float, count: int | None = None) -> None:
    """The real clip re-timed to `fps` (its frames played at that rate), index codes in the centre."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (160, 120))
    assert writer.isOpened()
    for i in range(count or len(real_frames)):
        frame = real_frames[i % len(real_frames)].copy()
        frame[36:84, 40:120] = code_color(i)  # 80 x 48: the centre of every crop, jittered or not
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def stream_facts(path) -> tuple[int, float, bool, float]:
    """frames, fps, whether the container reports a duration, pts per frame (PyAV, as the reference)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        count = sum(1 for _ in c.decode(s))
        timed = s.duration is not None
        pts = s.duration / s.frames if timed and s.frames else 512.0
        return count, float(s.average_rate), timed, pts


@pytest.fixture(scope="module")
def coded_videos(real_frames, tmp_path_factory) -> dict:
    """{(fps, "mp4" | "mkv"): path}: with a stream duration (mp4) and without (mkv, remuxed)."""
    root = tmp_path_factory.mktemp("coded")
    out = {}
    for fps in FPS:
        mp4 = root / f"clip_{fps:.2f}.mp4"
        write_coded(real_frames, mp4, fps, 200)
        out[fps, "mp4"] = mp4
        if shutil.which("ffmpeg"):
            mkv = mp4.with_suffix(".mkv")
            subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", str(mp4), "-c", "copy", str(mkv)], check=True)
            out[fps, "mkv"] = mkv
    return out


def test_the_codes_survive_decoding(coded_videos):
    frames = read_frames(coded_videos[25.0, "mp4"])
    assert codes(frames) == list(range(200))
    assert stream_timing(coded_videos[25.0, "mp4"]) > 0
    if (25.0, "mkv") in coded_videos:
        assert not stream_timing(coded_videos[25.0, "mkv"])


@pytest.mark.parametrize("fps", FPS)
def test_training_eval_and_calibration_take_the_reference_frames(coded_videos, fps):
    T = 4
    spec = SamplingConfig().spec(T)
    for kind in ("mp4", "mkv"):
        if (fps, kind) not in coded_videos:
            continue  # no ffmpeg to remux: the mp4 case only
        path = coded_videos[fps, kind]
        count, rate, timed, pts = stream_facts(path)
        assert timed == (kind == "mp4") == (stream_timing(path) > 0)

        def ref(count=count, rate=rate, timed=timed, pts=pts, **kw):
            return reference_clip(count, rate, timed, T=T, pts_per_frame=pts, **kw)

        # eval: the 3 test views
        views = VideoDataset([VideoItem(path, 0)], num_frames=T, image_size=64, train=False, views=3)[0]["frames"]
        assert [codes(unnormalize(v)) for v in views] == [ref(view=v, views=3) for v in range(3)], (fps, kind)
        # training: the sampler at its (seeded) start; the flat code survives jitter, crop and flip
        ds = VideoDataset([VideoItem(path, 0)], num_frames=T, image_size=64, train=True, seed=7)
        temporal = np.random.default_rng(int(np.random.default_rng([7, 0, 0]).integers(2**63)))
        start = spec.train_start(count, rate, temporal, stream_timing(path))
        assert codes(unnormalize(ds[0]["frames"][0])) == ref(start=start), (fps, kind)
        # calibration: test views, and seeded random starts
        gate = sample_clips([VideoItem(path, 0)], spec, 64, 3, seed=0, clips_per_video=3, random_start=False)
        assert [codes(c) for c in gate.frames] == [ref(view=v, views=3) for v in range(3)]
        calib = sample_clips([VideoItem(path, 0)], spec, 64, 2, seed=5, clips_per_video=2)
        rng = np.random.default_rng(5)
        rng.permutation(1)
        draws = np.random.default_rng(int(rng.integers(2**63)))
        want = [ref(start=spec.train_start(count, rate, draws, stream_timing(path))) for _ in range(2)]
        assert [codes(c) for c in calib.frames] == want


def runtime_clips(bundle, path, realtime: bool = False, max_decisions: int | None = None):
    """(decisions, the T frame indices of each clip the encoder got) of `run` on one file."""
    sink, seen = Collect(), []
    options = RunOptions(sources=[str(path)], sampling=SamplingOptions(hop=2), max_decisions=max_decisions,
                         capture=CaptureOptions(realtime=realtime), classifier=ClassifierOptions(smoothing="none"))
    pipeline = Pipeline(bundle, options, [sink])
    pipeline.on_batch = lambda batch: seen.append(codes(batch[0]))
    pipeline.run()
    assert not pipeline.errors()
    return sink.decisions, seen


@pytest.mark.parametrize("fps", FPS)
def test_the_runtime_takes_the_reference_frames(tiny_bundle, coded_videos, fps):
    """The first decision's clip is eval's first view (the reference's selective window of an mp4:
    its last frame clamped), decision j's after it the clip starting at j x hop x spacing, read fast
    or paced."""
    T, hop = 4, 2
    path = coded_videos[fps, "mp4"]
    count, rate, timed, pts = stream_facts(path)
    spacing = (Fraction(16 * T, 30) * Fraction(rate).limit_denominator(100000) - 1) / (T - 1)
    want = []
    while (first := int(len(want) * hop * spacing)) + (T - 1) * spacing < count:
        want.append(reference_clip(count, rate, False, start=len(want) * hop * spacing, T=T))
    assert timed
    eval_first = reference_clip(count, rate, True, view=0, views=3, T=T, pts_per_frame=pts)
    assert eval_first[:-1] == want[0][:-1] and eval_first[-1] < want[0][-1]  # 7 of 8 frames equal at T = 8
    want[0] = eval_first
    decisions, seen = runtime_clips(tiny_bundle, path)
    assert seen == want and [d.frame for d in decisions] == [w[-1] for w in want] and first >= 0
    assert not any(d.short for d in decisions)
    decisions, seen = runtime_clips(tiny_bundle, path, realtime=True, max_decisions=2)
    assert seen == want[:2]


def test_a_file_shorter_than_one_clip_gets_one_short_decision(tiny_bundle, real_frames, tmp_path):
    path = tmp_path / "short.mp4"
    write_coded(real_frames, path, 30.0, 40)  # the first decision needs frame 63 at T = 4
    decisions, seen = runtime_clips(tiny_bundle, path)
    assert len(decisions) == 1 and decisions[0].short
    assert seen == [reference_clip(40, 30.0, False, start=0, T=4)] == [[0, 21, 39, 39]]  # the last frame repeats
    from .helpers import cli

    proc = cli("run", "--bundle", str(tiny_bundle), "--source", str(path), "--jsonl")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 1 and lines[0]["short"] is True and lines[0]["frame"] == 39
    normal = cli("run", "--bundle", str(tiny_bundle), "--source", str(CLIPS / "stgcn_clean_and_jerk.mp4"), "--jsonl")
    assert all(json.loads(line)["short"] is False for line in normal.stdout.splitlines())


def test_a_live_source_never_decides_on_a_short_clip():
    from froster_edge.runtime.assembly import ClipAssembler

    live = ClipAssembler(4, 2, 2, 5.0, scale=10.0)  # a camera: no short-file rule
    for i in range(3):
        if live.wants(i * 0.5):
            live.add(np.zeros((2, 2, 3), np.uint8))
    assert live.finish(15, 10.0) is None


def test_a_bundle_of_a_student_with_another_spacing_runs_at_it(real_frames, tmp_path):
    from froster_edge.export.bundle import export_bundle
    from froster_edge.export.options import ExportOptions
    from froster_edge.model.checkpoint import load_student, save_student
    from froster_edge.model.factory import create_student

    torch.manual_seed(0)
    cfg = StudentConfig(model_name=str(TINY_MODEL), pretrained=None, num_frames=4, image_size=64,
                        sampling=SamplingConfig(stride=8))
    save_student(create_student(cfg), tmp_path / "student")
    student = load_student(tmp_path / "student")
    assert student.config.sampling.stride == 8  # saved with the student
    export_bundle(student, tmp_path / "bundle", CLASSES, [CLIPS / "stgcn_clean_and_jerk.mp4"],
                  ExportOptions(streams=1, max_parity_clips=1))
    recorded = json.loads((tmp_path / "bundle" / "manifest.json").read_text())["preprocessing"]["sampling"]
    assert (recorded["window"], recorded["stride"], recorded["rule"]) == (32.0, 8.0, "reference")
    path = tmp_path / "coded.mp4"
    write_coded(real_frames, path, 25.0, 60)
    _, seen = runtime_clips(tmp_path / "bundle", path)
    spacing = (Fraction(8 * 4, 30) * 25 - 1) / 3  # 8.56 frames apart, not the default 17.4
    assert [int(k * spacing) for k in range(4)] == [0, 8, 17, 25]  # the ticks
    _, _, timed, pts = stream_facts(path)
    assert seen[0] == reference_clip(60, 25.0, timed, view=0, views=3, T=4, stride=8, pts_per_frame=pts) == [0, 8, 17, 20]
    assert seen[1:] == [reference_clip(60, 25.0, False, start=j * 2 * spacing, T=4, stride=8)
                        for j in range(1, len(seen))]


def test_old_configs_and_imported_checkpoints_read_as_the_reference(tmp_path):
    from froster_edge.bundle.manifest import sampling_spec

    assert SamplingSpec.from_manifest(None, 8) == SamplingConfig().spec(8)
    assert sampling_spec({"preprocessing": {"num_frames": 4, "sampling": {"stride": 16, "reference_fps": 30.0}}}) \
        == SamplingConfig().spec(4)
    assert StudentConfig().sampling_spec() == SamplingConfig().spec(8)
    even = SamplingConfig(rule="even").spec(8)  # the earlier rule, by name
    assert (even.rounding, even.short, even.placement) == ("nearest", "spread", "even")
    assert SamplingSpec.from_manifest(even.to_dict(), 8) == even


def test_eval_of_an_imported_froster_checkpoint_uses_the_reference_frames(coded_videos, tiny_model_cfg, tmp_path):
    """The imported student's eval features equal its video features on the frames computed here."""
    from froster_edge.evaluation.core import encode_videos
    from froster_edge.model.checkpoint import load_student
    from froster_edge.model.froster_import import import_froster
    from froster_edge.video import normalize_clip, resize_center_crop

    from .helpers import release_checkpoint

    torch.save(release_checkpoint(tiny_model_cfg)[0], tmp_path / "froster.pyth")
    student = load_student(import_froster(tmp_path / "froster.pyth", tmp_path / "imported", num_frames=4)).eval()
    assert student.config.sampling_spec() == SamplingConfig().spec(4) and student.config.activation == "quick_gelu"
    path = coded_videos[30000 / 1001, "mp4"]
    size = student.model_cfg["vision_cfg"]["image_size"]
    encoded = encode_videos(student, [VideoItem(path, 0)], views=3, progress=False)
    count, rate, timed, pts = stream_facts(path)
    frames = read_frames(path)
    total = 0
    for v in range(3):
        idx = reference_clip(count, rate, timed, view=v, views=3, T=4, pts_per_frame=pts)
        clip = normalize_clip(np.stack([resize_center_crop(frames[i], size) for i in idx]))
        with torch.no_grad():
            total = total + student.encode_video(torch.from_numpy(clip)[None]).video[0]
    torch.testing.assert_close(encoded.features[0], total, atol=1e-5, rtol=1e-5)


def test_the_first_decision_on_an_mp4_is_evals_first_view_at_t8():
    """At the paper's T = 8, 30 fps: the ticks are 0 18 ... 108 127, the reference's first view
    0 18 ... 108 112; the runtime decides on the latter when frame 112 arrives, then on the ticks."""
    from froster_edge.runtime.assembly import ClipAssembler

    spec = SamplingConfig().spec(8)
    view = reference_clip(300, 30.0, True, view=0, views=3)
    assert view == [0, 18, 36, 54, 72, 90, 108, 112]
    assembler = ClipAssembler(8, 1, 1, spec.spacing(30.0), short=spec, first=spec.clip(300, 30.0, 0.0, True))
    decided = []
    for i in range(150):
        crop = np.full((1, 1, 3), i % 256, np.uint8)
        sampled = assembler.wants(i)
        if sampled or assembler.keeps(i):
            assembler.keep(i, crop)
        for clip in (assembler.take_first(i), assembler.add(crop) if sampled else None):
            if clip is not None:
                decided.append((i, clip[:, 0, 0, 0].tolist()))
    assert decided == [(112, view), (145, [18, 36, 54, 72, 90, 108, 127, 145])]
