"""The web view (`froster-edge run --http HOST:PORT`): live views, decisions, stats and the vocabulary
in a browser, for boxes without a screen. Standard library HTTP server; no torch; importing the
package loads only the options.

options (HttpOptions; addresses and the token rule are ../network.py's), live (frames and decisions
from the pipeline), vocabulary (adding/removing actions in the watched label table), server
(routes, token checks, the page, /metrics when the run has metrics on).

See docs/web.md and docs/network.md.
"""

from __future__ import annotations

from .options import HTTP_DEFAULTS, TOKEN_ENV, HttpOptions, parse_listen, resolve_token

__all__ = ["HTTP_DEFAULTS", "TOKEN_ENV", "HttpOptions", "parse_listen", "resolve_token", "start_web"]


def start_web(pipeline, hub, options: HttpOptions, metrics=None):
    """Serve `pipeline` (whose sinks and frame sinks include `hub`, a live.Hub) on options.host:port;
    `metrics`: () -> (body, content type) served at /metrics. Returns the started server.WebServer."""
    from .server import WebServer
    from .vocabulary import Vocabulary

    hub.attach(lambda stream: pipeline.cameras[stream].classifier.table)  # each camera's own (subset) table
    vocabulary = Vocabulary(pipeline.bundle, pipeline.labels_path, pipeline.manifest, options, hub.expect)
    return WebServer(hub, vocabulary, pipeline.stats.to_dict, options, metrics).start()
