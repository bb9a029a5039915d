"""The site's one network layer (runtime/site/network.py): one address rule for the web view, metrics
and MQTT; one token rule for a flag, the environment and a file; /metrics on the web view's server
(one port, one token); and the attack of issue 31's probe: idle connections by the hundred to the
web view's or the metrics endpoint's port, which must not use up the run's file descriptors
(its looping video has to reopen) before any token is checked."""

from __future__ import annotations

import json
import os
import resource
import socket
import sys
import urllib.error
import urllib.request

import pytest

from froster_edge.errors import ConfigError
from froster_edge.runtime.site.config import MetricsOptions
from froster_edge.runtime.site.mqtt import parse_address as mqtt_address
from froster_edge.runtime.site.network import check_token, read_token_file
from froster_edge.runtime.site.web.options import parse_listen

from .helpers import CLIPS
from .web_run import WebRun

needs_linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts the run's descriptors in /proc")
TOKEN = "a-token-of-twenty-four-c"
CLIP = CLIPS / "stgcn_clean_and_jerk.mp4"


@pytest.mark.parametrize("text, listen, connect", [
    ("127.0.0.1:8080", ("127.0.0.1", 8080), ("127.0.0.1", 8080)),
    ("9108", ("127.0.0.1", 9108), ("127.0.0.1", 9108)),  # once a host for MQTT, an error for metrics
    (":1883", ("127.0.0.1", 1883), ("127.0.0.1", 1883)),
    ("[::1]:80", ("::1", 80), ("::1", 80)),
    ("broker.lan", None, ("broker.lan", None)),  # a broker without a port: 1883 (8883 with TLS)
    ("host:0", ("host", 0), None),  # listen on any free port; nothing to connect to
    ("host:x", None, None), ("::1", None, None), ("a b:80", None, None), ("h:70000", None, None), ("", None, None),
])
def test_one_address_rule(text, listen, connect):
    for expected, parse in ((listen, lambda: parse_listen(text)), (connect, lambda: mqtt_address(text)),
                            (listen, lambda: MetricsOptions(listen=text).address)):
        if expected is None:
            with pytest.raises((ConfigError, ValueError)):
                parse()
        else:
            assert parse() == expected


def test_one_token_rule_for_a_flag_the_environment_and_a_file(tmp_path, monkeypatch):
    from froster_edge.runtime.site.metrics import metrics_token

    for bad in (" " * 16, " " * 40, "x" * 15, "tab\tinside-a-long-token", "two words in a long token"):
        with pytest.raises(ConfigError, match="at least 16 characters without spaces"):
            check_token(bad, "--http-token")
        monkeypatch.setenv("FROSTER_EDGE_METRICS_TOKEN", bad)
        with pytest.raises(ConfigError, match=r"^\$FROSTER_EDGE_METRICS_TOKEN: a token must be"):
            metrics_token(MetricsOptions())
        (tmp_path / "token").write_text(bad + "\n")
        with pytest.raises(ConfigError, match="metrics.token_file .*: a token must be"):
            metrics_token(MetricsOptions(token_file=tmp_path / "token"))
    (tmp_path / "token").write_text(TOKEN + "\n")  # the line's end is not part of it
    assert read_token_file(tmp_path / "token", "metrics.token_file") == TOKEN


def request(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def idle_connections(port: int, n: int) -> list[socket.socket]:
    """`n` connections that send nothing (each also a descriptor of this process)."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        socks.append(s)
    return socks


def open_fds(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@needs_linux
def test_the_metrics_endpoint_alone_checks_host_caps_connections_and_times_out(monkeypatch):
    from froster_edge.runtime.site.metrics import MetricsServer

    class Empty:
        def collect(self):
            return iter(())

    monkeypatch.setattr(MetricsServer, "MAX_CONNECTIONS", 8)
    monkeypatch.setattr(MetricsServer, "TIMEOUT_S", 1.0)
    server = MetricsServer(MetricsOptions(listen="127.0.0.1:0"), Empty())
    port = server.server.server_port
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        assert request(url)[0] == 200
        assert request(url, {"Host": "attacker.example:80"})[0] == 403  # no token: loopback Host names only
        assert request(f"http://127.0.0.1:{port}/other")[0] == 404
        before = open_fds()
        socks = idle_connections(port, 100)
        try:
            # ours are 100; the server keeps at most 8 of its side and closes the rest at once
            assert open_fds() - before <= 100 + 8 + 2
            for s in socks:  # every idle connection is closed by the server: refused, or timed out
                s.settimeout(60)
                assert s.recv(1) == b""
            assert server.server.refused >= 100 - 8
        finally:
            for s in socks:
                s.close()
        assert request(url)[0] == 200  # and it serves again
    finally:
        server.close()


@needs_linux
def test_idle_connections_do_not_starve_the_run_and_metrics_share_the_web_port(tiny_bundle, tmp_path):
    """The probe's attack at a bounded scale: the run may hold 100 descriptors more than it has
    (prlimit), then 300 idle connections arrive at its web port. Without the cap each would hold a descriptor and a
    thread until the limit is reached and the looping clip cannot be reopened; with it the run's
    descriptors stay bounded, decisions go on past the end of the 10 s clip, and once the
    attackers are timed out the web view and /metrics answer with their token."""
    site = tmp_path / "site.yaml"
    site.write_text(json.dumps({
        "cameras": [{"name": "clip", "source": str(CLIP), "realtime": True, "loop": True}],
        "defaults": {"sample_fps": 8, "hop": 1},
        "metrics": {},  # with the web view on: its /metrics, behind its token
        "http": {"host": "127.0.0.1", "port": 0, "token": TOKEN, "max_connections": 16, "request_timeout_s": 1}}))
    run = WebRun(tiny_bundle, tiny_bundle / "labels.npz", site=site)
    try:
        port = int(run.url.rstrip("/").rsplit(":", 1)[1])
        pid = run.proc.pid
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 600:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 1024), hard))  # room for our side of the attack
        base = open_fds(pid)
        limit = base + 100  # room for what the run opens itself (the clip again at each loop), not for 300 idle clients
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
        socks = idle_connections(port, 300)
        try:
            assert open_fds(pid) <= base + 16 + 4
            n = len(run.decisions)
            # the clip is ~10 s and realtime: decisions across more than one loop of it
            run._wait(lambda: len(run.decisions) >= n + 100, 180, "100 decisions while attacked")
            assert open_fds(pid) <= base + 16 + 4
        finally:
            for s in socks:
                s.close()
        auth = {"Authorization": f"Bearer {TOKEN}"}
        status, body = run._wait(lambda: (lambda r: r if r[0] == 200 else None)(request(f"{run.url}metrics", auth)), 60,
                                 "/metrics answering after the attack")
        assert b"froster_edge_decisions_total" in body or b"froster_edge_decisions" in body
        assert request(f"{run.url}metrics")[0] == 401  # one port, one token
        assert request(f"{run.url}api/stats", auth)[0] == 200
        assert run.proc.poll() is None
        assert not any("cannot be opened" in line or "Too many open files" in line for line in run.log), run.log
    finally:
        log = run.stop()
    assert "Traceback" not in log, log
