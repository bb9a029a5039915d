"""The web view's parts in-process: options and the token rule, the hub (frames to JPEG only when
watched, decisions and the table they were made with), and the vocabulary's refusals and writes
on a copy of the tiny bundle (its table compared with one built here from the prompts)."""

from __future__ import annotations

import math
import shutil
import time

import cv2
import numpy as np
import pytest

from froster_edge.bundle import manifest as mf
from froster_edge.bundle.labels import load_labels
from froster_edge.bundle.relabel import BundleTextEncoder, relabel_bundle, remove_classes
from froster_edge.errors import ConfigError, FrosterError
from froster_edge.prompts import ClassText, prompts_for
from froster_edge.runtime.sinks import Decision
from froster_edge.runtime.site.web.live import Hub
from froster_edge.runtime.site.web.options import HttpOptions, parse_listen, resolve_token
from froster_edge.runtime.site.web.vocabulary import Vocabulary, VocabularyError
from froster_edge.runtime.sources import Frame
from froster_edge.schema import validate

from .helpers import CLIPS

TOKEN = "t" * 24


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:8080", ("127.0.0.1", 8080)), (":9000", ("127.0.0.1", 9000)), ("9000", ("127.0.0.1", 9000)),
    ("0.0.0.0:80", ("0.0.0.0", 80)), ("[::1]:8080", ("::1", 8080)), ("localhost:0", ("localhost", 0)),
])
def test_parse_listen(text, expected):
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["host:port", "127.0.0.1:70000", "[::1]8080", "", "::1:80", "a b:80", "localhost"])
def test_parse_listen_refuses(text):
    with pytest.raises(ConfigError):
        parse_listen(text)


def test_token_rule(monkeypatch):
    monkeypatch.delenv("FROSTER_EDGE_HTTP_TOKEN", raising=False)
    assert resolve_token(HttpOptions()).token is None  # loopback: no token needed
    with pytest.raises(ConfigError, match="reachable from other machines"):
        resolve_token(HttpOptions(host="0.0.0.0"))
    assert resolve_token(HttpOptions(host="0.0.0.0", token=TOKEN)).token == TOKEN
    monkeypatch.setenv("FROSTER_EDGE_HTTP_TOKEN", TOKEN)
    assert resolve_token(HttpOptions(host="192.168.1.5")).token == TOKEN
    assert resolve_token(HttpOptions(host="::1")).token == TOKEN  # a token given is a token required
    for env in (" " * 16, "short", "sixteen-chars-but with-a-space", "x" * 15):  # the environment: the same rule
        monkeypatch.setenv("FROSTER_EDGE_HTTP_TOKEN", env)
        with pytest.raises(ConfigError, match=r"^\$FROSTER_EDGE_HTTP_TOKEN: a token must be at least 16 characters without spaces"):
            resolve_token(HttpOptions(host="0.0.0.0"))
    for bad, reason in [({"port": "8080x"}, "port: must be an integer, not '8080x'"),
                        ({"port": 70000}, "port: must be less than or equal to 65535, not 70000"),
                        ({"token": 1234567890123456789}, "token: must be a text$"),
                        ({"token": " " * 16}, "token: a token must be at least 16"),
                        ({"token": "short"}, "token: a token must be at least 16"),
                        ({"host": "0.0.0.0 "}, "host: must not start or end with whitespace"),
                        ({"stream_fps": "fast"}, "stream_fps: must be a number"),
                        ({"recent": True}, "recent: must be an integer, not True"),
                        ({"max_request_bytes": -1}, "max_request_bytes: must be greater than or equal to 1, not -1")]:
        with pytest.raises(ConfigError, match=f"^site.yaml: http: {reason}") as e:  # a site file's http: section, as parsed
            validate(HttpOptions, bad, "site.yaml: http")
        assert "short" not in str(e.value)  # a token is never echoed


def _frame(image: np.ndarray, index: int = 0) -> Frame:
    return Frame(index, float(index), index / 30, time.monotonic(), time.time(), image)


def _decision(stream: int, label: str, top: list[tuple[str, float]]) -> Decision:
    return Decision(stream, f"cam{stream}", 10, 1.0, time.time(), label, top[0][1], top, {"encode": 1.0})


