"""Action events: the segmentation checked against a naive reference on the decisions of a real run."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest

from froster_edge.errors import ConfigError
from froster_edge.runtime.options import CameraOptions, ClassifierOptions, RunOptions, SamplingOptions
from froster_edge.runtime.pipeline import Pipeline
from froster_edge.runtime.site.events import ActionEvent, EventOptions, EventSegmenter, JsonlEventSink, event_file_stem
from froster_edge.schema import validate

from .helpers import CLIPS


def sha(text: str) -> str:
    """The reference short hash: six hex digits of SHA-1."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:6]


class Collect:
    def __init__(self):
        self.items: list = []

    def emit(self, decision) -> None:
        self.items.append(decision)

    def event(self, event) -> None:
        self.items.append(ActionEvent(**{k: getattr(event, k) for k in event.__dataclass_fields__}))

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def decisions(tiny_bundle):
    """Decisions of a real run: two named cameras, every class's probability, no smoothing (more movement)."""
    options = RunOptions(cameras=[CameraOptions("pool", str(CLIPS / "mmaction2_test_cleaning_pool.mp4")),
                                  CameraOptions("gym", str(CLIPS / "stgcn_clean_and_jerk.mp4"))],
                         sampling=SamplingOptions(fps=8, hop=1), classifier=ClassifierOptions(smoothing="none"))
    sink = Collect()
    Pipeline(tiny_bundle, options, [sink]).run()
    assert {d.camera for d in sink.items} == {"pool", "gym"}
    return sink.items


def reference(decisions, enter: float, exit: float, n: int, m: int) -> list[dict]:
    """The rule written the plain way: per camera and label, walk the decisions by index."""
    out = []
    cameras = sorted({d.camera for d in decisions})
    for cam in cameras:
        seq = [d for d in decisions if d.camera == cam]
        labels = sorted({name for d in seq for name in d.classes})
        for label in labels:
            p = [float(d.probs[d.classes.index(label)]) for d in seq]
            i = 0
            while i < len(seq):
                # an entering run of n decisions >= enter starting at i
                if all(i + k < len(seq) and p[i + k] >= enter for k in range(n)):
                    start = i
                    j = i + n  # the event holds decisions start..j-1 so far
                    end = None
                    while j < len(seq):
                        if all(j + k < len(seq) and p[j + k] < exit for k in range(m)):
                            end = j
                            break
                        j += 1
                    last = end if end is not None else len(seq)
                    # an unfinished dip at the end of the run is not part of the event
                    while end is None and last > start + n and p[last - 1] < exit:
                        last -= 1
                    inside = p[start:last]
                    peak = int(np.argmax(inside))
                    end_at = end if end is not None else (last if last < len(seq) else len(seq) - 1)
                    out.append({"camera": cam, "label": label, "start_time": seq[start].time,
                                "start_media": seq[start].media_time, "end_time": seq[end_at].time,
                                "interrupted": end is None, "peak_score": inside[peak],
                                "peak_time": seq[start + peak].time, "mean_score": sum(inside) / len(inside)})
                    if end is None:
                        break
                    i = end + m
                else:
                    i += 1
    return sorted(out, key=lambda e: (e["camera"], e["label"], e["start_time"]))


def crossing_class(decisions) -> tuple[str, str, np.ndarray]:
    """The camera and class whose probability crosses its own median most often (that class goes
    on and off), with its observed values."""
    best = None
    for cam in sorted({d.camera for d in decisions}):
        seq = [d for d in decisions if d.camera == cam]
        probs = np.array([d.probs for d in seq])  # (decisions, classes)
        for c in range(probs.shape[1]):
            p = probs[:, c]
            crossings = int(np.sum(np.diff(np.sign(p - np.median(p))) != 0))
            if best is None or crossings > best[0]:
                best = (crossings, cam, seq[0].classes[c], np.unique(p))
    assert best is not None and best[0] >= 4, best
    return best[1], best[2], best[3]


def thresholds(decisions) -> tuple[float, float]:
    """Enter/exit between observed values of crossing_class: that class goes on and off."""
    values = crossing_class(decisions)[2]

    def between(q: float) -> float:
        k = int(len(values) * q)
        return float((values[k] + values[k + 1]) / 2)

    enter, exit = between(0.6), between(0.35)
    assert exit < enter
    return enter, exit


