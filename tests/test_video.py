"""Decoding the real example clips, and the single test view used by `predict`."""

from __future__ import annotations

import numpy as np
import pytest

from froster_edge.video import VideoError, clip_view, read_frames, resize_center_crop, uniform_indices

from .conftest import shared_data


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
    assert out.shape == (112, 112, 3) and out[:, 2:-2].min() == 255  # bicubic blurs the outer pixel
    frames = read_frames(example_clips[0]["path"])
    view = clip_view(frames, 8, 64)
    assert view.shape == (8, 3, 64, 64) and view.dtype == np.float32
    assert -2.0 < view.mean() < 2.5