def test_hub_encodes_only_newer_frames_once_scaled_down():
    hub = Hub(["a", "b"], HttpOptions(stream_width=160, jpeg_quality=90))
    assert hub.jpeg(0) is None  # nothing captured yet
    rng = np.random.default_rng(0)
    image = np.zeros((240, 320, 3), np.uint8)
    image[:, :160] = (200, 30, 30)  # left half red (RGB), right half blue
    image[:, 160:] = (30, 30, 200)
    hub.frame(0, _frame(image), None)
    number, data = hub.jpeg(0)
    again = hub.jpeg(0)  # a second client asking for the same frame shares the encoding
    assert again == (number, data) and hub.frames_encoded == 1
    assert hub.jpeg(0, after=number) is None  # nothing newer
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert bgr.shape == (120, 160, 3)  # scaled to the width, aspect kept
    assert bgr[60, 20, 2] > 150 and bgr[60, 20, 0] < 80  # red stays red (RGB in, BGR decoded)
    assert bgr[60, 140, 0] > 150 and bgr[60, 140, 2] < 80
    small = rng.integers(0, 255, (60, 80, 3), np.uint8)
    hub.frame(0, _frame(small, 1), None)
    n2, data2 = hub.jpeg(0, after=number)
    assert n2 == number + 1 and cv2.imdecode(np.frombuffer(data2, np.uint8), cv2.IMREAD_COLOR).shape == (60, 80, 3)
    assert hub.jpeg(1) is None and hub.frames_encoded == 2


class _Table:
    def __init__(self, names):
        self.names = names


def test_hub_numbers_decisions_and_times_a_vocabulary_change():
    hub = Hub(["a", "b"], HttpOptions(recent=3))
    table = _Table(["x", "y"])
    hub.attach(lambda stream: table)
    hub.emit(_decision(0, "x", [("x", 0.7), ("y", 0.3)]))
    hub.emit(_decision(1, "y", [("y", 0.6), ("x", 0.4)]))
    got = hub.decisions()
    assert [d["seq"] for d in got] == [1, 2]
    assert [d["camera"] for d in got] == ["cam0", "cam1"]  # a decision names its camera (default: its source)
    assert all(d["labels_version"] == 1 for d in got) and hub.decisions(since=1)[0]["label"] == "y"
    hub.expect("z", ["x", "y", "z"], time.monotonic())
    hub.emit(_decision(0, "x", [("x", 0.7), ("y", 0.3)]))  # still the old table: the change is pending
    assert hub.summary()["pending_change"] == "z" and not hub.changes
    table = _Table(["x", "y", "z"])  # the watcher swapped the new table in
    hub.emit(_decision(0, "z", [("z", 0.5), ("x", 0.3)]))
    assert hub.decisions(since=3)[0]["labels_version"] == 2
    assert hub.summary()["pending_change"] is None and hub.changes[0]["action"] == "z"
    for _ in range(5):
        hub.emit(_decision(0, "x", [("x", 0.7)]))
    assert len([d for d in hub.decisions() if d["stream"] == 0]) == 3  # the newest `recent` per camera
    assert hub.latest()[1]["label"] == "y"


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, out)
    return out


def _vocabulary(bundle, labels=None, **options):
    manifest = mf.read_manifest(bundle)
    changes = []
    v = Vocabulary(bundle, labels or bundle / mf.LABELS_FILE, manifest, HttpOptions(**options),
                   lambda *a: changes.append(a))
    return v, changes


def _reference_row(bundle, text: str) -> np.ndarray:
    """The class embedding computed here: every prompt of the ensemble tokenized with open_clip,
    encoded one by one by the bundle's ONNX graph, normalised, averaged, normalised."""
    import onnxruntime as ort
    from open_clip import tokenize

    session = ort.InferenceSession(str(bundle / mf.TEXT_ONNX), providers=["CPUExecutionProvider"])
    feats = []
    for prompt in prompts_for(ClassText.parse(text)):
        f = session.run(None, {session.get_inputs()[0].name: tokenize([prompt]).numpy().astype(np.int64)})[0][0]
        feats.append(f / np.linalg.norm(f))
    mean = np.mean(feats, axis=0)
    return mean / np.linalg.norm(mean)


