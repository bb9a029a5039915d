"""The run's signals: SIGINT and SIGTERM ask it to stop, SIGHUP asks for a reload.

A signal handler runs in the main thread between two bytecodes, possibly while that thread holds a
lock (inside `threading.Event.set()`, a logging handler, a buffered write): a handler that takes a
lock (a logging handler's, a buffered write's) can wait on itself for good. So the handler here only writes the signal's
number to a pipe (one non-blocking `os.write`, re-entrant and lock-free); a watcher thread reads
the pipe and does the work (sets the stop event, logs, requests the reload). Any burst of signals
therefore costs a few bytes each, and the ones that find the pipe full are dropped: they would only
repeat a request already queued.

SIGHUP: each `on_hangup` callback is called (a site file's reload, the events file's reopening
after a rotation). Without any (a run started from a terminal whose ssh session dropped), SIGHUP is
a no-op said once on the log: the run goes on.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Callable

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunSignals:
    """While active (a `with` block in the main thread), SIGINT/SIGTERM set `stop` (counted in
    `received`) and SIGHUP calls `on_hangup`. Outside the main thread it does nothing."""

    def __init__(self, stop: threading.Event):
        self.stop = stop
        self.received = 0  # stop signals seen
        self.hangups = 0  # SIGHUPs seen
        self.on_hangup: list[Callable[[], None]] = []
        self._previous: dict = {}
        self._write_fd = -1
        self._thread: threading.Thread | None = None
        self._ignored_said = False

    def _handle(self, signum: int, frame) -> None:
        fd = self._write_fd
        if fd >= 0:
            try:
                os.write(fd, bytes((signum,)))
            except OSError:  # the pipe is full (the request is queued already) or closed at exit
                pass

    def __enter__(self) -> "RunSignals":
        # SIGINT too: a process started in the background by a non-interactive shell inherits SIGINT
        # ignored, and `kill -INT` must still stop it cleanly with its stats
        if threading.current_thread() is not threading.main_thread():
            return self
        read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        self._thread = threading.Thread(target=self._watch, args=(read_fd,), name="signals", daemon=True)
        self._thread.start()
        wanted = (*STOP_SIGNALS, signal.SIGHUP) if hasattr(signal, "SIGHUP") else STOP_SIGNALS
        self._previous = {sig: signal.signal(sig, self._handle) for sig in wanted}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
        fd, self._write_fd = self._write_fd, -1  # a handler still pending sees -1 and writes nothing
        if fd >= 0:
            os.close(fd)  # the watcher reads end-of-file and ends
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def _watch(self, read_fd: int) -> None:
        try:
            while True:
                data = os.read(read_fd, 4096)
                if not data:
                    return
                self._dispatch(data)
        finally:
            os.close(read_fd)

    def _dispatch(self, data: bytes) -> None:
        stops = [b for b in data if b in STOP_SIGNALS]
        if stops:
            first = self.received == 0
            self.received += len(stops)
            if first:
                log.info(f"{signal.Signals(stops[0]).name}: stopping (stats and outputs are being finished)")
            self.stop.set()
        hangups = len(data) - len(stops)
        if hangups:  # a burst is one request: the callbacks only ask for work done once, later
            self.hangups += hangups
            for callback in self.on_hangup:
                callback()
            if not self.on_hangup and not self._ignored_said:
                self._ignored_said = True
                log.warning("SIGHUP: nothing to reload (no site file, no events file); ignored, the run goes on")
