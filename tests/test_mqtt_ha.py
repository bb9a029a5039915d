"""What Home Assistant reads from the MQTT sink, against a real mosquitto: every action sensor
starts "OFF" (a stale retained "ON" from a killed run is replaced), no state over Home
Assistant's 255 characters, and two runs with one client id are told so once."""

from __future__ import annotations

import logging
import threading

import paho.mqtt.client as paho
import pytest

from froster_edge.runtime.sinks import Decision
from froster_edge.runtime.site.mqtt import MqttOptions, MqttSink

from .mosquitto import Broker, Subscriber, retained
from .test_mqtt import CLASSES, wait_for


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path).start()  # skips, with the reason, where mosquitto is not installed
    yield b
    b.kill()


def _publish_retained(port: int, topic: str, payload: bytes) -> None:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="a-killed-run")
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def test_action_sensors_start_off_and_a_stale_on_is_cleared(broker):
    stale = "p/gate/action/yoga"
    _publish_retained(broker.watch_port, stale, b"ON")  # left by a run killed with an event open
    assert retained(broker.watch_port, stale).payload == b"ON"
    sink = MqttSink(MqttOptions(host="127.0.0.1", port=broker.port, prefix="p", discovery=True), ["gate"], CLASSES)
    try:
        wait_for(lambda: sink.connects and sink.stats()["pending"] == 0, 15, "the start-up messages")
        for label in CLASSES:  # every action, not only the stale one: none reads "unknown"
            topic = f"p/gate/action/{label.lower().replace(' ', '_')}"
            got = retained(broker.watch_port, topic)
            assert got is not None and got.payload == b"OFF", (topic, got)
    finally:
        sink.close()


def test_no_label_over_255_characters_reaches_home_assistant(broker):
    long_label = "someone " + "very " * 80 + "slowly climbing"
    sub = Subscriber(broker.watch_port)
    sink = MqttSink(MqttOptions(host="127.0.0.1", port=broker.port, prefix="p", discovery=True), ["gate"],
                    [long_label, "yoga"])
    try:
        wait_for(lambda: sink.connects, 15, "the connection")
        sink.emit(Decision(0, "cam", 1, 0.0, 1.7e9, long_label, 0.9, [(long_label, 0.9)], {}, camera="gate"))
        state = sub.wait(lambda ms: [m for m in ms if m.topic == "p/gate/state"], 15, "the state")[0].json()
        names = [m.json()["name"] for m in sub.messages if m.topic.startswith("homeassistant/binary_sensor/")]
    finally:
        sink.close()
        sub.close()
    assert len(long_label) > 255
    assert len(state["label"]) == 255 and long_label.startswith(state["label"][:-1]) and state["label"].endswith("…")
    assert len(names) == 2 and max(len(n) for n in names) <= 255


def test_two_runs_with_one_client_id_are_told_so_once(broker, caplog):
    caplog.set_level(logging.INFO, logger="froster_edge")
    sinks = []
    try:
        for i in range(2):
            sinks.append(MqttSink(MqttOptions(host="127.0.0.1", port=broker.port, prefix=f"p{i}", client_id="same",
                                              reconnect_min_s=0.2, reconnect_max_s=0.5), ["gate"], ["yoga"]))
        # they knock each other off on every reconnection: wait for several takeovers
        wait_for(lambda: sinks[0].connects + sinks[1].connects >= 8, 60, "repeated takeovers")
    finally:
        done = threading.Thread(target=lambda: [s.close() for s in sinks])
        done.start()
        done.join(30)
    lines = list(caplog.messages)
    said = [line for line in lines if "session taken over" in line]
    assert 1 <= len(said) <= 2 and all("client id 'same'" in line for line in said), lines  # once per run at most
    assert not any("Unspecified error" in line for line in lines), lines
    assert sum("connected to" in line for line in lines) <= 8, lines  # not a line per flap
