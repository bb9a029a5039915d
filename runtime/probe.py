"""Why a network stream does not open: asked of the server itself.

OpenCV only says "not opened". When it does, this module connects to the stream's host and port
and, for rtsp:// and http://, sends the request a player sends first (RTSP DESCRIBE, HTTP GET),
with the source's own credentials (basic, or digest when the server asks for it), and reads the
status line. So a closed port, an unknown host, a host that does not answer, missing credentials,
a wrong password (401 to the credentials given), a wrong path (404) and a server that answers but
whose stream FFmpeg could not read are told apart. The probe reads the status line and headers
only, never a body, and gives up after `timeout` seconds. Messages carry the redacted URL only.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import socket
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from .source_url import redact

DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443, "rtmp": 1935, "srt": 9000}


@dataclass(frozen=True)
class Diagnosis:
    """`kind` is one of: refused, unknown-host, no-answer, needs-credentials, wrong-credentials,
    not-found, forbidden, server-error, answers (the server said yes: the stream itself did not
    decode), unknown (nothing could be asked: a scheme this probe does not speak)."""

    kind: str
    detail: str

    def __str__(self) -> str:
        return self.detail


def diagnose(url: str, timeout: float = 5.0) -> Diagnosis:
    """Ask the server behind `url` (credentials included) why its stream does not open."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        return Diagnosis("unknown", f"the port in {redact(url)} is not a number")
    if not host or port is None:
        return Diagnosis("unknown", "the URL names no host and port to ask")
    where = f"{host}:{port}"
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror:
        return Diagnosis("unknown-host", f"unknown host {host} (no such name)")
    except ConnectionRefusedError:
        return Diagnosis("refused", f"connection refused by {where} (nothing listens there: wrong port, or the server is down)")
    except (socket.timeout, TimeoutError):
        return Diagnosis("no-answer", f"no answer from {where} within {timeout:g} s (host down, unreachable or filtered)")
    except OSError as e:
        return Diagnosis("no-answer", f"{where} cannot be reached ({e.strerror or e})")
    with sock:
        sock.settimeout(timeout)
        if scheme not in ("rtsp", "http"):
            return Diagnosis("answers", f"{where} accepts connections, but the stream could not be opened")
        try:
            return _ask(sock, scheme, url, parts)
        except (OSError, ValueError) as e:
            return Diagnosis("answers", f"{where} accepts connections but gave no {scheme.upper()} answer ({e})")


def _ask(sock: socket.socket, scheme: str, url: str, parts) -> Diagnosis:
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    bare = url.replace(f"{parts.netloc}", parts.netloc.rpartition("@")[2], 1)  # no credentials on the wire's URL
    method = "DESCRIBE" if scheme == "rtsp" else "GET"
    target = bare if scheme == "rtsp" else (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    reader = sock.makefile("rb")
    auth = None
    if user is not None and password is not None:
        auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    status, reason, headers = _request(sock, reader, scheme, method, target, parts.netloc.rpartition("@")[2], 1, auth)
    challenge = headers.get("www-authenticate", "")
    if status == 401 and user is not None and password is not None and challenge.lower().startswith("digest"):
        auth = _digest(challenge, user, password, method, target)
        status, reason, headers = _request(sock, reader, scheme, method, target, parts.netloc.rpartition("@")[2], 2, auth)
    code = f"{status} {reason}".strip()
    if status == 401:
        if user is None or password is None:
            return Diagnosis("needs-credentials", f"the server needs a user name and password ({code}): give the user "
                                                  "in the URL and the password by password_env or password_file")
        return Diagnosis("wrong-credentials", f"the server refused user {user!r} and its password ({code}): wrong "
                                              "user or password, or the password was changed on the camera")
    if status == 404:
        return Diagnosis("not-found", f"no stream at path {parts.path or '/'!r} on this server ({code})")
    if status == 403:
        return Diagnosis("forbidden", f"the server forbids this stream to user {user!r} ({code})")
    if status >= 400:
        return Diagnosis("server-error", f"the server answered {code}")
    return Diagnosis("answers", f"the server answers ({code}), but FFmpeg could not read the stream "
                                "(its codec or transport: try rtsp_transport)")


def _request(sock: socket.socket, reader, scheme: str, method: str, target: str, host: str, cseq: int,
             auth: str | None) -> tuple[int, str, dict[str, str]]:
    lines = [f"{method} {target} {'RTSP/1.0' if scheme == 'rtsp' else 'HTTP/1.1'}"]
    lines += [f"CSeq: {cseq}", "Accept: application/sdp"] if scheme == "rtsp" else [f"Host: {host}", "Connection: keep-alive"]
    lines += ["User-Agent: froster-edge-probe"] + ([f"Authorization: {auth}"] if auth else [])
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    status_line = reader.readline(1024).decode("latin-1").strip()
    m = re.match(r"^(RTSP|HTTP)/\d\.\d (\d{3}) ?(.*)$", status_line)
    if m is None:
        raise ValueError(f"not a status line: {status_line[:60]!r}")
    headers: dict[str, str] = {}
    for _ in range(100):
        line = reader.readline(8192).decode("latin-1").strip()
        if not line:
            break
        key, _, value = line.partition(":")
        headers.setdefault(key.strip().lower(), value.strip())
    length = int(headers.get("content-length", "0") or 0)
    if 0 < length <= 65536:
        reader.read(length)  # the body of a 401 before the second request on this connection
    return int(m.group(2)), m.group(3), headers


def _digest(challenge: str, user: str, password: str, method: str, uri: str) -> str:
    """RFC 2617 digest (MD5, with or without qop=auth) for one request."""
    fields = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge[len("digest"):]))
    realm, nonce = fields.get("realm", ""), fields.get("nonce", "")
    md5 = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731  (the protocol's hash, not a password store)
    ha1, ha2 = md5(f"{user}:{realm}:{password}"), md5(f"{method}:{uri}")
    parts = [f'username="{user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
    if "auth" in fields.get("qop", "").split(","):
        cnonce, nc = os.urandom(8).hex(), "00000001"
        parts += [f'response="{md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")}"', "qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
    else:
        parts.append(f'response="{md5(f"{ha1}:{nonce}:{ha2}")}"')
    if "opaque" in fields:
        parts.append(f'opaque="{fields["opaque"]}"')
    return "Digest " + ", ".join(parts)
