"""A real MQTT broker for tests: Debian's mosquitto on a free 127.0.0.1 port, with a config file
written in the test's tmp_path (anonymous access, no persistence: a restart loses retained
messages, as a broker that crashed and came back would), and a real paho subscriber."""

from __future__ import annotations

import getpass
import json
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from .helpers import free_port

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").is_file() else None)


def require_mosquitto() -> str:
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto; .ci/run does it as root)")
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (pip install paho-mqtt)")
    return MOSQUITTO


class Broker:
    """mosquitto on two ports: `port` for the code under test, `watch_port` for the test's
    subscribers. `kill()` and `start()` again on the same ports; `start(gate=False)` refuses
    clients on `port` (CONNACK "not authorised") until `open_gate()`, so a test's subscriber is
    back before the client under test reconnects."""

    def __init__(self, folder: Path):
        self.binary = require_mosquitto()
        self.port, self.watch_port = free_port(), free_port()
        self.config = folder / "mosquitto.conf"
        self.log = folder / "mosquitto.log"
        self.proc: subprocess.Popen | None = None

    def _write_config(self, gate: bool) -> None:
        # user: as root, mosquitto would switch to the `mosquitto` user, which cannot read tmp_path
        # again to reload this file on SIGHUP; the option is ignored when not started as root
        self.config.write_text(
            f"user {getpass.getuser()}\nper_listener_settings true\npersistence false\n"
            f"listener {self.port} 127.0.0.1\nallow_anonymous {'true' if gate else 'false'}\n"
            f"listener {self.watch_port} 127.0.0.1\nallow_anonymous true\n")

    def open_gate(self) -> None:
        self._write_config(True)
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)  # mosquitto reloads allow_anonymous on SIGHUP

    def start(self, gate: bool = True) -> "Broker":
        self._write_config(gate)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=log, stderr=log)
        end = time.monotonic() + 20
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            try:
                for port in (self.port, self.watch_port):
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"mosquitto did not listen on {self.port}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool

    def json(self):
        return json.loads(self.payload)


class Subscriber:
    """A paho client subscribed to `#` (again after each reconnect), keeping every message."""

    def __init__(self, port: int, topic: str = "#"):
        import paho.mqtt.client as paho

        self.messages: list[Received] = []
        self.subscribed = 0  # subscriptions acknowledged (one per connection)
        self._cond = threading.Condition()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{free_port()}")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=2)
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1)  # type: ignore[arg-type]
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        self.wait_subscribed()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        with self._cond:
            self.subscribed += 1
            self._cond.notify_all()

    def wait_subscribed(self, count: int = 1, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        with self._cond:
            while self.subscribed < count:
                if time.monotonic() > end:
                    raise AssertionError(f"subscriber not subscribed {count} time(s) within {timeout} s")
                self._cond.wait(0.1)

    def _on_message(self, client, userdata, message) -> None:
        with self._cond:
            self.messages.append(Received(message.topic, bytes(message.payload), bool(message.retain)))
            self._cond.notify_all()

    def on(self, topic: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def wait(self, predicate, timeout: float = 30.0, what: str = "messages"):
        """Wait until predicate(messages) is truthy; return its value."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate(list(self.messages))
                if value:
                    return value
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {what} within {timeout} s; got {[(m.topic, m.payload[:80]) for m in self.messages[-20:]]}")
                self._cond.wait(min(left, 0.2))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained(port: int, topic: str, timeout: float = 10.0) -> Received | None:
    """What a new subscriber of `topic` gets at once (the retained message), or None."""
    sub = Subscriber(port, topic)
    try:
        return sub.wait(lambda ms: ms[0] if ms else None, timeout, f"retained message on {topic}")
    except AssertionError:
        return None
    finally:
        sub.close()
