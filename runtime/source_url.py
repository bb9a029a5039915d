"""Camera credentials: the one place a source URL's password is split off, supplied and hidden.

A source is parsed once (sources.parse_source). Only what opens the stream (SourceSpec.target,
read by sources.open_capture and the fault probe) holds the URL with its password; everything
else (log lines, decisions, stats, events, file names, metric labels, MQTT, the web API) gets
the redacted form `rtsp://user:***@host/path`, made here.

The authority ends at the first '/', '?' or '#' after `://` and the user information at its last
'@', as FFmpeg splits it: a password holding one of those characters must be percent-encoded in
the URL. A password from `password_env` / `password_file` (a site file's camera) is encoded here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from ..errors import ConfigError

MASK = "***"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


@dataclass(frozen=True)
class UrlParts:
    """scheme:// user : password @ rest (rest: host, port, path, query), the user and password as
    they are written in the URL (percent-encoded)."""

    scheme: str
    user: str | None
    password: str | None
    rest: str

    def join(self, password: str | None) -> str:
        cred = "" if self.user is None else self.user + ("" if password is None else ":" + password) + "@"
        return f"{self.scheme}{cred}{self.rest}"


def split_url(url: str) -> UrlParts | None:
    """A URL's parts, or None for text that is no URL (a camera index, a file)."""
    m = _SCHEME.match(url)
    if m is None:
        return None
    scheme, after = m.group(1), url[m.end():]
    end = min([i for i in (after.find(c) for c in "/?#") if i >= 0], default=len(after))
    authority, tail = after[:end], after[end:]
    at = authority.rfind("@")
    if at < 0:
        return UrlParts(scheme, None, None, after)
    user, sep, password = authority[:at].partition(":")
    return UrlParts(scheme, user, password if sep else None, authority[at + 1:] + tail)


def redact(url: str) -> str:
    """The URL with its password (if any) replaced by ***: what may be shown or stored."""
    parts = split_url(url)
    if parts is None or parts.password is None:
        return url
    return parts.join(MASK)


def redact_text(text: str) -> str:
    """Every URL in a free text (an error message, a log line) redacted."""
    return _URL_IN_TEXT.sub(lambda m: redact(m.group(0)), text)


def with_password(url: str, password: str, where: str) -> str:
    """The URL with `password` (plain text; percent-encoded here) as its password. The user must be
    in the URL and no password already: a password given twice is an error, not a choice."""
    parts = split_url(url)
    if parts is None:
        raise ConfigError(f"{where}: a password needs a URL source (rtsp://USER@host/path), not {url!r}")
    if parts.user is None or parts.user == "":
        raise ConfigError(f"{where}: give the user name in the source, as rtsp://USER@host/path")
    if parts.password is not None:
        raise ConfigError(f"{where}: the source already has a password; give it in one place only")
    return parts.join(quote(password, safe=""))


def with_camera_options(text: str, password: str | None, transport: str | None, where: str) -> str:
    """A source's text with its password put in; refuses a transport for a non-RTSP source. The one
    check of a camera's credentials and transport keys (the site file and the source parser use it)."""
    if transport is not None and not text.strip().lower().startswith(("rtsp://", "rtsps://")):
        raise ConfigError(f"{where}: rtsp_transport applies to rtsp:// sources only, not {redact(text.strip())}")
    return text if password is None else with_password(text.strip(), password, where)


def read_password(where: str, env: str | None, file: Path | None) -> str | None:
    """The password from the environment variable `env` or the file `file` (its first line), or
    None when neither is given. Missing, unreadable or empty: a ConfigError naming the key."""
    if env is not None and file is not None:
        raise ConfigError(f"{where}: give password_env or password_file, not both")
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise ConfigError(f"{where}.password_env: the environment variable {env} is not set or empty")
        return value
    if file is not None:
        try:
            lines = Path(file).read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise ConfigError(f"{where}.password_file: {file} cannot be read ({e.strerror or e})") from e
        except UnicodeDecodeError as e:
            raise ConfigError(f"{where}.password_file: {file} is not UTF-8 text") from e
        if not lines or not lines[0]:
            raise ConfigError(f"{where}.password_file: {file} is empty (the password is its first line)")
        return lines[0]
    return None


def secrets_of(url: str) -> tuple[str, ...]:
    """The password of a URL as written and decoded (to scrub from messages a library wrote)."""
    parts = split_url(url)
    if parts is None or not parts.password:
        return ()
    return tuple({parts.password, unquote(parts.password)})


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """`text` with every URL redacted and every given secret replaced by ***."""
    out = redact_text(text)
    for s in sorted(secrets, key=len, reverse=True):
        out = out.replace(s, MASK)
    return out
