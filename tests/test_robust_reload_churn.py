"""The attack on memory with reloads (issue 31): a site reloaded with new cameras again and again
(each reload adds one camera and removes the one before) must stay bounded: the run's per-stream
counters and latency windows and the event segmenter's per-(camera, label) counts of removed
cameras are folded into totals, and the totals still add up; the archive lets a removed stream's
newest frame go."""

from __future__ import annotations

import threading

from froster_edge.bundle import manifest as mf
from froster_edge.runtime.options import CameraOptions, ClassifierOptions, RunOptions, SamplingOptions
from froster_edge.runtime.pipeline import Pipeline
from froster_edge.runtime.site.archive import Archive, ArchiveOptions
from froster_edge.runtime.site.events import EventOptions, EventSegmenter
from froster_edge.runtime.stats import REMOVED_KEPT

from .helpers import CLIPS, Collect

CLIP = CLIPS / "stgcn_clean_and_jerk.mp4"
CYCLES = 20  # cameras added and removed, one after another


def camera(name: str) -> CameraOptions:
    return CameraOptions(name, str(CLIP), realtime=True, loop=True)


def test_cameras_added_and_removed_many_times_keep_the_stats_bounded_and_adding_up(tiny_bundle, tmp_path):
    options = RunOptions(cameras=[camera("yard")], sampling=SamplingOptions(fps=30, hop=1),
                         classifier=ClassifierOptions(smoothing="none"))
    decisions = Collect()
    segmenter = EventSegmenter(EventOptions(enter=0.0, exit=0.0, enter_decisions=1), [])  # every class starts one
    stop = threading.Event()
    model = mf.read_manifest(tiny_bundle)["model"]
    archive = Archive(ArchiveOptions(file=tmp_path / "site.db"), model["fingerprint"], int(model["embed_dim"]))
    pipeline = Pipeline(tiny_bundle, options, [decisions, segmenter, archive], [archive], stop=stop)
    churn = {"added": 0, "seen": 0}
    sizes: list[tuple[int, int, int]] = []
    frames: list[int] = []  # streams whose newest frame the archive holds

    def reload() -> None:  # on the decision thread, as SiteReloader.poll is: one reload per new decision
        if len(decisions.decisions) == churn["seen"]:
            return
        churn["seen"] = len(decisions.decisions)
        if churn["added"] and not any(d.camera == f"cam{churn['added']}" for d in decisions.decisions[-20:]):
            return  # the newest camera has not decided yet: let it, so it has counts to fold
        if churn["added"]:
            pipeline.remove_camera(f"cam{churn['added']}")
        if churn["added"] == CYCLES:
            stop.set()
            return
        churn["added"] += 1
        assert pipeline.add_camera(camera(f"cam{churn['added']}"))
        sizes.append((len(pipeline.stats.streams), len(pipeline.stats.stream_stages), len(segmenter.counts)))
        frames.append(len(archive._frames))

    pipeline.on_idle = reload
    stats = pipeline.run().to_dict()
    archive.close()
    assert churn["added"] == CYCLES
    deciding = {d.camera for d in decisions.decisions}
    assert len(deciding) > CYCLES // 2  # most cameras decided before they were removed (counts to fold)
    classes = len(pipeline.classifier.table.names)
    # bounded: yard, the newest camera and the REMOVED_KEPT newest removed ones, whatever the churn
    assert max(s for s, _, _ in sizes) <= 2 + REMOVED_KEPT and max(s for _, s, _ in sizes) <= 2 + REMOVED_KEPT
    assert max(c for _, _, c in sizes) <= 2 * classes  # yard's and the newest camera's labels only
    assert max(frames) <= 2 and len(archive._frames) <= 2  # yard's and the newest camera's frame only
    assert len(stats["streams"]) == 1 + REMOVED_KEPT and stats["removed_cameras"]["cameras"] == CYCLES - REMOVED_KEPT
    # the totals add up: per stream + removed == the run's, and each camera's decisions are its own
    per_camera = {}
    for d in decisions.decisions:
        per_camera[d.camera] = per_camera.get(d.camera, 0) + 1
    shown = {s["camera"]: s["decisions"] for s in stats["streams"]}
    assert {c: per_camera.get(c, 0) for c in shown} == shown
    assert sum(shown.values()) + stats["removed_cameras"]["decisions"] == stats["decisions"] == len(decisions.decisions)
    assert [s["stream"] for s in stats["streams"]] == [0, *range(CYCLES - REMOVED_KEPT + 1, CYCLES + 1)]
    assert segmenter.started == sum(segmenter.counts.values()) + segmenter.removed_started
    assert segmenter.removed_started == classes * len(deciding - {"yard"})  # enter 0: every class, once a camera