def test_vocabulary_adds_and_removes_in_the_bundles_own_table(bundle_copy):
    v, changes = _vocabulary(bundle_copy)
    assert v.own_table
    before = load_labels(bundle_copy / mf.LABELS_FILE)
    table = v.add("Juggling: a person keeps several balls in the air")
    assert table.names == before.names + ["Juggling"] and table.texts[-1].startswith("Juggling: a person")
    np.testing.assert_array_equal(table.embeddings[:-1], before.embeddings)  # the old rows are untouched
    row = _reference_row(bundle_copy, "Juggling: a person keeps several balls in the air")
    assert float(row @ table.embeddings[-1]) > 0.9999
    others = [float(row @ e) for e in before.embeddings]
    assert max(others) < 0.9999  # the reference tells this class from every other one
    mf.verify_bundle(bundle_copy)  # the manifest was re-hashed: the bundle still verifies
    assert changes[-1][0] == "Juggling" and changes[-1][1] == table.names
    after = v.remove("JUGGLING")  # any case
    assert after.names == before.names
    np.testing.assert_array_equal(after.embeddings, before.embeddings)
    mf.verify_bundle(bundle_copy)
    assert [a["name"] for a in v.listing()["actions"]] == before.names


def test_vocabulary_refusals_say_why(bundle_copy, tmp_path):
    labels = tmp_path / "labels.npz"
    shutil.copy(bundle_copy / mf.LABELS_FILE, labels)
    manifest_before = (bundle_copy / mf.MANIFEST_FILE).read_bytes()
    v, changes = _vocabulary(bundle_copy, labels, max_action_chars=200, max_actions=13)
    names = load_labels(labels).names
    cases = [("", "empty"), ("   ", "empty"), (names[0].upper(), "already in the table"), (42, "is a text"),
             ("x" * 201, "at most 200 characters"),
             ("Long: " + " ".join(["a"] * 80), "over the text encoder's 77")]
    for text, reason in cases:
        with pytest.raises(VocabularyError, match=reason):
            v.add(text)
    v.add("juggling")  # 13 actions: full now
    with pytest.raises(VocabularyError, match="full"):
        v.add("dancing")
    with pytest.raises(VocabularyError, match="not in the label table"):
        v.remove("dancing")
    for name in load_labels(labels).names[:-1]:
        v.remove(name)
    with pytest.raises(VocabularyError, match="needs at least one class"):
        v.remove("juggling")
    assert load_labels(labels).names == ["juggling"] and len(changes) == 13
    assert (bundle_copy / mf.MANIFEST_FILE).read_bytes() == manifest_before  # another table file: bundle untouched


def test_a_kept_text_encoder_is_loaded_once_and_refused_once_the_bundle_changes(bundle_copy, tiny_bundle, tmp_path):
    """The web view's text encoder: hashed and opened once, then each change only encodes its
    prompts (the file is not read again), with the same table as a freshly loaded one; a bundle
    whose manifest records another text encoder since is refused, not silently mixed."""
    classes = [ClassText.parse("Juggling: a person keeps several balls in the air")]
    kept = BundleTextEncoder.load(bundle_copy)
    fresh = relabel_bundle(bundle_copy, classes, tmp_path / "fresh.npz")
    onnx = bundle_copy / mf.TEXT_ONNX
    onnx.write_bytes(onnx.read_bytes()[:1000])  # the file on disk is broken now: only a kept session can encode
    with pytest.raises(FrosterError, match="does not match its sha256"):
        relabel_bundle(bundle_copy, classes, tmp_path / "reloaded.npz")
    again = relabel_bundle(bundle_copy, classes, tmp_path / "kept.npz", encoder=kept)
    assert (tmp_path / "kept.npz").read_bytes() == (tmp_path / "fresh.npz").read_bytes()
    assert again.embeddings.tobytes() == fresh.embeddings.tobytes()
    mf.update_files(bundle_copy, mf.read_manifest(bundle_copy), [mf.TEXT_ONNX])  # "exported again"
    with pytest.raises(FrosterError, match="changed since it was loaded"):
        relabel_bundle(bundle_copy, classes, tmp_path / "kept.npz", encoder=kept)
    with pytest.raises(FrosterError, match="not from"):
        relabel_bundle(tiny_bundle, classes, tmp_path / "other.npz", encoder=kept)  # another bundle's


