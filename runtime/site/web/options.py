"""Web view options (`--http`, the site file's `http:` section): the one place their defaults live.

The server binds 127.0.0.1 unless told otherwise; any other address needs a token, then checked on
every request. A token given for a loopback address is checked too.

See docs/web.md.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from ....errors import ConfigError

TOKEN_ENV = "FROSTER_EDGE_HTTP_TOKEN"
MIN_TOKEN_CHARS = 16


@dataclass(frozen=True)
class HttpOptions:
    """Where the web view listens, who may use it, and what it may cost the box.

    stream_fps / stream_width: the live views are re-encoded at most this often, this wide
    (never wider than the source), only while a client watches; the pipeline only hands over
    its newest frame. recent: decisions (and events) kept per camera for the page.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    stream_fps: float = 5.0
    stream_width: int = 480
    jpeg_quality: int = 70
    max_clients: int = 8  # concurrent live-view streams; more are refused (503)
    recent: int = 20
    max_request_bytes: int = 16_384  # request bodies; headers are bounded by http.server (64 KiB)
    max_actions: int = 1000  # vocabulary size the page may grow the table to
    max_action_chars: int = 300  # one "Name: description" entry


HTTP_DEFAULTS = HttpOptions()


def parse_listen(text: str) -> tuple[str, int]:
    """"HOST:PORT", ":PORT" or "PORT" (host 127.0.0.1); "[::1]:PORT" for IPv6."""
    text = text.strip()
    host, port = HTTP_DEFAULTS.host, text
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ConfigError(f"--http {text!r}: write an IPv6 address as [ADDRESS]:PORT")
    elif ":" in text:
        host, _, port = text.rpartition(":")
        host = host or HTTP_DEFAULTS.host
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"--http {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080") from None
    if not 0 <= number <= 65535:
        raise ConfigError(f"--http {text!r}: port {number} is not in 0..65535")
    return host, number


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_token(options: HttpOptions) -> HttpOptions:
    """The options with the token from the environment when none was given, checked: a non-loopback
    address without a token, or a token too short to resist guessing, is a ConfigError."""
    from dataclasses import replace

    _check_types(options)
    token = options.token if options.token is not None else os.environ.get(TOKEN_ENV) or None
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"the web view's token must be at least {MIN_TOKEN_CHARS} characters "
                          "(e.g. python -c 'import secrets; print(secrets.token_urlsafe())')")
    if token is None and not is_loopback(options.host):
        raise ConfigError(f"--http {options.host}:{options.port} is reachable from other machines: give a token "
                          f"(--http-token, the site file's http.token, or {TOKEN_ENV}) or bind 127.0.0.1")
    problems = [
        (not options.stream_fps > 0, f"the web view's stream rate must be positive, not {options.stream_fps}"),
        (options.stream_width < 16, f"the web view's stream width must be at least 16 px, not {options.stream_width}"),
        (not 1 <= options.jpeg_quality <= 100, f"JPEG quality is 1..100, not {options.jpeg_quality}"),
        (options.max_clients < 1, f"the web view needs at least 1 client, not {options.max_clients}"),
        (options.recent < 1, f"the web view keeps at least 1 recent decision, not {options.recent}"),
    ]
    for bad, message in problems:
        if bad:
            raise ConfigError(message)
    return replace(options, token=token)


_KINDS = {"host": (str, "a text"), "token": (str, "a text"), "port": (int, "an integer"),
          "stream_fps": ((int, float), "a number"), "stream_width": (int, "an integer"),
          "jpeg_quality": (int, "an integer"), "max_clients": (int, "an integer"), "recent": (int, "an integer"),
          "max_request_bytes": (int, "an integer"), "max_actions": (int, "an integer"),
          "max_action_chars": (int, "an integer")}


def _check_types(options: HttpOptions) -> None:
    """The site file's `http:` values reach the options unchecked: a wrong kind is one line here,
    not a TypeError when the server binds or a request is measured against it."""
    for name, (kind, what) in _KINDS.items():
        value = getattr(options, name)
        if (value is None and name == "token") or (isinstance(value, kind) and not isinstance(value, bool)):
            continue
        raise ConfigError(f"http.{name} must be {what}, not {value!r}")
    if not 0 <= options.port <= 65535:
        raise ConfigError(f"http.port {options.port} is not in 0..65535")
