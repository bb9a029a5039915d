"""The MQTT sink against a real broker (mosquitto, started by the test) and a real paho subscriber:
a real clip through the runtime, the messages checked against the decisions; the broker killed
and restarted mid-run, with delivery after the reconnect and the queue's drop count."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from froster_edge.errors import ConfigError

from .helpers import CLIPS, LiveRun, cli
from .mosquitto import Broker, Subscriber, retained

CLIP = CLIPS / "stgcn_clean_and_jerk.mp4"
CLASSES = [line.strip() for line in (CLIPS / "classes.txt").read_text().splitlines() if line.strip()]


def safe(name: str) -> str:
    """The rule of docs/mqtt.md for a camera or label as a topic level, written out again here."""
    out = "".join(c if c.isascii() and (c.isalnum() or c in "_-") else " " for c in name.strip())
    return "_".join(out.split()).lower()


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path).start()
    yield b
    b.kill()


def is_subsequence(part: list, whole: list) -> bool:
    it = iter(whole)
    return all(any(x == y for y in it) for x in part)


def test_addresses_and_names():
    from froster_edge.runtime.site.mqtt import parse_address, topic_id

    assert parse_address("broker.lan") == ("broker.lan", None)
    assert parse_address("10.0.0.2:1884") == ("10.0.0.2", 1884)
    assert parse_address("[::1]:8883") == ("::1", 8883)
    assert parse_address(":1883") == ("127.0.0.1", 1883)  # the one address rule (runtime/site/network.py)
    for bad in ("host:0", "host:99999", "host:x", "::1", "a b", "mqtt://host"):
        with pytest.raises(ConfigError):
            parse_address(bad)
    for name in ("Back door", "examples/clips/stgcn_clean_and_jerk.mp4", "rtsp://cam1:554/stream", "ice-dancing"):
        assert topic_id(name) == safe(name)


@pytest.mark.parametrize("mqtt, args, message", [
    (None, ["--mqtt", "127.0.0.1:70000"], "--mqtt: the port must be a number in 1..65535, not '127.0.0.1:70000'"),
    ({"prefix": "a/#"}, ["--mqtt", "127.0.0.1"], "mqtt.prefix: must be a topic prefix without + or #"),
    ({"ca_file": "none.pem", "tls": True}, ["--mqtt", "127.0.0.1"], "mqtt.ca_file"),
    ({"prefix": "p"}, [], "mqtt: no broker host"),
])
def test_bad_mqtt_options_are_one_line_errors(tiny_bundle, tmp_path, mqtt, args, message):
    from .helpers import assert_one_line_error

    site = tmp_path / "site.yaml"
    site.write_text(json.dumps({"cameras": [{"name": "clip", "source": str(CLIP)}], **({"mqtt": mqtt} if mqtt else {})}))
    assert_one_line_error(cli("run", "--bundle", str(tiny_bundle), "--config", str(site), *args), 1, message)


def test_a_run_publishes_its_decisions_availability_and_discovery(tiny_bundle, broker, tmp_path):
    sub = Subscriber(broker.watch_port)
    stats_path = tmp_path / "stats.json"
    site = tmp_path / "site.yaml"  # the tuning in the file; --mqtt changes only its host and port
    site.write_text(json.dumps({"cameras": [{"name": "clip", "source": str(CLIP)}],
                                "mqtt": {"host": "192.0.2.1", "port": 1, "prefix": "site/one", "discovery": True,
                                         "client_id": "box 7"}}))
    proc = cli("run", "--bundle", str(tiny_bundle), "--config", str(site), "--jsonl", "--hop", "1",
               "--mqtt", f"127.0.0.1:{broker.port}", "--stats-json", str(stats_path))
    assert proc.returncode == 0, proc.stderr
    decisions = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(decisions) > 10
    cam = "clip"
    state_topic = f"site/one/{cam}/state"

    # the state topic: the decisions, newest last (a fast file may coalesce some); "retained" is
    # checked below with a late subscriber (a broker clears the flag on messages it forwards live)
    states = sub.wait(lambda ms: [m for m in ms if m.topic == state_topic] if any(
        m.topic == "site/one/availability" and m.payload == b"offline" for m in ms) else None, what="offline")
    bodies = [m.json() for m in states]
    assert all(b.pop("camera") == "clip" for b in bodies)
    expected = [{k: v for k, v in d.items() if k not in ("latency_ms", "camera")} for d in decisions]
    assert bodies[-1] == expected[-1]
    assert is_subsequence(bodies, expected)

    # availability: online first, offline last, at the clean end
    avail = sub.on("site/one/availability")
    assert [m.payload for m in avail][0] == b"online" and avail[-1].payload == b"offline"
    assert sub.messages[-1].topic == "site/one/availability"

    # Home Assistant discovery: the camera is one device with a label sensor, a score sensor and a
    # binary sensor per label, all available through the availability topic
    configs = {m.topic: m.json() for m in sub.messages if m.topic.startswith("homeassistant/")}
    pattern = re.compile(r"homeassistant/(sensor|binary_sensor)/([A-Za-z0-9_-]+)/([A-Za-z0-9_-]+)/config")
    assert all(pattern.fullmatch(t) for t in configs), list(configs)
    node = "box_7"
    binary = {t: c for t, c in configs.items() if t.startswith(f"homeassistant/binary_sensor/{node}/")}
    assert {c["name"] for c in binary.values()} == set(CLASSES)
    for c in binary.values():
        assert c["state_topic"] == f"site/one/{cam}/action/{safe(c['name'])}"
        assert (c["payload_on"], c["payload_off"]) == ("ON", "OFF")
    label = configs[f"homeassistant/sensor/{node}/{cam}_label/config"]
    score = configs[f"homeassistant/sensor/{node}/{cam}_score/config"]
    assert label["state_topic"] == score["state_topic"] == state_topic
    assert len(configs) == len(CLASSES) + 2
    assert len({c["unique_id"] for c in configs.values()}) == len(configs)
    for c in configs.values():
        # available while the run and the camera are: both topics "online"
        assert c["availability"] == [{"topic": "site/one/availability"}, {"topic": f"site/one/{cam}/availability"}]
        assert c["availability_mode"] == "all"
        assert c["device"]["identifiers"] == label["device"]["identifiers"]
        assert c["device"]["name"] == "clip"

    # a subscriber arriving after the run gets the newest state and "offline" at once
    late = retained(broker.watch_port, state_topic)
    assert late is not None and {k: v for k, v in late.json().items() if k != "camera"} == expected[-1]
    assert retained(broker.watch_port, "site/one/availability").payload == b"offline"
    assert retained(broker.watch_port, f"site/one/{cam}/availability").payload == b"online"  # the camera ran to the end
    some_config = sorted(configs)[0]
    assert retained(broker.watch_port, some_config).json() == configs[some_config]
    sub.close()

    mqtt_stats = json.loads(stats_path.read_text())["mqtt"]
    assert mqtt_stats["dropped"] == 0 and mqtt_stats["pending"] == 0 and mqtt_stats["connects"] == 1
    assert mqtt_stats["published"] >= len(states) + len(configs) + 2


def hysteresis(decisions: list[dict], label: str, enter: float, exit: float, n_in: int, n_out: int) -> list[dict]:
    """The event rule of docs/site.md written out again, on the run's JSONL decisions: a start after n_in
    decisions in a row >= enter (at the first of them), an end after n_out in a row < exit (at the
    first of those), an event still open at the end closed there, interrupted."""
    score = [next(t["score"] for t in d["top"] if t["label"] == label) for d in decisions]
    events, run, dip, start = [], [], [], None
    for i, p in enumerate(score):
        if start is None:
            run = run + [i] if p >= enter else []
            if len(run) == n_in:
                start, run = run[0], []
                events.append({"phase": "start", "start": start})
        else:
            dip = dip + [i] if p < exit else []
            if len(dip) == n_out:
                events.append({"phase": "end", "start": start, "end": dip[0], "interrupted": False})
                start, dip = None, []
    if start is not None:
        events.append({"phase": "end", "start": start, "end": dip[0] if dip else len(score) - 1, "interrupted": True,
                       "upto": dip[0] if dip else len(score)})
    for e in events:  # the peak: of the entering run on "start"; of the decisions up to the end (exclusive) on "end"
        upto = e["start"] + n_in if e["phase"] == "start" else e.get("upto", e.get("end"))
        e["peak"] = max(score[e["start"]:upto])
    return events


def quiet_threshold(values: list[float]) -> float:
    """A threshold in the widest gap between a label's middle scores: far (in float terms) from every
    score, so rounding the JSONL's scores to 6 decimals cannot move a decision across it."""
    v = sorted(set(values))
    lo, hi = len(v) // 5, len(v) - len(v) // 5
    gap, at = max((v[i + 1] - v[i], i) for i in range(lo, hi - 1))
    return (v[at] + v[at + 1]) / 2