def test_removing_classes_keeps_the_other_rows_and_rehashes_the_bundle(bundle_copy, tmp_path):
    """One rule for every table change: removal writes like relabelling (atomic; the bundle's own
    table with its manifest re-hashed), the rows left are the old ones byte for byte."""
    before = load_labels(bundle_copy / mf.LABELS_FILE)
    out = tmp_path / "labels.npz"
    shutil.copy(bundle_copy / mf.LABELS_FILE, out)
    table = remove_classes(bundle_copy, [f"  {before.names[1].upper()} ", before.names[3]], out)
    keep = [i for i in range(len(before.names)) if i not in (1, 3)]
    assert load_labels(out).names == table.names == [before.names[i] for i in keep]
    assert load_labels(out).embeddings.tobytes() == before.embeddings[keep].tobytes()
    assert load_labels(bundle_copy / mf.LABELS_FILE).names == before.names  # -o: the bundle untouched
    remove_classes(bundle_copy, [before.names[0]])
    assert load_labels(bundle_copy / mf.LABELS_FILE).names == before.names[1:]
    manifest = mf.verify_bundle(bundle_copy)
    assert manifest["labels"]["classes"] == len(before.names) - 1
    with pytest.raises(ConfigError, match="'no such' is not in the label table"):
        remove_classes(bundle_copy, ["no such"])
    with pytest.raises(ConfigError, match="needs at least one class"):
        remove_classes(bundle_copy, before.names[1:])


def test_the_hub_costs_a_fast_file_no_extra_frame_conversion(tiny_bundle):
    """Read as fast as possible, a file still converts only its sampled frames with the web view on:
    the hub is handed exactly those (the pipeline's prefilter stays), and its decisions are the run's."""
    from froster_edge.runtime.options import RunOptions
    from froster_edge.runtime.pipeline import Pipeline
    from froster_edge.sampling import SamplingSpec

    hub = Hub(["clip"], HttpOptions())
    pipeline = Pipeline(tiny_bundle, RunOptions(sources=[str(CLIPS / "stgcn_clean_and_jerk.mp4")]), [hub], [hub])
    hub.attach(lambda stream: pipeline.classifier.table)
    stats = pipeline.run()
    pipeline.backend.close()
    counters = stats.streams[0]
    T = pipeline.num_frames  # the reference rule: a window of T x 16 frames at 30 fps, floor(k x P) taken
    period = (16 * T * 29.97 / 30 - 1) / (T - 1)
    ticks = {math.floor(k * period) for k in range(300)} & set(range(300))
    # the first decision on an mp4 is eval's first view (tests/test_fidelity.py checks it against the
    # reference): its frames off the tick grid are sampled too (and handed to the hub), and only those
    first = SamplingSpec.from_manifest(pipeline.manifest.get("sampling"), T).clip(300, 29.97, 0.0, True)
    converted = len(ticks) + len(set(int(i) for i in first) - ticks)
    assert counters.frames_read == 300 and counters.frames_sampled == converted
    assert hub._counts[0] == converted and hub.jpeg(0) is not None
    assert len(hub.decisions()) == stats.decisions == (len(ticks) - T) // 2 + 1 and hub.closed.is_set()


def test_the_hub_makes_room_for_a_camera_added_while_running():
    hub = Hub(["a"], HttpOptions())
    hub.frame(2, _frame(np.full((32, 48, 3), 128, np.uint8)), None)  # stream 2 appears (a site reload)
    assert hub.cameras == ["a", "stream 1", "stream 2"] and hub.jpeg(2) is not None and hub.jpeg(1) is None
    hub.emit(_decision(2, "x", [("x", 0.9)]))
    assert [d["stream"] for d in hub.decisions()] == [2] and len(hub.latest()) == 3


def test_the_vocabulary_reads_the_table_again_only_when_the_file_changed(bundle_copy):
    from froster_edge.bundle.relabel import remove_classes

    v, _ = _vocabulary(bundle_copy)
    names = load_labels(bundle_copy / mf.LABELS_FILE).names
    for _ in range(50):  # GET /api/vocabulary, over and over
        assert [a["name"] for a in v.listing()["actions"]] == names
    assert v.loads == 1
    remove_classes(bundle_copy, [names[0]])  # another process (`labels`) changes the file
    assert [a["name"] for a in v.listing()["actions"]] == names[1:] and v.loads == 2
