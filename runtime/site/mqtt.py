"""MQTT sink: per-camera state, action events, availability with a last will, Home Assistant discovery.

Topics under a prefix (`froster-edge`): availability (retained, also the last will),
<camera>/availability (offline while its stream is down), <camera>/state (retained, newest decision,
label cut to 255 characters), <camera>/event (not retained), <camera>/action/<label> (ON/OFF, all OFF
when the camera starts, replacing a stale ON), and with discovery Home Assistant sensor configs per camera and
label; a camera removed by a reload goes offline and its configs are emptied. The pipeline never
waits for the broker: messages go to a bounded queue (oldest event dropped and counted), states are
sent on a label change or at most every `state_interval_s`, one publisher thread feeds paho with at
most INFLIGHT unacknowledged, and after a reconnect retained values are published again (so does
Home Assistant's "online", at most every REPUBLISH_MIN_S: paho's thread only sets a flag the
publisher serves). QoS 0 may
lose a message on a dying connection; QoS 1 (default) for events that must arrive.

See docs/mqtt.md.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol

from pydantic import AfterValidator, Field, field_validator, model_validator

from ...errors import ConfigError, MissingCapability
from ...schema import FilePath, Model, Text
from ..sinks import Decision
from .events import PLAIN_NAME, short_hash
from .network import check_host, reason
from .network import parse_address as network_address

log = logging.getLogger(__name__)

PASSWORD_ENV = "FROSTER_EDGE_MQTT_PASSWORD"
USERNAME_ENV = "FROSTER_EDGE_MQTT_USERNAME"
INFLIGHT = 20  # messages handed to paho and not yet acknowledged
HA_STATE_MAX = 255  # Home Assistant rejects a state (and an entity name) longer than this
SESSION_TAKEN_OVER = 0x8E  # MQTT 5 DISCONNECT reason: another connection with the same client id
UNSPECIFIED = 0x80  # paho's reason when the broker closed the socket without saying why
# a broker that closes this many connections in a row, each within the window of being made, while
# it accepts every new one at once, is taking the session over for another client (brokers that do
# not send MQTT 5's "session taken over", as mosquitto 2.0.11 does not)
TAKEOVER_LOSSES, TAKEOVER_WINDOW_S = 3, 5.0
CONNACK_S = 10.0  # a broker that took the TCP connection and has not answered CONNECT in this long is said
# The largest MQTT packet the sink accepts (MQTT v5 Maximum Packet Size: the broker drops larger
# ones for this client instead of sending them; paho itself would buffer any size). It only reads
# Home Assistant's "online"/"offline"; a larger message that still arrives is ignored and counted.
MAX_INCOMING_BYTES = 4096
REPUBLISH_MIN_S = 10.0  # at most one republish for Home Assistant's "online" in this long
_TOPIC_SAFE = re.compile(r"[^A-Za-z0-9_-]+")


def _qos(value: int) -> int:
    if value not in (0, 1, 2):
        raise ValueError("must be 0, 1 or 2")
    return value


class MqttOptions(Model):
    """Where and how the MQTT sink publishes; the one place its defaults live (CLI and site file).

    The password (or a token, for brokers that take one as the password) is read from the
    environment variable named by `password_env`, never from a flag or a file: command lines are
    visible to every user of the machine.
    """

    host: Text | None = None  # None: no MQTT
    port: Annotated[int, Field(ge=1, le=65535)] | None = None  # None: 1883, or 8883 with TLS
    prefix: Text = "froster-edge"
    client_id: Text | None = None  # None: froster-edge-<hostname> (stable: Home Assistant ids derive from it)
    username: Text | None = None  # None: $FROSTER_EDGE_MQTT_USERNAME if set
    password_env: Text = PASSWORD_ENV
    qos: Annotated[int, AfterValidator(_qos)] = Field(1, description="0, 1 or 2")
    retain: bool = True  # state and action topics retained (availability and discovery always are)
    discovery: bool = False  # Home Assistant MQTT discovery
    discovery_prefix: Text = "homeassistant"
    queue_size: Annotated[int, Field(ge=1)] = 1000  # events kept while the broker is unreachable; the oldest is dropped beyond
    state_interval_s: Annotated[float, Field(ge=0)] = 1.0  # a camera's state: at once on a new top label, else at most this often; 0: every decision
    tls: bool = False
    ca_file: FilePath | None = None  # None with tls: the system's CA certificates
    keepalive_s: Annotated[int, Field(ge=5)] = 30
    reconnect_min_s: Annotated[float, Field(gt=0)] = 0.5
    reconnect_max_s: Annotated[float, Field(gt=0)] = 10.0
    close_timeout_s: Annotated[float, Field(ge=0)] = 3.0  # at the end of a run, how long to wait for queued messages to go out

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                check_host(value, "host")
            except ConfigError as e:
                raise reason(e, "host") from None
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if any(c in value for c in "+#") or value.startswith("/") or value.endswith("/"):
            raise ValueError("must be a topic prefix without + or # and without a leading or trailing /")
        return value

    @field_validator("discovery_prefix")
    @classmethod
    def _discovery_prefix(cls, value: str) -> str:
        if any(c in value for c in "+#/"):
            raise ValueError("must be one topic level without +, # or /")
        return value

    @model_validator(mode="after")
    def _together(self) -> "MqttOptions":
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError(f"reconnect_min_s ({self.reconnect_min_s}) must not be above reconnect_max_s "
                             f"({self.reconnect_max_s})")
        if self.ca_file is not None and not self.tls:
            raise ValueError("ca_file needs tls: true")
        return self

    @property
    def broker_port(self) -> int:
        return self.port if self.port is not None else (8883 if self.tls else 1883)

    @property
    def client_name(self) -> str:
        return self.client_id or f"froster-edge-{socket.gethostname()}"


MQTT_DEFAULTS = MqttOptions()


def parse_address(text: str, where: str = "--mqtt") -> tuple[str, int | None]:
    """The broker's HOST or HOST:PORT (network.parse_address's rules; no port: 1883, or 8883 with TLS)."""
    return network_address(text, where, listen=False)


def check_mqtt_options(o: MqttOptions) -> None:
    """What the file cannot say alone, checked before any camera opens: a broker, an existing CA file."""
    if not o.host:
        raise ConfigError("mqtt: no broker host (give mqtt.host in the site file, or --mqtt HOST[:PORT])")
    if o.ca_file is not None and not Path(o.ca_file).is_file():
        raise ConfigError(f"mqtt.ca_file {o.ca_file}: no such file")


def topic_id(name: str) -> str:
    """A camera name as one topic level and Home Assistant object id ([A-Za-z0-9_-]); two cameras
    that give the same one are refused (topic_clash)."""
    return _TOPIC_SAFE.sub("_", name.strip()).strip("_").lower() or "_"


def label_id(label: str) -> str:
    """A label as one topic level and object id: topic_id, with a short hash of the label where it is
    not plain (events.slug's rule), so labels that differ only in punctuation or script get topics
    of their own."""
    base = topic_id(label)
    return base if PLAIN_NAME.fullmatch(label) else f"{base}_{short_hash(label)}"


class ActionEventLike(Protocol):
    """What this sink reads of runtime/site/events.py's ActionEvent."""

    camera: str
    label: str
    phase: str

    def to_json(self) -> dict: ...


@dataclass(frozen=True)
class Topics:
    """The topic layout (module docstring), in one place for the sink, the tests and docs/mqtt.md."""

    prefix: str
    discovery_prefix: str = "homeassistant"
    node: str = "froster_edge"

    @property
    def availability(self) -> str:
        return f"{self.prefix}/availability"

    def camera_availability(self, camera: str) -> str:
        return f"{self.prefix}/{topic_id(camera)}/availability"

    def state(self, camera: str) -> str:
        return f"{self.prefix}/{topic_id(camera)}/state"

    def event(self, camera: str) -> str:
        return f"{self.prefix}/{topic_id(camera)}/event"

    def action(self, camera: str, label: str) -> str:
        return f"{self.prefix}/{topic_id(camera)}/action/{label_id(label)}"

    def config(self, component: str, object_id: str) -> str:
        return f"{self.discovery_prefix}/{component}/{self.node}/{object_id}/config"


def discovery_configs(topics: Topics, camera: str, labels: list[str], version: str) -> list[tuple[str, dict]]:
    """Home Assistant MQTT discovery: the camera as a device with its top label, its score, and one
    binary sensor per action (on while an event of it is open). (topic, payload) pairs, retained."""
    cam = topic_id(camera)
    device = {"identifiers": [f"{topics.node}_{cam}"], "name": camera, "manufacturer": "froster-edge",
              "model": "open-vocabulary action recognition", "sw_version": version}
    common = {"availability": [{"topic": topics.availability}, {"topic": topics.camera_availability(camera)}],
              "availability_mode": "all", "payload_available": "online",
              "payload_not_available": "offline", "device": device,
              "origin": {"name": "froster-edge", "sw_version": version}}
    out = [
        (topics.config("sensor", f"{cam}_label"),
         {"name": "Action", "unique_id": f"{topics.node}_{cam}_label", "state_topic": topics.state(camera),
          "value_template": "{{ value_json.label }}", "json_attributes_topic": topics.state(camera),
          "icon": "mdi:run", **common}),
        (topics.config("sensor", f"{cam}_score"),
         {"name": "Action score", "unique_id": f"{topics.node}_{cam}_score", "state_topic": topics.state(camera),
          "value_template": "{{ (value_json.score * 100) | round(1) }}", "unit_of_measurement": "%",
          "state_class": "measurement", **common}),
    ]
    for label in labels:
        lab = label_id(label)
        out.append((topics.config("binary_sensor", f"{cam}_{lab}"),
                    {"name": ha_text(label), "unique_id": f"{topics.node}_{cam}_{lab}", "state_topic": topics.action(camera, label),
                     "payload_on": "ON", "payload_off": "OFF", **common}))
    return out


def ha_text(text: str, limit: int = HA_STATE_MAX) -> str:
    """`text` cut to Home Assistant's limit (an entity's state or name), ending in … when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def topic_clash(cameras: list[str]) -> str | None:
    """The error when two camera names give the same topic level, else None."""
    ids = [topic_id(c) for c in cameras]
    clash = {i for i in ids if ids.count(i) > 1}
    if not clash:
        return None
    return (f"mqtt: camera names {[c for c in cameras if topic_id(c) in clash]} give the same "
            f"topic {sorted(clash)[0]!r}; name the cameras differently")


@dataclass
class _Message:
    topic: str
    payload: bytes
    retain: bool


def _payload(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else json.dumps(value, separators=(",", ":")).encode()


class MqttSink:
    """Decisions (DecisionSink: emit/close) and action events (EventSink: event/close) to a broker."""

    def __init__(self, options: MqttOptions, cameras: list[str], labels: list[str] | dict[str, list[str]]):
        check_mqtt_options(options)
        try:
            import paho.mqtt.client as paho
        except ImportError as e:
            raise MissingCapability("--mqtt needs paho-mqtt (pip install paho-mqtt)") from e
        from ... import __version__

        clash = topic_clash(cameras)
        if clash:
            raise ConfigError(clash)
        self.options, self.cameras = options, list(cameras)
        self._names = list(cameras)  # by stream number, for decisions without a camera name
        self.version = __version__
        self.labels = {c: list(labels[c] if isinstance(labels, dict) else labels) for c in cameras}
        self.topics = Topics(options.prefix, options.discovery_prefix, topic_id(options.client_name))
        self.dropped = 0  # events dropped from a full queue
        self.published = 0  # acknowledged by the broker (QoS 1/2) or written to it (QoS 0)
        self.connects = 0
        self.status_ignored = 0  # Home Assistant "online" messages that came too soon after a republish
        self.oversized = 0  # incoming messages over MAX_INCOMING_BYTES that reached the sink: ignored
        self._republished = -float("inf")  # monotonic time of the last republish
        self._birth = False  # Home Assistant said "online": the publisher thread republishes (never paho's thread)
        self._queue: collections.deque[_Message] = collections.deque()
        self._control: dict[str, _Message] = {}  # availability, discovery: published first after a connect
        self._latest: dict[str, _Message] = {}  # newest retained value per state/action topic
        self._dirty: dict[str, None] = {}  # topics of _latest not yet published (ordered)
        self._states: dict[str, tuple[str, Decision]] = {}  # state topic -> (camera, newest decision not yet published)
        self._state_due: dict[str, float] = {}  # state topic -> when its next state may go (monotonic)
        self._state_label: dict[str, str] = {}  # state topic -> the top label last published
        self._final: _Message | None = None  # "offline", once close() is called
        self._inflight = 0
        self._hold = False  # after a reconnect: until paho's resends are acknowledged, publish nothing new
        self._connected = False
        self._closing = False  # close() started: "offline" queued, the rest flushed while time allows
        self._stopped = False  # close() gave up waiting: the publisher thread ends
        self._down_reported = False
        self._takeover_reported = False  # said once a run: the other client keeps taking the session back
        self._connected_at = 0.0  # monotonic time of the newest connection
        self._quick_losses = 0  # connections in a row closed within TAKEOVER_WINDOW_S of being made
        self._lock = threading.Condition()
        self._started = time.monotonic()

        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=options.client_name,
                             protocol=paho.MQTTv5)  # v5: the broker says why it closes a connection (a takeover)
        username = options.username or os.environ.get(USERNAME_ENV)
        password = os.environ.get(options.password_env)
        if username or password:
            client.username_pw_set(username or "", password)
        if options.tls:
            client.tls_set(ca_certs=str(options.ca_file) if options.ca_file else None)
        client.will_set(self.topics.availability, "offline", qos=options.qos, retain=True)
        client.reconnect_delay_set(options.reconnect_min_s, options.reconnect_max_s)  # type: ignore[arg-type]
        client.on_connect, client.on_disconnect = self._on_connect, self._on_disconnect
        client.on_connect_fail, client.on_publish, client.on_message = self._on_connect_fail, self._on_publish, self._on_message
        self.client = client
        for camera in self.cameras:
            self._latest[self.topics.camera_availability(camera)] = _Message(self.topics.camera_availability(camera),
                                                                             b"online", True)
            self._actions_off(camera)
        self._thread = threading.Thread(target=self._publisher, name="mqtt-publisher", daemon=True)
        self._thread.start()
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        connect = Properties(PacketTypes.CONNECT)
        connect.MaximumPacketSize = MAX_INCOMING_BYTES
        client.connect_async(options.host, options.broker_port, keepalive=options.keepalive_s, clean_start=True,
                             properties=connect)
        client.loop_start()  # paho's network thread: connects, reconnects with backoff, reads and writes

    @property
    def where(self) -> str:
        return f"{self.options.host}:{self.options.broker_port}"

    # --- the pipeline's side: never waits for the network ---

    def emit(self, decision: Decision) -> None:
        camera = self._camera(decision)
        topic = self.topics.state(camera)
        with self._lock:
            self._states[topic] = (camera, decision)
            if decision.label != self._state_label.get(topic):
                self._state_due[topic] = 0.0  # a new top label goes at once
            if self._state_due.get(topic, 0.0) <= time.monotonic():
                self._lock.notify_all()

    def event(self, event: ActionEventLike) -> None:
        with self._lock:
            self._enqueue(_Message(self.topics.event(event.camera), _payload(event.to_json()), False))
            if event.phase not in ("start", "end"):  # "clip": the event's files, its action state is unchanged
                self._lock.notify_all()
                return
            action = self.topics.action(event.camera, event.label)
            value = "ON" if event.phase == "start" else "OFF"
            self._enqueue(_Message(action, _payload(value), self.options.retain))
            self._latest[action] = _Message(action, _payload(value), self.options.retain)
            if event.camera in self.labels and event.label not in self.labels[event.camera]:
                self.labels[event.camera].append(event.label)  # a label swapped in at run time
                if self.options.discovery:
                    self._add_discovery(event.camera, self.labels[event.camera])
            self._lock.notify_all()

    def camera_added(self, camera: str, labels: list[str]) -> None:
        """A camera a reload started: its availability "online" and, with discovery, its device."""
        with self._lock:
            clash = topic_clash([*self.cameras, camera]) if camera not in self.cameras else None
            if clash:
                log.warning(f"{clash}; camera {camera} is not published")
                return
            if camera not in self.cameras:
                self.cameras.append(camera)
            self.labels[camera] = list(labels)
            self._set(self.topics.camera_availability(camera), b"online")
            self._actions_off(camera)
            if self.options.discovery:
                self._add_discovery(camera, self.labels[camera])
            self._lock.notify_all()

    def camera_state(self, camera: str, up: bool, why: str = "") -> None:
        """A camera's stream went down (its availability "offline": Home Assistant shows its entities
        unavailable, not its last label) or came back ("online")."""
        with self._lock:
            if camera not in self.cameras:
                return
            self._set(self.topics.camera_availability(camera), b"online" if up else b"offline")
            self._lock.notify_all()

    def camera_removed(self, camera: str) -> None:
        """A camera a reload stopped (its open events were closed before this): "offline", and its
        Home Assistant entities removed (an empty retained config each)."""
        with self._lock:
            if camera not in self.cameras:
                return
            self.cameras.remove(camera)
            labels = self.labels.pop(camera, [])
            self._set(self.topics.camera_availability(camera), b"offline")
            if self.options.discovery:
                for topic, _ in discovery_configs(self.topics, camera, labels, self.version):
                    self._control[topic] = _Message(topic, b"", True)
            self._lock.notify_all()

    def stats(self) -> dict[str, int]:
        """published: acknowledged (QoS 1/2) or written (QoS 0); dropped: event messages pushed out of
        the full queue; pending: not delivered (yet)."""
        with self._lock:
            pending = (len(self._queue) + len(self._dirty) + len(self._control) + len(self._states) + self._inflight
                       + (self._final is not None))
            return {"published": self.published, "dropped": self.dropped, "connects": self.connects, "pending": pending,
                    "status_ignored": self.status_ignored, "oversized": self.oversized}

    def close(self) -> None:
        """Say "offline", let what is queued go out (waiting up to close_timeout_s, also for a first
        connection still being made), disconnect."""
        with self._lock:
            if self._closing:
                return
            self._final = _Message(self.topics.availability, b"offline", True)  # after everything else
            self._control.pop(self.topics.availability, None)
            self._closing = True
            self._state_due = dict.fromkeys(self._states, 0.0)  # every camera's newest state goes before "offline"
            self._lock.notify_all()
            end = time.monotonic() + self.options.close_timeout_s
            while (self._has_pending() or self._inflight) and time.monotonic() < end:
                self._lock.wait(0.05)
            self._stopped = True
            self._lock.notify_all()
        stats = self.stats()
        self._thread.join(timeout=1.0)
        self.client.disconnect()  # a clean disconnect: the broker does not send the last will
        self.client.loop_stop()
        if stats["pending"] or stats["dropped"]:
            log.warning(f"mqtt: {stats['published']} message(s) delivered, {stats['pending']} not delivered "
                     f"(broker {self.where} unreachable), {stats['dropped']} event message(s) dropped from the full queue")

    # --- internals (the lock is never held while calling paho) ---

    def _camera(self, decision: Decision) -> str:
        camera = getattr(decision, "camera", None)  # Decision.camera once the site file lands; the source before
        return camera or self._names[decision.stream]

    def _set(self, topic: str, payload: bytes) -> None:
        """A retained value kept as the newest (republished after a reconnect); under the lock."""
        self._latest[topic] = _Message(topic, payload, True)
        self._dirty[topic] = None

    def _actions_off(self, camera: str) -> None:
        """Every action of the camera "OFF" (retained) at its start: Home Assistant's binary sensors
        read off, not unknown, and an "ON" a killed run left retained on the broker is replaced."""
        for label in self.labels.get(camera, []):
            topic = self.topics.action(camera, label)
            self._latest[topic] = _Message(topic, b"OFF", self.options.retain)
            self._dirty[topic] = None

    def _enqueue(self, message: _Message) -> None:
        if len(self._queue) >= self.options.queue_size:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(message)

    def _add_discovery(self, camera: str, labels: list[str]) -> None:
        for topic, payload in discovery_configs(self.topics, camera, labels, self.version):
            self._control[topic] = _Message(topic, _payload(payload), True)

    def _has_pending(self) -> bool:
        return bool(self._control or self._queue or self._dirty or self._final or self._due_state() is not None)

    def _due_state(self) -> str | None:
        """A state topic whose pending decision may be published now."""
        now = time.monotonic()
        return next((t for t in self._states if self._state_due.get(t, 0.0) <= now), None)

    def _state_message(self, topic: str) -> _Message:
        """The pending decision of `topic` encoded (on the publisher's thread), kept as the newest value."""
        camera, decision = self._states.pop(topic)
        state = {"camera": camera, **{k: v for k, v in decision.to_json().items() if k != "latency_ms"}}
        state["label"] = ha_text(state["label"])  # Home Assistant refuses a state over 255 characters
        self._latest[topic] = message = _Message(topic, _payload(state), self.options.retain)
        self._dirty.pop(topic, None)
        self._state_due[topic] = time.monotonic() + self.options.state_interval_s
        self._state_label[topic] = decision.label
        return message

    def _wait_s(self) -> float:
        """How long the publisher may sleep: until the first pending state is due, at most 0.5 s."""
        if not self._states:
            return 0.5
        due = min(self._state_due.get(t, 0.0) for t in self._states)
        return min(0.5, max(0.001, due - time.monotonic()))

    def _next(self) -> _Message | None:
        """The next message to hand to paho: control first, then events in order, then newest values."""
        if self._control:
            return self._control.pop(next(iter(self._control)))
        if self._queue:
            return self._queue.popleft()
        if self._dirty:
            topic = next(iter(self._dirty))
            del self._dirty[topic]
            return self._latest[topic]
        topic = self._due_state()
        if topic is not None:
            return self._state_message(topic)
        if self._final is not None and self._inflight == 0:
            final, self._final = self._final, None
            return final
        return None

    def _publisher(self) -> None:
        try:
            self._publish_loop()
        except Exception as e:  # a bug: say so once; the pipeline goes on without MQTT
            log.warning(f"mqtt: internal error in the publisher, nothing more is published: {type(e).__name__}: {e}")

    def _publish_loop(self) -> None:
        while True:
            with self._lock:
                while not (self._connected and (self._has_pending() or self._birth) and self._inflight < INFLIGHT
                           and not self._hold):
                    if self._stopped:
                        return
                    if not self.connects and not self._down_reported and time.monotonic() - self._started > CONNACK_S:
                        self._report_down(f"broker {self.where} has not answered the MQTT handshake within {CONNACK_S:.0f} s "
                                          "(no CONNACK: not an MQTT broker, or a stuck one?); still trying")
                    self._lock.wait(self._wait_s())
                if self._birth:  # Home Assistant's "online", served here: paho's network thread only set the flag
                    self._birth = False
                    self._republish()
                message = self._next()
                if message is None:  # only "offline" left, waiting for the acknowledgements before it
                    self._lock.wait(0.1)
                    continue
                self._inflight += 1
            info = self.client.publish(message.topic, message.payload, qos=self.options.qos, retain=message.retain)
            if info.rc != 0 and self.options.qos == 0:  # not connected after all: paho dropped it, keep it
                with self._lock:
                    self._inflight -= 1
                    self._queue.appendleft(message)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._report_down(f"broker {self.where} refused the connection: {reason_code}")
            return
        if self.options.discovery:
            client.subscribe(f"{self.options.discovery_prefix}/status", qos=self.options.qos)
        with self._lock:
            self.connects += 1
            self._connected, self._down_reported = True, False
            self._hold = self._inflight > 0  # paho resends these first; new messages follow them, in order
            self._republish()
            self._lock.notify_all()
        with self._lock:
            self._connected_at = time.monotonic()
            quiet = self._takeover_reported
        if not quiet:  # while another client takes the session back and forth, each connection is not news
            log.info(f"mqtt: connected to {self.where}")

    def _republish(self) -> None:
        """After a connect: "online", the discovery configs and every newest retained value again (a
        restarted broker may have lost them). Called with the lock held."""
        self._republished = time.monotonic()
        online = {self.topics.availability: _Message(self.topics.availability, b"online", True)}
        if not self._closing:
            self._control = {**online, **self._control}
        if self.options.discovery:
            for camera in self.cameras:
                for topic, payload in discovery_configs(self.topics, camera, self.labels[camera], self.version):
                    self._control[topic] = _Message(topic, _payload(payload), True)
        for topic in self._latest:
            self._dirty[topic] = None

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            was = self._connected
            self._connected = False
            if self.options.qos == 0:
                self._inflight = 0  # paho drops QoS 0 packets not yet written; QoS 1/2 ones it resends
            closing = self._closing
            self._lock.notify_all()
        if not was or closing:
            return
        with self._lock:
            quick = time.monotonic() - self._connected_at < TAKEOVER_WINDOW_S
            self._quick_losses = self._quick_losses + 1 if quick else 0
            said = self._takeover_reported
        takeover = getattr(reason_code, "value", None) == SESSION_TAKEN_OVER or self._quick_losses >= TAKEOVER_LOSSES
        if takeover and not said:  # two runs with one client id knock each other off on every reconnection
            with self._lock:
                self._takeover_reported = True
            log.warning(f"mqtt: session taken over: the broker {self.where} keeps closing this connection as soon as it "
                     f"is made, which is what it does when another client connects with the same client id "
                     f"{self.options.client_name!r} (one connection per client id); give each run its own mqtt "
                     "client_id (--mqtt-client-id)")
        elif not said:
            why = "" if getattr(reason_code, "value", None) == UNSPECIFIED else f" ({reason_code})"
            self._report_down(f"connection to {self.where} lost{why}; queueing events until it is back")

    def _on_connect_fail(self, client, userdata) -> None:
        with self._lock:
            self._quick_losses = 0  # the broker is away: not a takeover
        self._report_down(f"cannot reach broker {self.where}; retrying")

    def _report_down(self, message: str) -> None:
        with self._lock:
            if self._down_reported:
                return
            self._down_reported = True
        log.info(f"mqtt: {message}")

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            self._inflight = max(0, self._inflight - 1)
            self._hold = self._hold and self._inflight > 0
            self.published += 1
            self._lock.notify_all()

    def _on_message(self, client, userdata, message) -> None:
        if len(message.payload) > MAX_INCOMING_BYTES:  # a broker that ignored the Maximum Packet Size
            with self._lock:
                self.oversized += 1
                if self.oversized == 1:
                    log.warning(f"mqtt: a {len(message.payload)}-byte message on {message.topic} (at most "
                                f"{MAX_INCOMING_BYTES}): ignored (counted as oversized)")
            return
        if message.topic == f"{self.options.discovery_prefix}/status" and message.payload == b"online":
            with self._lock:  # Home Assistant restarted: it wants the discovery configs and states again
                if self._birth or time.monotonic() - self._republished < REPUBLISH_MIN_S:
                    # a flood (or a restart within seconds: the retained configs are there) would
                    # keep the configs ahead of every event and state: one republish is enough
                    self.status_ignored += 1
                    if self.status_ignored == 1:
                        log.warning(f"mqtt: {message.topic} 'online' again within {REPUBLISH_MIN_S:.0f} s of a "
                                    "republish: ignored (counted as status_ignored)")
                    return
                self._republished = time.monotonic()
                self._birth = True  # the publisher thread republishes: no work on paho's network thread
                self._lock.notify_all()
