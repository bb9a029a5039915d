"""Web view options (`--http`, the site file's `http:` section): the one place their defaults live.

The server binds 127.0.0.1 unless told otherwise; any other address needs a token, then checked on
every request. A token given for a loopback address is checked too. Addresses and the token rule
are runtime/site/network.py's.

See docs/web.md and docs/network.md.
"""

from __future__ import annotations

import os
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from ....errors import ConfigError
from ....schema import Model, Text, updated
from ..network import LOOPBACK, check_host, check_token, is_loopback, parse_address, reason

TOKEN_ENV = "FROSTER_EDGE_HTTP_TOKEN"
Port = Annotated[int, Field(ge=0, le=65535)]


class HttpOptions(Model):
    """Where the web view listens, who may use it, and what it may cost the box.

    stream_fps / stream_width: the live views are re-encoded at most this often, this wide
    (never wider than the source), only while a client watches; the pipeline only hands over
    its newest frame. recent: decisions (and events) kept per camera for the page.
    max_connections / request_timeout_s: open connections beyond the cap are closed at once, and
    a connection silent this long is closed, so idle clients cannot hold the process's files.
    """

    host: Text = LOOPBACK
    port: Port = 8080
    token: str | None = Field(None, description="at least 16 characters, no spaces; left out: $FROSTER_EDGE_HTTP_TOKEN")
    stream_fps: Annotated[float, Field(gt=0)] = 5.0
    stream_width: Annotated[int, Field(ge=16)] = 480
    jpeg_quality: Annotated[int, Field(ge=1, le=100)] = 70
    max_clients: Annotated[int, Field(ge=1)] = 8  # concurrent live-view streams; more are refused (503)
    recent: Annotated[int, Field(ge=1)] = 20
    max_request_bytes: Annotated[int, Field(ge=1)] = 16_384  # request bodies; headers are bounded by http.server (64 KiB)
    max_actions: Annotated[int, Field(ge=1)] = 1000  # vocabulary size the page may grow the table to
    max_action_chars: Annotated[int, Field(ge=1)] = 300  # one "Name: description" entry
    max_connections: Annotated[int, Field(ge=1)] = 64  # open connections (live views included)
    request_timeout_s: Annotated[float, Field(gt=0)] = 10.0

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return _valid(check_host, value, "host")

    @field_validator("token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        return None if value is None else _valid(check_token, value, "token")

    @model_validator(mode="after")
    def _views_fit(self) -> "HttpOptions":
        if self.max_clients > self.max_connections:
            raise ValueError(f"max_clients ({self.max_clients}) must not be above max_connections ({self.max_connections}): "
                             "each live view holds a connection")
        return self


def _valid(check, value, what: str):
    """A network-layer check as a field validator: its ConfigError becomes the field's error."""
    try:
        return check(value, what)
    except ConfigError as e:
        raise reason(e, what) from None


HTTP_DEFAULTS = HttpOptions()


def parse_listen(text: str, where: str = "--http") -> tuple[str, int]:
    """The web view's HOST:PORT (network.parse_address's rules)."""
    host, port = parse_address(text, where, listen=True)
    return host, int(port or 0)


def resolve_token(options: HttpOptions) -> HttpOptions:
    """The options with the token from the environment when none was given, checked: a non-loopback
    address without a token, or a token that breaks the token rule, is a ConfigError."""
    token = options.token
    if token is None and os.environ.get(TOKEN_ENV):
        token = check_token(os.environ[TOKEN_ENV], f"${TOKEN_ENV}")
    if token is None and not is_loopback(options.host):
        raise ConfigError(f"--http {options.host}:{options.port} is reachable from other machines: give a token "
                          f"(--http-token, the site file's http.token, or {TOKEN_ENV}) or bind 127.0.0.1")
    return updated(options, "http", token=token) if token != options.token else options
