"""The web view's HTTP server: one page, MJPEG live views and a small JSON API (standard library only).

Routes, all behind the token when there is one: GET / (the page); /api/streams (cameras, up or down and why), /api/streams/<i>.mjpg
and .jpg (cameras, live view, newest frame); /api/decisions?since=N; /api/events and
/api/events/<id>.jpg (an event's snapshot); /api/stats; GET and POST /api/vocabulary
({"add": "Name: description"} or {"remove": "Name"}); /api/search?q=TEXT (the run's archive, as
`froster-edge search --json`); /api/archive/<id>.jpg and .mp4 (an archived decision's thumbnail and
event clip); GET /metrics when the run has metrics on (one port, one token). No route takes a path
from the client: files served are the package's own page, snapshots by the event ids the clip writer
named, or thumbnails and clips by the decision ids the archive recorded.

See docs/web.md and docs/network.md.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from importlib import resources
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

from ....errors import ConfigError, FrosterError
from ..network import BoundedServer, refusal
from .live import Hub
from .options import HttpOptions
from .vocabulary import Vocabulary, VocabularyError

log = logging.getLogger(__name__)

BOUNDARY = "froster-edge-frame"
_STREAM = re.compile(r"^/api/streams/(\d{1,4})\.(mjpg|jpg)$")
_ARCHIVED = re.compile(r"^/api/archive/(\d{1,18})\.(jpg|mp4)$")
_SNAPSHOT = re.compile(r"^/api/events/([^/?#]{1,600})\.jpg$")  # an event id, percent-encoded (a camera named
# by its source has '/' and ':' in its ids); only ever a key into the hub's kept events


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


class WebServer:
    """The server and its thread; `start()` binds (a taken port is a one-line ConfigError)."""

    def __init__(self, hub: Hub, vocabulary: Vocabulary, stats: Callable[[], dict[str, Any]], options: HttpOptions,
                 metrics: Callable[[], tuple[bytes, str]] | None = None):
        self.hub, self.vocabulary, self.stats, self.options = hub, vocabulary, stats, options
        self.metrics = metrics  # () -> (body, content type) of /metrics; None: not served
        self._page = (_asset("page.html"), _asset("page.js"), _asset("page.css"))
        self._httpd: BoundedServer | None = None
        self._thread: threading.Thread | None = None
        self._clients = threading.BoundedSemaphore(options.max_clients)

    def start(self) -> "WebServer":
        handler = type("Handler", (_Handler,), {"web": self})
        try:
            self._httpd = BoundedServer((self.options.host, self.options.port), handler, self.options.max_connections,
                                        self.options.request_timeout_s)
        except OSError as e:
            raise ConfigError(f"--http {self.options.host}:{self.options.port}: cannot listen there ({e.strerror or e})") from e
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="web", daemon=True)
        self._thread.start()
        host = f"[{self.options.host}]" if ":" in self.options.host else self.options.host
        self.url = f"http://{host}:{self.port}/"
        log.info(f"web view on {self.url}" + (" (token required)" if self.options.token else ""))
        return self

    def close(self) -> None:
        self.hub.close()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def page(self) -> tuple[str, str]:
        """The page with its script and style inline under a fresh CSP nonce, and the nonce."""
        html, js, css = self._page
        nonce = secrets.token_urlsafe(16)
        return html.replace("{{nonce}}", nonce).replace("{{css}}", css).replace("{{js}}", js), nonce


class _Handler(BaseHTTPRequestHandler):
    web: WebServer
    server_version = "froster-edge"
    sys_version = ""
    protocol_version = "HTTP/1.1"  # an idle or stalled connection is closed by BoundedServer's timeout

    def log_message(self, format: str, *args: Any) -> None:  # the run's stderr is for the run
        pass

    # --- dispatch ---
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_HEAD(self) -> None:  # every method passes the token check first: a refusal tells nothing
        self._dispatch(self.command)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD

    def _dispatch(self, method: str) -> None:
        cpu, self._cpu_counted = time.thread_time(), 0.0
        try:
            self._handle(method)
        finally:
            self.web.hub.add_cpu(time.thread_time() - cpu - self._cpu_counted)

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        try:
            query = parse_qs(url.query, max_num_fields=8)
        except ValueError:
            query = {}  # over 8 fields: only a token could be lost, and then the request is refused
        problem = self._refused(method, query)
        if method != "GET":
            self.close_connection = True  # a refused body is never read: the connection cannot be reused
        if problem is not None:
            self.close_connection = True
            status, message = problem
            self._send_json({"error": message}, status, extra={"WWW-Authenticate": "Bearer"} if status == 401 else None)
            return
        try:
            self._route(method, url.path, query)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except VocabularyError as e:
            self._send_json({"error": str(e)}, HTTPStatus.BAD_REQUEST)
        except FrosterError as e:
            self._send_json({"error": str(e)}, HTTPStatus.INTERNAL_SERVER_ERROR)
        except Exception as e:  # a bug: one line to the client and to the run's log, the server goes on
            log.warning(f"web: internal error on {method} {url.path}: {type(e).__name__}: {e}")
            self._send_json({"error": f"internal error: {type(e).__name__}"}, HTTPStatus.INTERNAL_SERVER_ERROR)

    def _refused(self, method: str, query: dict[str, list[str]]) -> tuple[int, str] | None:
        """Why this request may not proceed (network.refusal): a missing or wrong token, a foreign
        Host without a token. The page's address may carry the token (?token=) on GET."""
        given = query["token"][0] if method == "GET" and query.get("token") else None
        return refusal(self.web.options.token, self.headers, given)

    def _route(self, method: str, path: str, query: dict[str, list[str]]) -> None:
        hub, web = self.web.hub, self.web
        if method not in ("GET", "POST"):
            self._send_json({"error": "method not allowed"}, HTTPStatus.METHOD_NOT_ALLOWED, extra={"Allow": "GET, POST"})
            return
        if method == "POST":
            if path != "/api/vocabulary":
                self._send_json({"error": "not found"}, HTTPStatus.NOT_FOUND)
                return
            self._post_vocabulary()
            return
        if path in ("/", "/index.html"):
            html, nonce = web.page()
            csp = (f"default-src 'none'; img-src 'self' data:; connect-src 'self'; script-src 'nonce-{nonce}'; "
                   f"style-src 'nonce-{nonce}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
            self._send(html.encode("utf-8"), "text/html; charset=utf-8", extra={"Content-Security-Policy": csp})
        elif path == "/api/streams":
            latest = hub.latest()
            self._send_json({"streams": [{"index": i, "camera": name, "latest": latest[i],
                                          "up": hub.down_reason(name) is None, "down_reason": hub.down_reason(name),
                                          "mjpeg": f"/api/streams/{i}.mjpg", "jpeg": f"/api/streams/{i}.jpg"}
                                         for i, name in ((i, hub.cameras[i]) for i in hub.live_streams())],
                             "stream_fps": web.options.stream_fps})
        elif (m := _STREAM.match(path)) is not None:
            stream = int(m.group(1))
            if stream not in hub.live_streams():
                self._send_json({"error": f"no stream {stream}"}, HTTPStatus.NOT_FOUND)
            elif m.group(2) == "jpg":
                got = hub.jpeg(stream)
                if got is None:
                    self._send_json({"error": "no frame yet"}, HTTPStatus.SERVICE_UNAVAILABLE)
                else:
                    self._send(got[1], "image/jpeg")
            else:
                self._mjpeg(stream)
        elif path == "/api/decisions":
            since = _int(query.get("since", ["0"])[0])
            self._send_json({"decisions": hub.decisions(since), "labels_versions": hub.table_versions,
                             "classes": [list(names) for names in hub.table_names]})
        elif path == "/api/events":
            if hub.events_enabled:
                self._send_json({"events": hub.events()})
            else:
                self._send_json({"events": None, "decisions": hub.decisions(0),
                                 "note": "this run records no action events: its recent decisions instead"})
        elif (m := _SNAPSHOT.match(path)) is not None:
            snapshot = hub.snapshot_path(unquote(m.group(1)))
            if snapshot is None:
                self._send_json({"error": "no snapshot for that event"}, HTTPStatus.NOT_FOUND)
            else:
                self._send(snapshot.read_bytes(), "image/jpeg")
        elif path == "/api/search":
            self._search(query)
        elif (m := _ARCHIVED.match(path)) is not None:
            self._archived(int(m.group(1)), m.group(2))
        elif path == "/api/stats":
            self._send_json({"run": web.stats(), "web": hub.summary()})
        elif path == "/api/vocabulary":
            self._send_json({**web.vocabulary.listing(), "in_use": [list(names) for names in hub.table_names]})
        elif path == "/metrics" and web.metrics is not None:
            body, kind = web.metrics()
            self._send(body, kind)
        else:
            self._send_json({"error": "not found"}, HTTPStatus.NOT_FOUND)

    def _search(self, query: dict[str, list[str]]) -> None:
        """The archive searched with the run's kept text encoder, on this request's thread."""
        from ..search import SearchOptions, search_archive, time_range

        hub, vocab = self.web.hub, self.web.vocabulary
        if hub.archive is None:
            self._send_json({"error": "this run keeps no archive (run --archive FILE.db)"}, HTTPStatus.NOT_FOUND)
            return
        try:
            top = _int(query.get("top", ["10"])[0], 10)
            lo, hi = time_range(query.get("since", [None])[0] or None, None, None)
            options = SearchOptions(camera=query.get("camera", [None])[0] or None, start=lo, end=hi,
                                    top=min(max(top, 1), 100))
            vocab.loaded.wait()
            if vocab.encoder is None:
                raise ConfigError(f"queries cannot be encoded: {vocab._encoder_error}")
            result = search_archive(hub.archive, vocab.bundle, query.get("q", []), options, encoder=vocab.encoder)
        except FrosterError as e:
            self._send_json({"error": str(e)}, HTTPStatus.BAD_REQUEST)
            return
        result.pop("archive", None)  # no path of the box in the answer
        for q in result["queries"]:
            for r in q["ranges"]:
                r["thumb_url"] = f"/api/archive/{r['thumb_id']}.jpg" if r["thumb_id"] is not None else None
                r["clip_url"] = f"/api/archive/{r['best_id']}.mp4" if hub.archived_clip(r["best_id"]) else None
                r.pop("clip", None)
                r.pop("snapshot", None)
        self._send_json(result)

    def _archived(self, decision: int, kind: str) -> None:
        hub = self.web.hub
        if kind == "jpg":
            data = hub.archived_thumb(decision)
            if data is None:
                self._send_json({"error": "no thumbnail for that decision"}, HTTPStatus.NOT_FOUND)
            else:
                self._send(data, "image/jpeg")
            return
        clip = hub.archived_clip(decision)
        if clip is None:
            self._send_json({"error": "no clip for that decision"}, HTTPStatus.NOT_FOUND)
        else:
            self._send(clip.read_bytes(), "video/mp4")

    def _post_vocabulary(self) -> None:
        opts = self.web.options
        if (self.headers.get("Content-Type") or "").split(";")[0].strip().lower() != "application/json":
            self._send_json({"error": "send JSON (Content-Type: application/json)"}, HTTPStatus.UNSUPPORTED_MEDIA_TYPE)
            return
        length = _int(self.headers.get("Content-Length") or "", -1)
        if length < 0:
            self._send_json({"error": "Content-Length is required"}, HTTPStatus.LENGTH_REQUIRED)
            return
        if length > opts.max_request_bytes:
            self.close_connection = True  # the body is not read
            self._send_json({"error": f"request over {opts.max_request_bytes} bytes"}, HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            return
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            self._send_json({"error": "the body is not valid JSON"}, HTTPStatus.BAD_REQUEST)
            return
        if not isinstance(body, dict) or len(body) != 1 or not ({"add", "remove"} & body.keys()):
            self._send_json({"error": 'send {"add": "Name: description"} or {"remove": "Name"}'}, HTTPStatus.BAD_REQUEST)
            return
        vocab = self.web.vocabulary
        t0 = time.monotonic()
        table = vocab.add(body["add"]) if "add" in body else vocab.remove(body["remove"])
        self._send_json({"actions": [{"name": n, "text": t} for n, t in zip(table.names, table.texts, strict=False)],
                         "written_s": round(time.monotonic() - t0, 3)})

    def _mjpeg(self, stream: int) -> None:
        if not self.web._clients.acquire(blocking=False):
            self._send_json({"error": f"at most {self.web.options.max_clients} live views at once"},
                            HTTPStatus.SERVICE_UNAVAILABLE)
            return
        hub, period = self.web.hub, 1.0 / self.web.options.stream_fps
        hub.count_client(+1)
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            last = 0
            while not hub.closed.is_set():
                t, cpu = time.monotonic(), time.thread_time()
                got = hub.jpeg(stream, last)
                if got is not None:
                    last, data = got
                    self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                                     .encode("ascii") + data + b"\r\n")
                    self.wfile.flush()
                spent = time.thread_time() - cpu  # counted as it goes: a view stays open for hours
                hub.add_cpu(spent)
                self._cpu_counted += spent
                hub.closed.wait(max(0.0, period - (time.monotonic() - t)))
        finally:
            hub.count_client(-1)
            self.web._clients.release()

    # --- responses ---
    def _send(self, body: bytes, content_type: str, status: int = HTTPStatus.OK, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, obj: Any, status: int = HTTPStatus.OK, extra: dict[str, str] | None = None) -> None:
        self._send(json.dumps(obj).encode("utf-8"), "application/json", status, extra)


def _int(text: str, default: int = 0) -> int:
    try:
        return int(text)
    except ValueError:
        return default