def test_a_real_run_sends_the_segmenters_events_in_order(tiny_bundle, broker, tmp_path):
    """A real clip through `froster-edge run` with the site's event segmenter, MQTT on: the event
    and action messages a real subscriber gets are the events the hysteresis gives on the run's
    own decisions (--jsonl, every class's score: top_k = all)."""
    def site(events: dict | None) -> Path:
        doc = {"bundle": str(tiny_bundle), "defaults": {"sample_fps": 8, "hop": 1, "top_k": len(CLASSES)},
               "cameras": [{"name": "gym", "source": str(CLIP)}]}
        if events is not None:
            doc["events"] = events
            doc["mqtt"] = {"host": "127.0.0.1", "port": broker.port, "prefix": "ev"}
        path = tmp_path / "site.yaml"
        path.write_text(json.dumps(doc))  # JSON is YAML
        return path

    # a first run picks the label and the thresholds from the scores this machine gives (the same
    # in the second run: a file read as fast as possible is decided the same way each time)
    first = cli("run", "--config", str(site(None)), "--jsonl")
    assert first.returncode == 0, first.stderr
    before = [json.loads(line) for line in first.stdout.splitlines()]
    scores = {c: [next(t["score"] for t in d["top"] if t["label"] == c) for d in before] for c in CLASSES}
    label = max(CLASSES, key=lambda c: max(scores[c]) - min(scores[c]))
    threshold = quiet_threshold(scores[label])
    n_in, n_out = 2, 2
    sub = Subscriber(broker.watch_port)
    proc = cli("run", "--config", str(site({"enter": threshold, "exit": threshold, "enter_decisions": n_in,
                                            "exit_decisions": n_out, "labels": [label]})), "--jsonl")
    assert proc.returncode == 0, proc.stderr
    decisions = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [d["frame"] for d in decisions] == [d["frame"] for d in before]
    margin = min(abs(next(t["score"] for t in d["top"] if t["label"] == label) - threshold) for d in decisions)
    assert margin > 1e-5, f"a score within {margin} of the threshold: rounding could decide this test"

    expected = hysteresis(decisions, label, threshold, threshold, n_in, n_out)
    assert len(expected) >= 3, expected  # at least one whole event and the start of another
    sub.wait(lambda ms: any(m.topic == "ev/availability" and m.payload == b"offline" for m in ms), what="offline")
    got = [m.json() for m in sub.on("ev/gym/event")]
    assert [(e["phase"], e["label"], e["camera"]) for e in got] == [(e["phase"], label, "gym") for e in expected]
    for e, want in zip(got, expected, strict=False):
        assert e["start_time"] == decisions[want["start"]]["time"]
        assert e["start_media"] == decisions[want["start"]]["media_time"]
        assert abs(e["peak_score"] - want["peak"]) < 1e-5
        if e["phase"] == "end":
            assert e["end_time"] == decisions[want["end"]]["time"] and e["interrupted"] == want["interrupted"]
    starts = [e["id"] for e in got if e["phase"] == "start"]
    assert len(set(starts)) == len(starts) and starts == [e["id"] for e in got if e["phase"] == "end"]
    actions = [m.payload for m in sub.on(f"ev/gym/action/{safe(label)}")]
    assert actions == [b"OFF"] + [b"ON" if e["phase"] == "start" else b"OFF" for e in expected]  # off at the start
    assert retained(broker.watch_port, f"ev/gym/action/{safe(label)}").payload == b"OFF"
    sub.close()


def canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True).encode() if isinstance(value, dict) else value


@dataclass
class Event:
    """The fields of runtime/site/events.py's ActionEvent this sink reads."""

    id: str
    camera: str
    label: str
    phase: str

    def to_json(self) -> dict:
        return {"id": self.id, "camera": self.camera, "label": self.label, "phase": self.phase}


class EveryDecisionAnEvent:
    """Turns each decision into a start and an end event of its label (a test stand-in for the
    event segmenter), and keeps every MQTT message that makes, in order."""

    def __init__(self, sink, prefix: str):
        self.sink, self.prefix = sink, prefix
        self.paused = False  # no events while set (the decisions go on)
        self.messages: list[tuple[str, bytes]] = []
        self.decisions: list = []
        self._lock = threading.Lock()

    def emit(self, d) -> None:
        if self.paused:
            return
        cam = safe(d.source)
        for phase in ("start", "end"):
            ev = Event(f"{len(self.decisions):05d}", d.source, d.label, phase)
            with self._lock:
                self.messages.append((f"{self.prefix}/{cam}/event", canonical(ev.to_json())))
                self.messages.append((f"{self.prefix}/{cam}/action/{safe(d.label)}", b"ON" if phase == "start" else b"OFF"))
            self.sink.event(ev)
        self.decisions.append(d)

    def count(self) -> int:
        with self._lock:
            return len(self.messages)

    def close(self) -> None:
        pass


