"""The site file as the typed config layer reads it: every bad value is one line naming the file and
the key path, exit 1, before any camera opens (`run --config`, in this process, with the capture
opener replaced by one that records any call); YAML 1.2 (a camera named `no` is "no"); flags
change single fields of the file's sections; `run --check`; the generated reference file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from froster_edge.errors import ConfigError
from froster_edge.runtime import sources
from froster_edge.runtime.options import RunOptions
from froster_edge.runtime.site.config import load_site, reference_site, site_from_flags

from .helpers import CLIPS, assert_one_line_error, cli

ROOT = Path(__file__).resolve().parents[1]
GYM = CLIPS / "stgcn_clean_and_jerk.mp4"
OK = "cameras: [{name: a, source: 0}]"


@pytest.fixture
def no_camera_opens(monkeypatch):
    """Every capture the run would open is recorded instead: a bad file must be refused before."""
    opened = []

    def record(spec, options):
        opened.append(spec)
        raise AssertionError(f"a camera was opened: {spec}")

    monkeypatch.setattr(sources, "open_capture", record)
    return opened


def camera(**keys: str) -> str:
    """A one-camera site file; `keys` are raw YAML texts over {name: a, source: <a real clip>}."""
    body = {"name": "a", "source": json.dumps(str(GYM)), **keys}
    return "cameras: [{" + ", ".join(f"{k}: {v}" for k, v in body.items()) + "}]\n"


BAD = [  # (file text, key path, what the line says)
    # YAML 1.1 booleans are texts in YAML 1.2: a strict bool field refuses them
    (camera(loop="off"), "cameras[0].loop", "must be true or false, not 'off'"),
    (camera(realtime="yes"), "cameras[0].realtime", "must be true or false, not 'yes'"),
    ("defaults: {loop: on}\n" + OK, "defaults.loop", "must be true or false, not 'on'"),
    ("mqtt: {host: 127.0.0.1, retain: n}\n" + OK, "mqtt.retain", "must be true or false, not 'n'"),
    ("mqtt: {host: 127.0.0.1, discovery: 'true'}\n" + OK, "mqtt.discovery", "must be true or false, not 'true'"),
    # names
    (camera(name="true"), "cameras[0].name", "must be a text, not True"),
    (camera(name="null"), "cameras[0].name", "must be a text, not None"),
    (camera(name='"a\\n"'), "cameras[0].name", "must not start or end with whitespace, not 'a\\n'"),
    (camera(name="a b"), "cameras[0].name", "use 1 to 64 letters"),
    (camera(name="x" * 65), "cameras[0].name", "use 1 to 64 letters"),
    (camera(name="'../a'"), "cameras[0].name", "use 1 to 64 letters"),
    ("cameras: [{name: a, source: 0}, {name: a, source: 1}]", "cameras[1].name", "'a' is given twice"),
    # sources
    (camera(source="12345678901234567890"), "cameras[0].source", "a camera index must be in 0..1023, not 12345678901234567890"),
    (camera(source="'99999'"), "cameras[0].source", "a camera index must be in 0..1023, not 99999"),
    (camera(source="''"), "cameras[0].source", "must be a camera index, a video file or a URL"),
    (camera(source='"rtsp://cam/x\\n"'), "cameras[0].source", "must be a camera index, a video file or a URL"),
    # numbers: kinds, ranges, infinities
    (camera(hop="two"), "cameras[0].hop", "must be an integer, not 'two'"),
    (camera(hop="0"), "cameras[0].hop", "must be greater than or equal to 1, not 0"),
    (camera(hop="1.5"), "cameras[0].hop", "must be an integer, not 1.5"),
    (camera(hop="true"), "cameras[0].hop", "must be an integer, not True"),
    (camera(threshold="1.5"), "cameras[0].threshold", "must be less than or equal to 1, not 1.5"),
    (camera(threshold=".nan"), "cameras[0].threshold", "must be a finite number, not nan"),
    (camera(sample_fps=".inf"), "cameras[0].sample_fps", "must be a finite number, not inf"),
    ("defaults: {sample_fps: .inf}\n" + OK, "defaults.sample_fps", "must be a finite number, not inf"),
    (camera(sample_fps="-1"), "cameras[0].sample_fps", "must be greater than 0, not -1"),
    ("clips: {folder: ., budget_mb: .inf}\n" + OK, "clips.budget_mb", "must be a finite number, not inf"),
    ("clips: {folder: ., budget_mb: -1}\n" + OK, "clips.budget_mb", "must be greater than 0, not -1"),
    ("http: {max_request_bytes: -1}\n" + OK, "http.max_request_bytes", "must be greater than or equal to 1, not -1"),
    ("http: {jpeg_quality: 500}\n" + OK, "http.jpeg_quality", "must be less than or equal to 100, not 500"),
    ("http: {port: '8080'}\n" + OK, "http.port", "must be an integer, not '8080'"),
    ("mqtt: {host: 127.0.0.1, qos: 3}\n" + OK, "mqtt.qos", "must be 0, 1 or 2, not 3"),
    ("mqtt: {host: 127.0.0.1, qos: '1'}\n" + OK, "mqtt.qos", "must be an integer, not '1'"),
    # labels
    (camera(labels=""), "cameras[0].labels", "must be a label table (a labels.npz path) or a non-empty list"),
    (camera(labels="[]"), "cameras[0].labels", "must be a label table (a labels.npz path) or a non-empty list"),
    (camera(labels='[jump, "run\\n"]'), "cameras[0].labels", "[1] must not start or end with whitespace, not 'run\\n'"),
    ("events: {labels: []}\n" + OK, "events.labels", "must have at least 1 item"),
    # cross-field rules
    (camera(sample_fps="2", subsample="3"), "cameras[0]", "give sample_fps or subsample, not both"),
    (camera(events="{enter: 0.2, exit: 0.4}"), "cameras[0].events", "exit (0.4) must not be above enter (0.2)"),
    ("events: {enter: 0.5, exit: 0.7}\n" + OK, "events", "exit (0.7) must not be above enter (0.5)"),
    ("http: {max_clients: 100, max_connections: 10}\n" + OK, "http", "max_clients (100) must not be above max_connections (10)"),
    ("http: {port: 8080}\nmetrics: {listen: '127.0.0.1:9108'}\n" + OK, "metrics.listen",
     "with the web view on, /metrics is served on its address (127.0.0.1:8080), not 127.0.0.1:9108"),
    # keys, texts, addresses, tokens
    (camera(colour="red"), "cameras[0].colour", "unknown key (known here: events, hop, labels"),
    ("camras: 1\n" + OK, "camras", "unknown key"),
    ("clips: {budget_mb: 10}\n" + OK, "clips.folder", "is required"),
    ("backend: gpu\n" + OK, "backend", "must be 'auto', 'trt-int8'"),
    ("defaults: {smoothing: median}\n" + OK, "defaults.smoothing", "must be 'ema', 'mean' or 'none', not 'median'"),
    ("mqtt: {host: 'a b'}\n" + OK, "mqtt.host", "must be a host name or IP address, not 'a b'"),
    ("mqtt: {host: h, prefix: 'a/#'}\n" + OK, "mqtt.prefix", "without + or #"),
    ("metrics: {listen: '127.0.0.1:70000'}\n" + OK, "metrics.listen", "the port must be a number in 0..65535"),
    ("http: {token: '                '}\n" + OK, "http.token", "a token must be at least 16 characters without spaces"),
    ("http: {token: short}\n" + OK, "http.token", "a token must be at least 16 characters without spaces"),
    ("bundle: ''\n" + OK, "bundle", "must not be empty"),
    # the document itself
    (camera(labels="[" * 5000 + "]" * 5000), "cameras[0].labels[0]", "nested more than 64 levels deep (line 1)"),
    (OK + "\ncameras: [{name: b, source: 1}]", "not valid YAML at line 2", "(key 'cameras' is given twice)"),
]


@pytest.mark.parametrize("text, key, message", BAD, ids=[f"{i}-{k}" for i, (_, k, _) in enumerate(BAD)])
def test_every_bad_value_is_one_line_naming_file_and_key_before_any_camera_opens(
        tiny_bundle, tmp_path, no_camera_opens, text, key, message):
    path = tmp_path / "site.yaml"
    path.write_text(text)
    result = cli("run", "--bundle", str(tiny_bundle), "--config", str(path))
    assert_one_line_error(result, 1, f"{path}: {key}")
    line = result.stderr.strip()
    assert line.startswith(f"froster-edge: error: {path}: {key}") and message in line, line
    assert "token" not in key or "short" not in line  # a token is never echoed
    assert no_camera_opens == []


def test_yaml_1_2_names_and_numbers(tmp_path):
    """YAML 1.1 would read these names as booleans, `12:30` as a number of minutes, `017` as octal."""
    path = tmp_path / "site.yaml"
    path.write_text("cameras:\n" + "".join(f"  - {{name: {n}, source: 0}}\n" for n in ("no", "off", "yes", "on", "y")) +
                    "defaults: {hop: 017}\nevents: {labels: [no, '12:30', 12:30]}\n")
    site = load_site(path, RunOptions())
    assert [c.name for c in site.run.cameras] == ["no", "off", "yes", "on", "y"]
    assert site.run.sampling.hop == 17 and site.events.labels == ("no", "12:30", "12:30")


def test_flags_change_one_field_of_a_section_never_the_whole_section(tmp_path, tiny_bundle):
    path = tmp_path / "site.yaml"
    path.write_text(f"bundle: {tiny_bundle}\n" + OK + "\nhttp: {host: 0.0.0.0, port: 8080, token: "
                    "file-token-of-24-chars-x, jpeg_quality: 40}\nmqtt: {host: broker, port: 1884, prefix: p, qos: 2}\n"
                    "events: {enter: 0.7, exit: 0.2}\nclips: {folder: clips, width: 320}\n")
    site = site_from_flags(RunOptions(), None, path, events=tmp_path / "ev.jsonl", clips=tmp_path, http="127.0.0.1:9000",
                           mqtt="10.0.0.2")
    assert (site.http.host, site.http.port, site.http.token, site.http.jpeg_quality) == \
        ("127.0.0.1", 9000, "file-token-of-24-chars-x", 40)  # --http: the address only, the file's token kept
    assert (site.mqtt.host, site.mqtt.port, site.mqtt.prefix, site.mqtt.qos) == ("10.0.0.2", None, "p", 2)
    assert (site.events.file, site.events.enter, site.events.exit) == (tmp_path / "ev.jsonl", 0.7, 0.2)
    assert (site.clips.folder, site.clips.width) == (tmp_path, 320)
    site = site_from_flags(RunOptions(), None, path, http_token="flag-token-of-24-chars-x", metrics="0.0.0.0:8080")
    assert (site.http.host, site.http.token, site.metrics.address) == ("0.0.0.0", "flag-token-of-24-chars-x", ("0.0.0.0", 8080))
    for flags, message in [({"http": "0.0.0.0:x"}, "--http: the port must be a number in 0..65535"),
                           ({"http_token": " " * 20}, "--http-token: token: a token must be at least 16"),
                           ({"metrics": "127.0.0.1:9108"}, "--metrics: with the web view on, /metrics is served on its address")]:
        with pytest.raises(ConfigError, match="^" + message.replace(".", r"\.").replace("+", r"\+")):
            site_from_flags(RunOptions(), None, path, **flags)


def test_run_check_validates_without_running(tiny_bundle, tmp_path, no_camera_opens):
    path = tmp_path / "site.yaml"
    path.write_text(f"bundle: {tiny_bundle}\n" + camera() + "events: {file: events.jsonl}\nmetrics: {}\n")
    result = cli("run", "--config", str(path), "--check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{path}: ok: 1 camera (a); events, metrics"
    assert not (tmp_path / "events.jsonl").exists() and no_camera_opens == []
    path.write_text(f"bundle: {tiny_bundle}\n" + camera() + "events: {file: none/events.jsonl}\n")
    assert_one_line_error(cli("run", "--config", str(path), "--check"), 1, "does not exist")
    path.write_text(camera(loop="off"))
    assert_one_line_error(cli("run", "--config", str(path), "--check"), 1, f"{path}: cameras[0].loop: must be true or false")


def test_the_reference_site_file_is_the_models_and_loads():
    reference = ROOT / "examples" / "site-reference.yaml"
    assert reference.read_text() == reference_site(), (
        "examples/site-reference.yaml is stale: python -c 'from froster_edge.runtime.site.config import reference_site; "
        "print(reference_site(), end=\"\")' > examples/site-reference.yaml")
    site = load_site(reference, RunOptions())
    assert site.http is not None and site.mqtt is not None and site.clips is not None and site.metrics is not None
    for line in reference.read_text().splitlines():  # every key of every section is in it, set or commented
        assert line.startswith("#") or "#" in line or line.endswith(":"), line


def test_the_example_site_file_loads():
    site = load_site(ROOT / "examples" / "site.yaml", RunOptions())
    assert [c.name for c in site.run.cameras] == ["yard", "gym"] and site.events is not None and site.clips is not None
    assert site.metrics is not None and site.metrics.address == ("127.0.0.1", 9108)
