"""Decoding the real example clips, and the single test view used by `predict`."""

from __future__ import annotations

import numpy as np
import pytest

from froster_edge.video import VideoError, clip_view, read_frames, resize_center_crop, uniform_indices

from .helpers import shared_data


def test_example_clips_decode_with_labelled_counts(example_clips):
    for row in example_clips:
        frames = read_frames(row["path"])
        assert frames.dtype == np.uint8 and frames.shape[-1] == 3
        assert frames.shape[0] == int(row["decoded_frames"]), row["file"]
        assert frames.shape[1:3] == (int(row["height"]), int(row["width"])), row["file"]


def test_corrupt_and_missing_videos(tmp_path):
    with pytest.raises(VideoError, match="not found"):
        read_frames(tmp_path / "none.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoError, match="empty file"):
        read_frames(tmp_path / "empty.mp4")
    (tmp_path / "text.mp4").write_text("this is not a video\n" * 50)
    with pytest.raises(VideoError, match="text.mp4"):
        read_frames(tmp_path / "text.mp4")
    corrupt = shared_data("video_robustness") / "decord" / "corrupted.mp4"
    with pytest.raises(VideoError, match="corrupt"):
        read_frames(corrupt)


def test_uniform_indices_hand_computed():
    assert uniform_indices(8, 4).tolist() == [1, 3, 5, 7]
    assert uniform_indices(300, 8).tolist() == [18, 56, 93, 131, 168, 206, 243, 281]
    assert uniform_indices(2, 4).tolist() == [0, 0, 1, 1]  # short videos repeat frames


def test_resize_center_crop_and_view(example_clips):
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[:, 40:280] = 255  # the centre 240x240 square is white
    out = resize_center_crop(frame, 112)
    assert out.shape == (112, 112, 3) and out[:, 2:-2].min() == 255  # interpolation blurs the edge pixels
    frames = read_frames(example_clips[0]["path"])
    view = clip_view(frames, 8, 64)
    assert view.shape == (8, 3, 64, 64) and view.dtype == np.float32
    assert -2.0 < view.mean() < 2.5


# --- decoding every real clip and the robustness fixtures (../shared/data, skipped when absent) ---

import csv  # noqa: E402
from fractions import Fraction  # noqa: E402

from froster_edge.video import _decode_pyav, decode_video  # noqa: E402


def test_shared_action_clips_decode_with_labelled_counts():
    folder = shared_data("action_clips")
    with open(folder / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 15
    for row in rows:
        # Three frames only are converted, but every frame is decoded to count them.
        frames, info = decode_video(folder / row["file"], lambda n, fps: np.array([0, n // 2, n - 1]))
        assert info.num_frames == int(row["decoded_frames"]), row["file"]
        assert frames.shape == (3, int(row["height"]), int(row["width"]), 3), row["file"]
        assert abs(info.fps - float(row["fps"])) < 0.01, row["file"]
        if row["container"] == "m4v":  # raw MPEG-4 streams: no count in the container, PyAV counts
            assert info.backend == "pyav" and info.declared_frames == 0, row["file"]


def test_selected_frames_are_those_of_a_full_decode(example_clips):
    for row in example_clips[:1] + [r for r in example_clips if r["container"] == "m4v"][:1]:
        every = read_frames(row["path"])
        wanted = np.array([len(every) - 1, 0, 7, 7, len(every) // 3])
        picked, info = decode_video(row["path"], lambda n, fps, wanted=wanted: wanted)
        assert info.num_frames == len(every)
        np.testing.assert_array_equal(picked, every[wanted])


# (file, frames, (height, width)) as displayed; counts and sizes from the fixtures' PROVENANCE.md
ROBUST = [
    ("decord/video_0.mov", 3, (320, 568)),
    ("decord/video_90.mov", 3, (568, 320)),  # stored 568x320, rotated -90
    ("decord/video_180.mov", 3, (320, 568)),
    ("torchcodec/nasa_13013_rotated.mp4", 17, (480, 270)),  # stored 480x270, rotated 90
    ("torchcodec/nasa_13013.mp4", 325, (180, 320)),  # 13 s at 25 fps of stream 0 (of 6 streams)
    ("torchcodec/test_non_zero_start.mp4", 12, (112, 200)),
    ("torchcodec/discard_first_keyframe.mp4", 25, (64, 64)),  # header says 30
    ("torchcodec/h265_video.mp4", 10, (128, 128)),
    ("torchcodec/h264_10bits.mp4", 30, (200, 200)),
    ("torchcodec/h265_10bits.mp4", 30, (200, 200)),
    ("torchcodec/testsrc2_444_8bit_hevc.mp4", None, (241, 321)),
    ("torchcodec/testsrc2_odd_width_mpeg2.mp4", None, (80, 121)),
    ("torchcodec/testsrc2_vp8.webm", 30, (720, 1280)),
    ("torchcodec/testsrc2_mpeg4.mp4", 1, (64, 64)),
    ("torchcodec/sine_stereo_mp2.mpg", 100, (128, 128)),
    ("torchcodec/bt601_full_range.mp4", 60, (240, 320)),
    ("torchcodec/animated.gif", 4, (48, 64)),
    ("mmaction2/part_0_32frames.mp4", 32, (256, 340)),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name,count,size", ROBUST, ids=[r[0].split("/")[-1] for r in ROBUST])
def test_robustness_fixtures_decode(name, count, size):
    frames, info = decode_video(shared_data("video_robustness") / name)
    assert frames.shape[1:] == (*size, 3) and frames.dtype == np.uint8
    assert info.num_frames == len(frames) and (count is None or len(frames) == count)
    if name != "torchcodec/testsrc2_mpeg4.mp4":  # that one frame is black in every decoder
        assert frames.std() > 1.0  # real pictures, not a blank buffer


@pytest.mark.timeout(60)
def test_corrupt_fixture_is_a_video_error():
    # OpenCV stops silently after 28 of 50 frames; PyAV names the corruption.
    with pytest.raises(VideoError, match=r"corrupted\.mp4: corrupt video, decoding stopped after 28 frames"):
        decode_video(shared_data("video_robustness") / "decord" / "corrupted.mp4")


@pytest.mark.parametrize("name", ["decord/video_90.mov", "decord/video_180.mov", "torchcodec/nasa_13013_rotated.mp4"])
def test_rotation_applied_to_pyav_frames_as_opencv_does(name):
    path = shared_data("video_robustness") / name
    opencv, info = decode_video(path)
    assert info.backend == "opencv"  # OpenCV applies the display matrix itself
    pyav, _ = _decode_pyav(path, None)  # our rotation of PyAV's stored frames
    np.testing.assert_array_equal(pyav, opencv)


def _write_video(path, codec: str, n: int = 12, pix_fmt: str = "yuv420p", vfr: bool = False, gap_ms: int = 0) -> None:
    """n frames of flat grey 20*i (64x96), with PyAV's encoder for `codec`; `gap_ms` between
    frames in a 30 fps stream, or alternating 70/20 ms gaps with `vfr`."""
    av = pytest.importorskip("av")
    try:
        av.codec.Codec(codec, "w")
    except Exception:
        pytest.skip(f"this FFmpeg has no {codec} encoder")
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=30)
        stream.width, stream.height, stream.pix_fmt = 96, 64, pix_fmt
        if vfr or gap_ms:
            stream.codec_context.time_base = Fraction(1, 1000)
        t = 0
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(np.full((64, 96, 3), 20 * i, np.uint8), format="rgb24")
            if vfr or gap_ms:
                frame.pts, frame.time_base = t, Fraction(1, 1000)
                t += gap_ms or (20 if i % 2 else 70)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


@pytest.mark.timeout(60)
@pytest.mark.parametrize("codec,suffix,kw", [
    ("libvpx-vp9", ".webm", {}),
    ("libsvtav1", ".mp4", {}),  # OpenCV opens AV1, reports 12 frames and decodes none: PyAV does
    ("libx264", ".mp4", {"vfr": True}),
    ("libx264", ".mkv", {"pix_fmt": "yuv420p10le"}),
], ids=["vp9", "av1", "vfr", "10bit"])
def test_generated_codecs_decode_in_order(tmp_path, codec, suffix, kw):
    path = tmp_path / f"clip{suffix}"
    _write_video(path, codec, **kw)
    frames, info = decode_video(path)
    assert info.num_frames == 12 and frames.shape == (12, 64, 96, 3)
    np.testing.assert_allclose(frames.reshape(12, -1).mean(1), 20 * np.arange(12), atol=4)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("gap_ms,declared", [(25, 9), (40, 14)])
def test_containers_that_miscount_frames(tmp_path, gap_ms, declared):
    # Matroska at 30 fps with 25 ms (40 ms) gaps: OpenCV's count (duration x fps) says 9 (14) of 12.
    path = tmp_path / "clip.mkv"
    _write_video(path, "libx264", gap_ms=gap_ms)
    every, info = decode_video(path)
    assert (info.num_frames, info.declared_frames) == (12, declared)
    # Frames chosen from the container's count are chosen again from the decoded one.
    picked, info = decode_video(path, lambda n, fps: np.array([0, n - 1, n // 2]))
    assert info.num_frames == 12
    np.testing.assert_array_equal(picked, every[[0, 11, 6]])
    np.testing.assert_allclose(picked.reshape(3, -1).mean(1), [0, 220, 120], atol=4)


@pytest.mark.timeout(60)
def test_truncated_files_decode_a_prefix_or_fail_cleanly(example_clips, tmp_path):
    for row in example_clips:
        data = row["path"].read_bytes()
        full = read_frames(row["path"])
        for frac in (0.05, 0.5):
            cut = tmp_path / f"{frac}_{row['file']}"
            cut.write_bytes(data[: int(len(data) * frac)])
            try:
                frames = read_frames(cut)
            except VideoError as e:
                assert cut.name in str(e)
                continue
            assert 0 < len(frames) < len(full), row["file"]
            # The same first frames (PyAV may have decoded them: its YUV->RGB rounds differently),
            # except the last, which the cut may have left half-received.
            diff = np.abs(frames.astype(np.int16) - full[: len(frames)]).mean(axis=(1, 2, 3))
            assert diff[:-1].max(initial=0) < 1.0, (row["file"], diff)


def test_pyav_decodes_twice_rather_than_hold_a_long_video(example_clips, monkeypatch):
    import froster_edge.video as video

    raw = next(r for r in example_clips if r["container"] == "m4v")["path"]  # no count: PyAV decodes it
    wanted = lambda n, fps: np.array([n - 1, 0, n // 2])  # noqa: E731
    held, info = decode_video(raw, wanted)
    monkeypatch.setattr(video, "PYAV_HOLD_BYTES", 10_000)  # less than one frame
    twice, info2 = decode_video(raw, wanted)
    assert info == info2 and info.backend == "pyav"
    np.testing.assert_array_equal(twice, held)