def wait_for(predicate, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def test_broker_killed_and_restarted_mid_run(tiny_bundle, broker, caplog):
    from froster_edge.runtime.options import CaptureOptions, RunOptions, SamplingOptions
    from froster_edge.runtime.pipeline import Pipeline
    from froster_edge.runtime.site.mqtt import MqttOptions, MqttSink

    queue_size = 16
    sub = Subscriber(broker.watch_port)
    caplog.set_level(logging.INFO, logger="froster_edge")
    options = RunOptions(sources=[str(CLIP)], sampling=SamplingOptions(fps=4, hop=1),
                         capture=CaptureOptions(realtime=True, loop=True))
    mqtt = MqttSink(MqttOptions(host="127.0.0.1", port=broker.port, prefix="p", queue_size=queue_size, qos=1,
                                reconnect_min_s=0.2, reconnect_max_s=1.0, close_timeout_s=10),
                    [str(CLIP)], CLASSES)
    events = EveryDecisionAnEvent(mqtt, "p")
    pipeline = Pipeline(tiny_bundle, options, [events, mqtt])
    runner = threading.Thread(target=pipeline.run, daemon=True)
    runner.start()
    cam = safe(str(CLIP))
    try:
        sub.wait(lambda ms: sum(m.topic == f"p/{cam}/event" for m in ms) >= 6, 120, "events before the kill")
        broker.kill()
        wait_for(lambda: any("connection to" in line and "lost" in line for line in list(caplog.messages)), 30, "the sink seeing the broker go")
        lost_at = events.count()  # from here on every message goes to the sink's own queue
        wait_for(lambda: events.count() >= lost_at + queue_size + 12, 120, "the queue overfilling")
        events.paused = True  # the queue now holds the newest queue_size messages of [lost_at, restart_at)
        restart_at = events.count()
        broker.start(gate=False)  # the sink is refused until the test's subscriber is back
        sub.wait_subscribed(2)
        broker.open_gate()
        wait_for(lambda: sum("connected to" in line for line in list(caplog.messages)) >= 2, 60, "the sink reconnecting")
        last_queued = [s for s in events.messages[:restart_at] if s[0].endswith("/event")][-1]
        sub.wait(lambda ms: any(m.topic == last_queued[0] and canonical(m.json()) == last_queued[1] for m in ms),
                 120, "the queued events after the reconnect")
        after = f"{len(events.decisions) + 2:05d}"
        events.paused = False
        sub.wait(lambda ms: any(m.topic == f"p/{cam}/event" and m.json()["id"] >= after for m in ms), 120,
                 "events after the reconnect")
    finally:
        pipeline.stop.set()
        runner.join(30)
        broker_log = broker.log.read_text()
    assert not runner.is_alive()

    # the event messages: those received are the sent ones in order; the newest queue_size queued
    # while the broker was away all came after it was back, the older ones were dropped (counted),
    # apart from what paho had in flight when the broker died; and everything after the reconnect came
    sent = events.messages
    got_events = []
    for m in sub.messages:
        if m.topic == f"p/{cam}/event" and (m.topic, canonical(m.json())) not in got_events:  # QoS 1 may repeat one
            got_events.append((m.topic, canonical(m.json())))
    assert is_subsequence(got_events, [s for s in sent if s[0].endswith("/event")])
    received = set(got_events)
    assert all(s in received for s in sent[restart_at - queue_size:] if s[0].endswith("/event"))
    missing = [i for i, s in enumerate(sent) if s[0].endswith("/event") and s not in received]
    assert missing and all(lost_at - 2 * 20 <= i < restart_at - queue_size for i in missing), (missing, lost_at, restart_at)
    assert mqtt.dropped >= (restart_at - lost_at) - queue_size

    # the broker restarted without its retained messages: the sink published them again
    last = events.decisions[-1]
    late = retained(broker.watch_port, f"p/{cam}/state")
    assert late is not None and late.json()["frame"] == last.frame and late.json()["label"] == last.label
    assert retained(broker.watch_port, f"p/{cam}/action/{safe(last.label)}").payload == b"OFF"
    assert retained(broker.watch_port, "p/availability").payload == b"offline"
    assert mqtt.stats()["pending"] == 0, broker_log
    sub.close()


def _decision(frame: int, label: str):
    from froster_edge.runtime.sinks import Decision

    return Decision(0, "cam", frame, frame / 30.0, 1.7e9 + frame / 30.0, label, 0.9, [(label, 0.9)], {}, camera="gate")


@pytest.mark.parametrize("interval", [30.0, 0.0])
def test_state_goes_on_a_new_label_and_at_most_once_an_interval(broker, interval):
    """A camera's state topic: at once when the top label changes, else at most once per
    state_interval_s (the newest decision), and the newest state before "offline" at close;
    0 publishes every decision (coalesced only while the publisher is behind)."""
    from froster_edge.runtime.site.mqtt import MqttOptions, MqttSink

    sub = Subscriber(broker.watch_port)
    sink = MqttSink(MqttOptions(host="127.0.0.1", port=broker.port, prefix="p", state_interval_s=interval),
                    ["gate"], CLASSES)
    wait_for(lambda: sink.connects, 15, "the connection")
    states = lambda: [m.json() for m in sub.on("p/gate/state")]  # noqa: E731
    sink.emit(_decision(0, "yoga"))
    wait_for(lambda: len(states()) == 1, 15, "the first state")
    for frame in range(1, 100):  # the same label: within the interval, nothing goes (with 30 s)
        sink.emit(_decision(frame, "yoga"))
        time.sleep(0.002)
    if interval:
        time.sleep(0.5)
        assert len(states()) == 1
    sink.emit(_decision(100, "fencing"))  # a new top label goes at once, whatever the interval
    wait_for(lambda: any(s["label"] == "fencing" for s in states()), 15, "the new label's state")
    for frame in range(101, 150):
        sink.emit(_decision(frame, "fencing"))
    sink.close()
    sub.wait(lambda ms: any(m.topic == "p/availability" and m.payload == b"offline" for m in ms), what="offline")
    got = states()
    sub.close()
    frames = [s["frame"] for s in got]
    assert frames == sorted(frames) and frames[0] == 0 and frames[-1] == 149  # the newest goes out at close
    if interval:
        assert [(s["frame"], s["label"]) for s in got] == [(0, "yoga"), (100, "fencing"), (149, "fencing")]
    else:
        assert len(got) > 50  # every decision, but for the few the publisher coalesced
    assert sink.stats()["pending"] == 0


def test_a_flood_on_home_assistants_status_topic_does_not_stop_publishing(tiny_bundle, broker, tmp_path):
    """The attack: 'online' on homeassistant/status, thousands of times, through the real broker. During
    the flood and after it the run's decisions go on and their states keep arriving at a subscriber
    (newer frames each time), the run stops cleanly, and the flood cost one republish."""
    import paho.mqtt.client as paho

    sub = Subscriber(broker.watch_port)
    stats_path = tmp_path / "stats.json"
    site = tmp_path / "site.yaml"  # the MQTT tuning lives in the site file; --mqtt gives the broker
    site.write_text(json.dumps({"cameras": [{"name": "clip", "source": str(CLIP), "realtime": True, "loop": True}],
                                "mqtt": {"prefix": "flood", "discovery": True}}))
    live = LiveRun("--bundle", str(tiny_bundle), "--config", str(site), "--sample-fps", "8", "--hop", "1",
                   "--mqtt", f"127.0.0.1:{broker.port}", "--stats-json", str(stats_path))
    flooder = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="flooder")
    flooding = threading.Event()
    try:
        state = "flood/clip/state"
        sub.wait(lambda ms: any(m.topic == state for m in ms), timeout=90, what="a first state")
        flooder.connect("127.0.0.1", broker.port)
        flooder.loop_start()

        def flood() -> None:  # 'online' for as long as the test watches, acknowledged in batches
            while not flooding.is_set():
                for _ in range(200):
                    flooder.publish("homeassistant/status", b"online", qos=0)
                flooder.publish("homeassistant/status", b"online", qos=1).wait_for_publish(30)

        def newer_states(after: int, count: int, what: str) -> int:
            """`count` more states on the topic, each of a newer frame than the last; the run decides meanwhile."""
            seen = len(sub.on(state))
            sub.wait(lambda ms: sum(m.topic == state for m in ms) >= seen + count, timeout=60, what=what)
            frames = [json.loads(m.payload)["frame"] for m in sub.on(state)[seen:]]
            assert frames[0] != after and len(set(frames)) == len(frames), frames  # new decisions, not repeats
            return frames[-1]

        flooder_thread = threading.Thread(target=flood, daemon=True)
        flooder_thread.start()
        sub.wait(lambda ms: sum(m.topic == "homeassistant/status" for m in ms) >= 2000, timeout=60, what="the flood")
        decided = len(live.seen)
        last = newer_states(-1, 5, "states during the flood")
        live.decision(60)  # the run's decisions go on during the flood
        flooding.set()
        flooder_thread.join(60)
        flooded = sum(m.topic == "homeassistant/status" for m in sub.messages)
        newer_states(last, 5, "states after the flood")
        live.decision(60)
        assert len(live.seen) > decided
        assert live.stop(timeout=60) == 0, live.stderr
    finally:
        flooding.set()
        flooder.loop_stop()
        flooder.disconnect()
        live.kill()
        sub.close()
    mqtt_stats = json.loads(stats_path.read_text())["mqtt"]
    assert flooded >= 2000 and mqtt_stats["status_ignored"] >= 1900 and mqtt_stats["dropped"] == 0
    assert mqtt_stats["pending"] == 0  # everything went out before "offline"
    assert sub.on("flood/availability")[-1].payload == b"offline"
    assert sum("homeassistant/status" in line for line in live.stderr) == 1


