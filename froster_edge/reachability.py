"""Is a download host reachable? Torch-free, so `make demo` can ask without waiting.

A plain TCP connect with a short timeout answers at once, where the Hugging Face client would retry
for a long time before failing.

See docs/install.md.
"""

from __future__ import annotations

import os
import socket
import urllib.parse

DEFAULT_ENDPOINT = "https://huggingface.co"


def address_of(url: str) -> tuple[str, int] | None:
    """(host, port) of a URL, None when it names no host."""
    parsed = urllib.parse.urlparse(url)
    if not parsed.hostname:
        return None
    return parsed.hostname, parsed.port or (80 if parsed.scheme == "http" else 443)


def hub_address() -> tuple[str, int] | None:
    """Where Hugging Face hub weights come from: $HF_ENDPOINT (a mirror) when set, as huggingface_hub reads it."""
    return address_of(os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/"))


def reachable(address: tuple[str, int], timeout: float = 3.0) -> bool:
    try:
        socket.create_connection(address, timeout=timeout).close()
        return True
    except OSError:
        return False
