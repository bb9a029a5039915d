"""The site's network rules in one place: addresses, the loopback rule, tokens, the HTTP server.

Every address (`--http`, `--metrics`, `metrics.listen`, `--mqtt`) goes through `parse_address`;
`is_loopback` decides what needs no token; `check_token` is the one token rule (flag, environment
or file alike); `refusal` is the one request check (token, else a loopback Host); `BoundedServer`
is the HTTP server of the web view and of a metrics endpoint of its own: a cap on open
connections and a read timeout, so idle connections cannot use up the process's file descriptors
(the cameras' too) before any token is checked. See docs/network.md.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import socket
import threading
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from typing import Any, Mapping

from ...errors import ConfigError, shorten

LOOPBACK = "127.0.0.1"
MIN_TOKEN_CHARS = 16
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})")


def parse_address(text: str, where: str, *, listen: bool, default_port: int | None = None) -> tuple[str, int | None]:
    """"HOST:PORT", ":PORT" or "PORT" (host 127.0.0.1), "[IPv6]:PORT"; "HOST" alone where the port
    may be left out (to connect: `default_port`, None leaves it unsaid). `listen`: port 0 (any free
    port) is allowed; to connect, 1..65535. Errors read `where: reason, not 'TEXT'`."""
    s = text.strip() if isinstance(text, str) else text
    shown = shorten(repr(text))
    if not isinstance(s, str) or not s:
        raise ConfigError(f"{where}: must be HOST:PORT (e.g. 127.0.0.1:8080), not {shown}")
    if s.startswith("["):
        host, sep, rest = s[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ConfigError(f"{where}: write an IPv6 address as [ADDRESS]:PORT, not {shown}")
        port = rest[1:] if rest else None
    elif s.count(":") > 1:
        raise ConfigError(f"{where}: write an IPv6 address as [ADDRESS]:PORT, not {shown}")
    elif ":" in s:
        host, _, port = s.partition(":")
    elif s.isdigit():
        host, port = "", s
    else:
        host, port = s, None
    host = host or LOOPBACK
    check_host(host, where)
    if port is None:
        if listen:
            raise ConfigError(f"{where}: must be HOST:PORT with a port (e.g. 127.0.0.1:8080), not {shown}")
        return host, default_port
    low = 0 if listen else 1
    if not (port.isascii() and port.isdigit()) or not low <= int(port) <= 65535:
        raise ConfigError(f"{where}: the port must be a number in {low}..65535, not {shown}")
    return host, int(port)


def check_host(host: Any, where: str) -> str:
    """A host name or IP address (no scheme, no path, no spaces)."""
    if isinstance(host, str):
        try:
            ipaddress.ip_address(host)
            return host
        except ValueError:
            if _HOST.fullmatch(host):
                return host
    raise ConfigError(f"{where}: must be a host name or IP address, not {shorten(repr(host))}")


def reason(error: ConfigError, where: str) -> ValueError:
    """A network check's ConfigError as a model field's error (the key path is the model's)."""
    return ValueError(str(error).removeprefix(f"{where}: "))


def is_loopback(host: str) -> bool:
    """Only this machine can reach the address: no token is needed there."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_token(token: str, where: str) -> str:
    """The one token rule, whatever gave it: at least MIN_TOKEN_CHARS characters, no whitespace or
    control characters (a token of spaces, or one cut by a stray newline, is refused)."""
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() or not c.isprintable() for c in token):
        raise ConfigError(f"{where}: a token must be at least {MIN_TOKEN_CHARS} characters without spaces "
                          "(e.g. python -c 'import secrets; print(secrets.token_urlsafe())')")
    return token


def read_token_file(path, where: str) -> str:
    """A token kept in a file (one line; the line's end is not part of it)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{where}: {path} cannot be read ({getattr(e, 'strerror', None) or e})") from e
    return check_token(text.rstrip("\r\n"), f"{where} ({path})")


def refusal(token: str | None, headers: Mapping[str, str], query_token: str | None = None) -> tuple[int, str] | None:
    """Why a request may not proceed: with a token, a missing or wrong one; without, a Host that is
    not loopback (so a web page cannot reach a loopback server through a DNS name rebound to
    127.0.0.1). None: it may."""
    if token is None:
        if not is_loopback(host_name(headers.get("Host") or "")):
            return HTTPStatus.FORBIDDEN, "this server answers on its loopback address only"
        return None
    auth = headers.get("Authorization") or ""
    given = auth[7:].strip() if auth[:7].lower() == "bearer " else query_token
    if given is None:
        return HTTPStatus.UNAUTHORIZED, "a token is required (Authorization: Bearer TOKEN, or ?token= on the page)"
    if not hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8")):
        return HTTPStatus.UNAUTHORIZED, "wrong token"
    return None


def host_name(header: str) -> str:
    """The host of a Host header, without its port or IPv6 brackets."""
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rsplit(":", 1)[0]


class BoundedServer(ThreadingHTTPServer):
    """A threading HTTP server that keeps at most `max_connections` connections open (more are
    closed at once, counted in `refused`) and gives each socket a read/write timeout."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the kernel's queue of connections not yet accepted (no descriptor of ours)

    def __init__(self, address: tuple[str, int], handler: type, max_connections: int, timeout_s: float):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.max_connections, self.timeout_s = max_connections, timeout_s
        self.open_connections = 0
        self.refused = 0
        self._count = threading.Lock()
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        sock.settimeout(self.timeout_s)
        return sock, address

    def process_request(self, request, client_address) -> None:  # noqa: ANN001 - socketserver's signature
        with self._count:
            full = self.open_connections >= self.max_connections
            if not full:
                self.open_connections += 1
        if full:
            self.refused += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._release()
            raise

    def process_request_thread(self, request, client_address) -> None:  # noqa: ANN001
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def _release(self) -> None:
        with self._count:
            self.open_connections -= 1

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001 - a client gone mid-answer
        pass
