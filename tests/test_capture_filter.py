"""A camera's reader converts and hands on only the frames sampling will take: the assembler must
then sample exactly what it would have sampled from every frame (jitter, stalls, bursts included)."""

from __future__ import annotations

import numpy as np
import pytest

from froster_edge.runtime.assembly import ClipAssembler
from froster_edge.runtime.pipeline import reader_filter


def capture_times(seed: int, n: int = 3000, fps: float = 30.0) -> list[float]:
    """Seconds since the start of n frames: jittered 30 fps with stalls of up to 3 s and bursts."""
    rng = np.random.default_rng(seed)
    gaps = rng.gamma(4.0, 1 / (4.0 * fps), n)
    gaps[rng.random(n) < 0.01] += rng.uniform(0.2, 3.0)  # the network stalls
    gaps[rng.random(n) < 0.05] = 0.0  # frames that arrive together
    return list(np.cumsum(gaps) - gaps[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("period_frames, fps", [(16.0, 30.0), (13.333, 25.0), (1.0, 30.0), (4.0, 8.0)])
def test_the_reader_filter_leaves_the_assembler_the_same_frames(seed, period_frames, fps):
    times = capture_times(seed, fps=fps)
    everything = ClipAssembler(4, 8, 2, period_frames, "floor", fps)
    expected = [i for i, t in enumerate(times) if everything.wants(t)]  # the assembler given every frame

    want = reader_filter(False, True, period_frames, "floor", fps)
    filtered = [i for i, t in enumerate(times) if want(t)]
    assembler = ClipAssembler(4, 8, 2, period_frames, "floor", fps)
    assert all(assembler.wants(times[i]) for i in filtered)  # it takes every frame it is given
    assert filtered == expected
    # and the sampled count follows the rate: about one frame per period over the stream
    assert len(expected) <= times[-1] / (period_frames / fps) + 1


def test_frame_sinks_get_every_frame_and_files_their_sampled_indices():
    assert reader_filter(True, True, 16.0, "floor", 30.0) is None and reader_filter(True, False, 16.0, "floor", 30.0) is None
    want = reader_filter(False, False, 16.0, "floor", 30.0)
    assert [i for i in range(50) if want(float(i))] == [0, 16, 32, 48]


def at_most(fps: float, times: list[float]) -> list[int]:
    """The frames a sink wanting `fps` a second keeps, by its own rule written out again: a frame at
    or after the next due time (a quarter period early counts) is kept, the next is due one period
    later, or one period after a frame that came more than a period late."""
    kept, due, period = [], float("-inf"), 1.0 / fps
    for i, t in enumerate(times):
        if t >= due - period / 4:
            kept.append(i)
            due = due + period if t - due < period else t + period
    return kept


@pytest.mark.parametrize("seed", [0, 1])
def test_a_rated_frame_sink_gets_its_frames_and_sampling_is_unchanged(seed):
    """Event clips at 10 fps on a 30 fps camera: the reader converts the sampled frames and the
    clips' 10 a second, not every frame; the assembler samples what it would from every frame, and
    the clips keep what they would keep from every frame."""
    from froster_edge.runtime.assembly import RateGate

    period_frames, fps, sink_fps = 16.0, 30.0, 10.0
    times = capture_times(seed, fps=fps)
    everything = ClipAssembler(4, 8, 2, period_frames, "floor", fps)
    sampled = [i for i, t in enumerate(times) if everything.wants(t)]
    now = iter(times)
    want = reader_filter(False, True, period_frames, "floor", fps, sink_fps=sink_fps, clock=lambda: next(now))
    filtered = [i for i, t in enumerate(times) if want(t)]
    assembler = ClipAssembler(4, 8, 2, period_frames, "floor", fps)
    assert [i for i in filtered if assembler.wants(times[i])] == sampled
    sink = RateGate(sink_fps)
    assert [i for i in filtered if sink.take(times[i])] == at_most(sink_fps, times)
    assert set(filtered) == set(sampled) | set(at_most(sink_fps, times))
    assert len(filtered) < 0.45 * len(times)  # about 10 + 2 of the 30 frames a second
