"""The vocabulary as the page edits it: the watched label table, one action added or removed at a time.

Adding encodes the action's prompts with the bundle's ONNX text encoder through the same library
call as `froster-edge labels --bundle ... --append`, into the label file the run watches (the
bundle's labels.npz with its manifest re-hashed, or the run's --labels). The encoder is loaded once
per run. Removing drops the row (`remove_classes`), re-encoding nothing. Writes are atomic and
serialised; the runtime's label watcher swaps the table in between two decisions.

See docs/web.md.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

from ....bundle import manifest as mf
from ....bundle.labels import LabelTable, PinnedPath, load_labels
from ....bundle.relabel import BundleTextEncoder, relabel_bundle, remove_classes  # `froster-edge labels --bundle`
from ....errors import ConfigError, FrosterError
from ....prompts import ClassText
from .options import HttpOptions

log = logging.getLogger(__name__)


class VocabularyError(ConfigError):
    """A change the page asked for and that was refused; the message is shown on the page."""


class Vocabulary:
    """Reads and changes the label table the pipeline watches."""

    def __init__(self, bundle: Path, labels_path: Path, manifest: dict[str, Any], options: HttpOptions,
                 on_written: Callable[[str, list[str], float], None] | None = None):
        self.bundle, self.labels_path, self.options = Path(bundle), Path(labels_path), options
        model = manifest["model"]
        self.fingerprint, self.dim = model["fingerprint"], int(model["embed_dim"])
        own = self.bundle / manifest.get("labels", {}).get("file", mf.LABELS_FILE)
        self.own_table = self.labels_path.resolve() == own.resolve() and own.name == mf.LABELS_FILE
        self.on_written = on_written
        self._pin = PinnedPath(self.labels_path)
        self._lock = threading.Lock()
        self._cached: tuple[tuple, LabelTable] | None = None  # (file identity, table) of the last read
        self.loads = 0  # tables read from the file
        self.encoder: BundleTextEncoder | None = None
        self._encoder_error: str | None = None
        self.loaded = threading.Event()  # loaded beside the run's start, not before it
        threading.Thread(target=self._load_encoder, name="web-text-encoder", daemon=True).start()

    def _load_encoder(self) -> None:
        """Once for the run; a bundle that cannot encode still runs, and its page refuses additions."""
        try:
            self.encoder = BundleTextEncoder.load(self.bundle)
        except FrosterError as e:
            self._encoder_error = str(e)
            log.warning(f"web: new actions cannot be added: {e}")
        except Exception as e:  # a bug: the same refusal, never a thread's traceback on the run's stderr
            self._encoder_error = f"the text encoder did not load ({type(e).__name__}: {e})"
            log.info(f"web: {self._encoder_error}")
        finally:
            self.loaded.set()

    def table(self) -> LabelTable:
        """The table as the file holds it now, read again only when the file changed (its identity:
        device, inode, size, modification time), so `GET /api/vocabulary` costs no load. A file that
        now leads elsewhere than at the start (a link swapped in) is refused, never read."""
        self._check_pin()
        st = os.stat(self.labels_path)
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        cached = self._cached
        if cached is not None and cached[0] == key:
            return cached[1]
        table = load_labels(self.labels_path, self.fingerprint, self.dim)
        self._cached = (key, table)
        self.loads += 1
        return table

    def listing(self) -> dict[str, Any]:
        table = self.table()
        return {"actions": [{"name": n, "text": t} for n, t in zip(table.names, table.texts, strict=False)],
                "file": self.labels_path.name, "max_actions": self.options.max_actions,
                "max_action_chars": self.options.max_action_chars}

    def add(self, text: object) -> LabelTable:
        """Encode one "Name" or "Name: description" and append it to the watched table."""
        entry = self._parse(text)
        self.loaded.wait()
        if self.encoder is None:
            raise VocabularyError(f"new actions cannot be added: {self._encoder_error}")
        with self._lock:
            current = self.table()
            if len(current.names) >= self.options.max_actions:
                raise VocabularyError(f"the vocabulary is full ({self.options.max_actions} actions); remove one first")
            submitted = time.monotonic()
            self._check_pin()
            try:
                table = relabel_bundle(self.bundle, [entry], self._out, append=True, encoder=self.encoder)
            except FrosterError as e:
                raise VocabularyError(_reason(e)) from e
            self._written(entry.name, table, submitted)
            return table

    def remove(self, name: object) -> LabelTable:
        """Drop one action (by name, any case) from the watched table."""
        if not isinstance(name, str) or not name.strip():
            raise VocabularyError("name the action to remove")
        with self._lock:
            before = self.table().names
            submitted = time.monotonic()
            self._check_pin()
            try:
                table = remove_classes(self.bundle, [name], self._out)
            except FrosterError as e:
                raise VocabularyError(str(e)) from e
            self._written(next(n for n in before if n not in table.names), table, submitted)
            return table

    def _check_pin(self) -> None:
        try:
            self._pin.check()
        except FrosterError as e:
            raise VocabularyError(str(e)) from e

    @property
    def _out(self) -> Path | None:
        """The label file to write: None for the bundle's own table (written with its manifest)."""
        return None if self.own_table else self.labels_path

    def _parse(self, text: object) -> ClassText:
        if not isinstance(text, str):
            raise VocabularyError("an action is a text: a name, or \"Name: description\"")
        if len(text) > self.options.max_action_chars:
            raise VocabularyError(f"an action is at most {self.options.max_action_chars} characters, "
                                  f"this one has {len(text)}")
        try:
            return ClassText.parse(text)
        except ConfigError as e:
            raise VocabularyError(str(e)) from e

    def _written(self, action: str, table: LabelTable, submitted: float) -> None:
        log.info(f"web: vocabulary now {len(table.names)} actions ({action!r} changed), "
                 f"written to {self.labels_path} in {time.monotonic() - submitted:.2f} s")
        if self.on_written is not None:
            self.on_written(action, table.names, submitted)


def _reason(e: FrosterError) -> str:
    """The library's message without the label file's path (the page has no use for it)."""
    return str(e).replace("cannot append: ", "")