@pytest.mark.parametrize("n, m", [(1, 1), (2, 2), (3, 1), (1, 3)])
def test_segmentation_matches_the_reference_on_a_real_run(decisions, n, m):
    enter, exit = thresholds(decisions)
    sink = Collect()
    seg = EventSegmenter(EventOptions(enter=enter, exit=exit, enter_decisions=n, exit_decisions=m), [sink])
    for d in decisions:
        seg.emit(d)
    seg.close()
    starts = [e for e in sink.items if e.phase == "start"]
    ends = [e for e in sink.items if e.phase == "end"]
    assert sorted(e.id for e in starts) == sorted(e.id for e in ends)  # every event starts and ends once
    got = sorted(ends, key=lambda e: (e.camera, e.label, e.start_time))
    want = reference(decisions, enter, exit, n, m)
    assert len(want) >= 2 and any(not w["interrupted"] for w in want)
    assert [(e.camera, e.label, e.start_time, e.start_media, e.end_time, e.interrupted, e.peak_time) for e in got] == \
        [(w["camera"], w["label"], w["start_time"], w["start_media"], w["end_time"], w["interrupted"], w["peak_time"])
         for w in want]
    np.testing.assert_allclose([e.peak_score for e in got], [w["peak_score"] for w in want], rtol=1e-9)
    np.testing.assert_allclose([e.mean_score for e in got], [w["mean_score"] for w in want], rtol=1e-9)
    for e in starts:  # a start is announced with the entering run's figures, the end open
        assert e.end_time is None and e.clip is None and not e.interrupted


def test_ids_and_file_names_sort_by_time_and_events_go_to_jsonl(decisions, tmp_path):
    enter, exit = thresholds(decisions)
    path = tmp_path / "events.jsonl"
    seg = EventSegmenter(EventOptions(enter=enter, exit=exit), [JsonlEventSink(path)])
    for d in decisions:
        seg.emit(d)
    seg.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines and {line["phase"] for line in lines} == {"start", "end"}
    ends = [e for e in lines if e["phase"] == "end"]
    for e in ends:
        assert e["clip"] is None and e["snapshot"] is None and e["error"] is None  # no clips sink: no files named
        assert e["id"].startswith(e["camera"] + "-") and e["end_time"] >= e["start_time"]
    by_time = sorted(ends, key=lambda e: e["start_time"])
    stems = [event_file_stem(ActionEvent(**e)) for e in by_time]
    for a, b, sa, sb in zip(by_time, by_time[1:], stems, stems[1:], strict=False):
        if b["start_time"] - a["start_time"] > 0.002:  # apart by more than the names' millisecond
            assert sa < sb
    assert event_file_stem(ActionEvent("x", "back door", "Clean & Jerk", "start", 0.25, 0.0, None, None, 0.9, 0.9,
                                       0.25)) == f"19700101T000000.250-back-door-clean-jerk-{sha('Clean & Jerk')}"


def test_labels_option_limits_the_classes_and_bad_thresholds_are_refused(decisions):
    enter, exit = thresholds(decisions)
    sink = Collect()
    seg = EventSegmenter(EventOptions(enter=0.0, exit=0.0, labels=("yoga",)), [sink])
    for d in decisions:
        seg.emit(d)
    seg.close()
    assert sink.items and {e.label for e in sink.items} == {"yoga"}  # enter 0: yoga is always "on"
    assert all(e.interrupted for e in sink.items if e.phase == "end")
    with pytest.raises(ConfigError, match=r"^site.yaml: events: exit \(0.5\) must not be above enter \(0.3\)$"):
        validate(EventOptions, {"enter": 0.3, "exit": 0.5}, "site.yaml: events")
    with pytest.raises(ConfigError, match="^x: enter_decisions: must be greater than or equal to 1, not 0$"):
        validate(EventOptions, {"enter_decisions": 0}, "x")


def test_names_that_differ_only_in_punctuation_or_script_get_their_own_ids_files_and_topics():
    from froster_edge.runtime.site.mqtt import Topics

    labels = ["Jump!", "jump?", "jump", "прыжок", "бег", "跳躍", "走る", "clean & jerk", "clean and jerk"]
    events = [ActionEvent(f"cam-{slug}", "cam", label, "start", 0.25, 0.0, None, None, 0.9, 0.9, 0.25)
              for slug, label in enumerate(labels)]
    stems = [event_file_stem(e) for e in events]
    topics = [Topics("site").action("cam", label) for label in labels]
    assert len(set(stems)) == len(labels) and len(set(topics)) == len(labels)
    assert all(re.fullmatch(r"[0-9T.]+-cam-[a-z0-9-]+", s) for s in stems)  # still safe in file names
    assert stems[2].endswith("-cam-jump") and stems[8].endswith("-cam-clean-and-jerk")  # plain names stay plain
    assert stems[0].endswith(f"-jump-{sha('Jump!')}") and stems[3].endswith(f"-x-{sha('прыжок')}")
    assert topics[2] == "site/cam/action/jump" and topics[0] == f"site/cam/action/jump_{sha('Jump!')}"