def test_home_assistants_online_is_served_by_the_publisher_thread(broker, monkeypatch):
    """Home Assistant's "online" makes the sink send its discovery configs again; the work is the
    publisher thread's (paho's network callback only sets a flag), and the states go on after it."""
    import paho.mqtt.client as paho

    from froster_edge.runtime.site import mqtt as sink_module
    from froster_edge.runtime.site.mqtt import MqttOptions, MqttSink

    monkeypatch.setattr(sink_module, "REPUBLISH_MIN_S", 0.0)  # no rate limit: each "online" is served
    sub = Subscriber(broker.watch_port)
    sink = MqttSink(MqttOptions(host="127.0.0.1", port=broker.port, prefix="birth", discovery=True, state_interval_s=0),
                    ["cam"], CLASSES)
    threads: list[str] = []
    republish = sink._republish

    def traced() -> None:
        threads.append(threading.current_thread().name)
        republish()

    sink._republish = traced
    sender = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="ha")
    try:
        config = lambda ms: [m for m in ms if m.topic.endswith("/cam_label/config")]  # noqa: E731
        sub.wait(lambda ms: len(config(ms)) == 1, what="the configs at the connect")
        sender.connect("127.0.0.1", broker.port)
        sender.loop_start()
        while len(config(sub.messages)) < 2:  # until the sink's subscription is in place
            sender.publish("homeassistant/status", b"online", qos=1).wait_for_publish(30)
            time.sleep(0.2)
        sink.emit(_decision(7, "yoga"))
        sub.wait(lambda ms: any(m.topic == "birth/gate/state" and m.json()["frame"] == 7 for m in ms), what="a state after it")
    finally:
        sender.loop_stop()
        sender.disconnect()
        sink.close()
        sub.close()
    assert threads and set(threads[1:]) == {"mqtt-publisher"}, threads  # the first: paho's, at the connect


def test_a_broker_that_never_answers_connack_is_reported(tiny_bundle):
    """A TCP server that takes the connection and the CONNECT packet and never answers."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    live = LiveRun("--bundle", str(tiny_bundle), "--source", str(CLIP), "--realtime", "--loop", "--sample-fps", "8",
                   "--mqtt", f"127.0.0.1:{server.getsockname()[1]}")
    try:
        line = live.wait_stderr("MQTT handshake", timeout=90)
        assert "no CONNACK" in line and held and live.proc.poll() is None  # said, and the run goes on
        live.decision(60)
        assert live.stop(timeout=60) == 0, live.stderr
    finally:
        live.kill()
        server.close()
        for conn in held:
            conn.close()
    assert sum("MQTT handshake" in line for line in live.stderr) == 1


def test_a_large_message_on_home_assistants_status_topic_never_reaches_the_sink(broker):
    """1 MiB published on homeassistant/status through the real broker: the sink's client (which
    asked for at most MAX_INCOMING_BYTES a packet) is never handed it, stays connected, and still
    gets the small messages that follow."""
    import paho.mqtt.client as paho

    from froster_edge.runtime.site.mqtt import MAX_INCOMING_BYTES, MqttOptions, MqttSink

    sink = MqttSink(MqttOptions(host="127.0.0.1", port=broker.port, prefix="big", discovery=True), [str(CLIP)], CLASSES)
    got: list[bytes] = []
    handler = sink.client.on_message

    def seen(client, userdata, message):  # what paho hands the sink, passed on unchanged
        got.append(message.payload)
        handler(client, userdata, message)

    sink.client.on_message = seen
    attacker = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="big-sender")
    try:
        wait_for(lambda: sink.stats()["connects"] == 1, 30, "the sink's connection")
        attacker.connect("127.0.0.1", broker.port)
        attacker.loop_start()
        while not got:  # until the sink's subscription is in place: a small message reaches it
            attacker.publish("homeassistant/status", b"online", qos=1).wait_for_publish(30)
            time.sleep(0.1)
        attacker.publish("homeassistant/status", b"online" + b" " * (1 << 20), qos=1).wait_for_publish(30)
        for _ in range(3):  # in order after the large one, on the same topic
            attacker.publish("homeassistant/status", b"offline", qos=1).wait_for_publish(30)
        wait_for(lambda: got.count(b"offline") == 3, 30, "the small messages after the large one")
    finally:
        attacker.loop_stop()
        attacker.disconnect()
        sink.close()
    assert max(map(len, got)) <= MAX_INCOMING_BYTES, [len(m) for m in got]
    assert sink.stats()["connects"] == 1 and sink.stats()["oversized"] == 0
