"""Persistence shared by every stage: atomic file and directory swaps, content hashes, and the
hash-verified safetensors files that students and training states are made of.

A file is written to a hidden temporary beside the target, flushed, then renamed over it; a
directory is filled in a hidden sibling and swapped in with two renames (`recover` undoes a kill
between them), so a kill leaves the old or the new, never a torn one. Leftovers carry the writer's
pid (`.<name>.tmp-<pid>...`), so only those of dead processes are touched. A symlinked target stays a
symlink. `check_outputs` checks every output destination before any work starts. No torch at
import: the tensor helpers import torch and safetensors when called.

See docs/architecture.md.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from .errors import CheckpointError, shorten

if TYPE_CHECKING:
    import torch

# `.name.tmp-PID...` (a file or directory being written) and `.name.old-PID` (a directory moved
# aside); `staging` is the name of bundle temporaries that older froster-edge versions leave.
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old|staging)-(?P<pid>\d+)(?:[.-].*)?$")


@contextmanager
def atomic_path(path: str | Path, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path` in one rename (a symlink's
    target is replaced, the link stays).

    keep_suffix: the temporary name ends with the target's suffix (writers that pick the format
    from the name, such as OpenCV's VideoWriter, need it)."""
    path = Path(os.path.realpath(path)) if Path(path).is_symlink() else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}-", suffix=path.suffix if keep_suffix else "",
                               dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o644)  # mkstemp makes 0600; written files are meant to be shared
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield an empty hidden directory to fill; on success it replaces `final` (which may exist).

    On an exception the temporary directory is deleted and `final` is as it was. The old `final`
    is moved aside, the new one renamed in, then the old one deleted; a kill between the two
    renames is undone by the next `recover(final)` (which this runs first).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    recover(final.parent, final.name)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        for sub in [tmp, *(p for p in tmp.rglob("*") if p.is_dir())]:
            fsync_dir(sub)
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        fsync_dir(final.parent)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def folder_lock(folder: str | Path, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive flock on `folder` (the current folder when it is not one): writers of files
    in it take turns. The lock outlives renames in the folder and the kernel releases it however its
    holder ends. Yields False, holding nothing, when `wait` is False and another process holds it."""
    fd = os.open(folder if Path(folder).is_dir() else ".", os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def recover(folder: str | Path, name: str | None = None) -> list[Path]:
    """Tidy what killed writes left in `folder` (only of `name`, when given); returns what it touched.

    A directory moved aside whose replacement never came in is put back; every other leftover of
    a process that is gone is deleted. Leftovers of live processes (a concurrent writer) stay.
    """
    folder = Path(folder)
    touched: list[Path] = []
    if not folder.is_dir():
        return touched
    for leftover in sorted(folder.iterdir()):
        m = _LEFTOVER.match(leftover.name)
        if not m or (name is not None and m["name"] != name) or _alive(int(m["pid"])):
            continue
        final = folder / m["name"]
        if m["kind"] == "old" and not final.exists():
            os.replace(leftover, final)  # killed after moving the old one aside, before the new one came in
        elif leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
        touched.append(leftover)
    return touched


def is_leftover(name: str) -> bool:
    """A file or folder name that a write of ours uses while it runs (or a kill left behind)."""
    return _LEFTOVER.match(name) is not None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_text(path: str | Path, what: str = "file", error: type[Exception] | None = None) -> str:
    """A UTF-8 text file a user gave: unreadable (a folder, no permission) or not text is `error`
    (default ConfigError) naming the file, never an OSError or UnicodeDecodeError."""
    from .errors import ConfigError

    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise (error or ConfigError)(f"{what} not found: {path}") from e
    except UnicodeDecodeError as e:
        raise (error or ConfigError)(f"{path} is not a UTF-8 text {what}: {e.reason} at byte {e.start}") from e
    except OSError as e:
        raise (error or ConfigError)(f"{path} cannot be read: {e.strerror or e}") from e


def read_json(path: str | Path, what: str = "file", error: type[Exception] | None = None, malformed: str = "is not valid JSON") -> Any:
    """A JSON file, parsed; missing, unreadable or malformed is one `error` line naming it (`malformed`:
    what a parse error is called: a user's file "is not valid JSON", one we wrote "is corrupt")."""
    from .errors import ConfigError

    try:
        return json.loads(read_text(path, what, error))
    except json.JSONDecodeError as e:
        raise (error or ConfigError)(f"{path} {malformed}: {e}") from e


def yaml_loader() -> Any:
    """The one YAML loader of the project: PyYAML's SafeLoader with the YAML 1.2 core schema.

    Only `true`/`false` are booleans and only `null`/`~`/empty is null, so a camera named `no` is
    the text "no" and `loop: off` is the text "off" (which a strict bool field refuses); numbers
    are 1.2's (`017` is 17, `0o17` octal, `1e-5` a float, no `1_000`, no sexagesimal `12:30`), no
    dates, no merge keys; a key given twice in one mapping is an error (1.2 requires unique keys)."""
    global _YAML12
    if _YAML12 is None:
        _YAML12 = _make_yaml12_loader()
    return _YAML12


_YAML12: Any = None


def _make_yaml12_loader() -> Any:
    import yaml
    from yaml.constructor import ConstructorError

    class Yaml12Loader(yaml.SafeLoader):
        yaml_implicit_resolvers: dict = {}

        def construct_mapping(self, node, deep=False):  # noqa: ANN001 - PyYAML's signature
            seen: set = set()
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    key = self.construct_object(key_node, deep=deep)
                    if key in seen:
                        raise ConstructorError(None, None, f"key {shorten(repr(key))} is given twice", key_node.start_mark)
                    seen.add(key)
            return super().construct_mapping(node, deep)

    def integer(loader, node) -> int:  # noqa: ANN001
        text = loader.construct_scalar(node)
        sign, digits = (-1, text[1:]) if text[:1] == "-" else (1, text.lstrip("+"))
        base = 8 if digits[:2] == "0o" else 16 if digits[:2] == "0x" else 10
        return sign * int(digits[2:] if base != 10 else digits, base)

    def real(loader, node) -> float:  # noqa: ANN001
        text = loader.construct_scalar(node).lower()
        if text.endswith(".inf"):
            return float("-inf") if text.startswith("-") else float("inf")
        return float("nan") if text.endswith(".nan") else float(text)

    core = "tag:yaml.org,2002:"
    Yaml12Loader.add_implicit_resolver(core + "null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])
    Yaml12Loader.add_implicit_resolver(core + "bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
    Yaml12Loader.add_implicit_resolver(core + "int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
                                       list("-+0123456789"))
    Yaml12Loader.add_implicit_resolver(
        core + "float", re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                                   r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+0123456789."))
    Yaml12Loader.add_constructor(core + "int", integer)
    Yaml12Loader.add_constructor(core + "float", real)
    return Yaml12Loader


def parse_yaml(text: str, where: str) -> Any:
    """YAML text parsed by the project's loader; a syntax error, a duplicate key or nesting deeper
    than the parser can follow is one ConfigError line starting with `where`."""
    import yaml

    from .errors import ConfigError

    try:
        _check_depth(text, where)
        return yaml.load(text, Loader=yaml_loader())
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{where}: not valid YAML{at} ({shorten(e.problem or e.context or 'malformed', 160)})") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML ({shorten(str(e).splitlines()[0], 160)})") from e
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply to be a config (lists or mappings inside each other)") from None


MAX_YAML_DEPTH = 64  # lists and mappings inside each other; far beyond any config, far below Python's recursion limit


def _check_depth(text: str, where: str) -> None:
    """Refuse nesting deeper than MAX_YAML_DEPTH from PyYAML's event stream (which does not
    recurse), naming the key path and line where it goes too deep."""
    import yaml

    from .errors import ConfigError

    stack: list[dict[str, Any]] = []  # open collections: a mapping's current key, a sequence's current index
    for event in yaml.parse(text, Loader=yaml_loader()):
        starts = isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent))
        if starts or isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent)):
            parent = stack[-1] if stack else None
            if parent is not None and "index" in parent:
                parent["index"] += 1
            elif parent is not None and parent["want_key"] and isinstance(event, yaml.ScalarEvent):
                parent["key"], parent["want_key"] = event.value, False
            elif parent is not None and not starts:
                parent["want_key"] = True
        if starts:
            if len(stack) >= MAX_YAML_DEPTH:
                path = "".join(f"[{c['index']}]" if "index" in c else f".{c['key']}" for c in stack).lstrip(".")
                raise ConfigError(f"{where}: {shorten(path, 120)}: nested more than {MAX_YAML_DEPTH} levels deep "
                                  f"(line {event.start_mark.line + 1})")
            stack.append({"key": None, "want_key": True} if isinstance(event, yaml.MappingStartEvent) else {"index": -1})
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            stack.pop()
            if stack and "index" not in stack[-1]:
                stack[-1]["want_key"] = True


def read_yaml(path: str | Path, what: str = "file") -> Any:
    """A YAML file a user gave, parsed by the project's YAML 1.2 loader; missing, unreadable or
    malformed is one ConfigError line naming it."""
    return parse_yaml(read_text(path, what), str(path))


def read_versioned_json(path: Path, fmt: str, version: int, required: tuple[str, ...], error: type[Exception],
                        what: str) -> dict[str, Any]:
    """A JSON document of ours: parsed, its format and version checked, its required keys present.

    Every problem is `error` with a message naming the file, so each artifact reader states it once.
    """
    doc = read_json(path, what, error, malformed="is corrupt")
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise error(f"{path} is not a froster-edge {what}")
    if doc.get("version") != version:
        raise error(f"{path} has format version {doc.get('version')}; this froster-edge reads {version}")
    for key in required:
        if key not in doc:
            raise error(f"{path} lacks {key!r}")
    return doc


def read_folder_json(folder: str | Path, name: str, fmt: str, version: int, required: tuple[str, ...],
                     error: type[Exception], kind: str, what: str, hint: str = "") -> dict[str, Any]:
    """The versioned JSON file `name` that makes `folder` an artifact of ours (a bundle's manifest, a
    student directory's config), read as `read_versioned_json` does.

    `kind` names the artifact in the two folder errors ("bundle directory not found: ...", "... is not
    a froster-edge bundle: no manifest.json" + `hint`), so every artifact reader words them alike.
    """
    root = Path(folder)
    if not root.is_dir():
        raise error(f"{kind} directory not found: {root}")
    path = root / name
    if not path.is_file():
        raise error(f"{root} is not a froster-edge {kind}: no {name}{hint}")
    return read_versioned_json(path, fmt, version, required, error, what)


@dataclass(frozen=True)
class Output:
    """An output destination a command will write, and the option that named it (for messages)."""

    path: Path
    option: str  # e.g. "--stats-json"
    folder: bool = False  # a folder written into (created when missing), not a file


def check_outputs(outputs: Iterable[Output], inputs: Iterable[str | Path] = ()) -> None:
    """ConfigError naming the option unless every output can be written where it is meant to go.

    A file output must not be an existing folder or a non-regular file (a device, a FIFO: a rename
    would replace it), its nearest existing folder must take a new file, and it must not be an
    input (same file, through any link) or another output. Missing folders are fine (writers
    create them). Call it before any work.
    """
    from .errors import ConfigError, shorten

    taken = {_identity(Path(p)): f"is the input {shorten(str(p), 200)}: writing it would destroy it; choose another path"
             for p in inputs if Path(p).exists()}
    for out in outputs:
        path, name = Path(out.path), f"{out.option} {shorten(str(out.path), 200)}"
        check_reachable(path, name)
        key = _identity(path)
        if key in taken:
            raise ConfigError(f"{name} {taken[key]}")
        taken[key] = f"is also given to {out.option}: give each output its own path"
        if path.exists() and not out.folder:
            if path.is_dir():
                raise ConfigError(f"{name} is a folder: give a file name")
            if not path.is_file():
                raise ConfigError(f"{name} exists and is not a regular file (it would be replaced): choose another path")
        if out.folder and path.exists() and not path.is_dir():
            raise ConfigError(f"{name} exists and is not a folder")
        folder = path if out.folder else path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            raise ConfigError(f"{name}: {shorten(str(folder), 200)} is not a folder")
        try:
            fd, probe = tempfile.mkstemp(prefix=".froster-edge-probe-", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise ConfigError(f"{name}: cannot write in {shorten(str(folder), 200)} ({e.strerror or e})") from e


def check_reachable(path: str | Path, name: str) -> None:
    """ConfigError when `path` cannot even be looked up (a symlink loop, a file where a folder should
    be), which `Path.exists()` reports only as False; a missing path is fine."""
    from .errors import ConfigError

    try:
        os.stat(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise ConfigError(f"{name}: {e.strerror or e}: choose another path") from e


def _identity(path: Path) -> tuple:
    """What two paths share when they are the same file: the inode when it exists, else the real path."""
    try:
        st = os.stat(path)
        return ("inode", st.st_dev, st.st_ino)
    except OSError:
        return ("path", os.path.realpath(path))


# ---- tensors (torch and safetensors are imported when these are called) ------------------------

def _cpu_fp32(tensor: "torch.Tensor") -> "torch.Tensor":
    """Detached, on the CPU, floating point as fp32, contiguous: how tensors are saved and hashed."""
    import torch

    return tensor.detach().to("cpu", torch.float32 if tensor.is_floating_point() else tensor.dtype).contiguous()


def save_tensors(tensors: dict[str, "torch.Tensor"], path: str | Path) -> str:
    """Write a safetensors file atomically (floating point as fp32); returns its sha256."""
    from safetensors.torch import save

    data = save({k: _cpu_fp32(v) for k, v in tensors.items()})
    atomic_write_bytes(path, data)
    return sha256_bytes(data)


def read_tensors(path: str | Path, expected_sha256: str | None, record: str) -> dict[str, "torch.Tensor"]:
    """A safetensors file checked against the sha256 that `record` (the file listing it) gives.

    Read once, hashed, then parsed from memory; nothing is unpickled. CheckpointError names the
    file when it is missing, unrecorded, modified or unreadable.
    """
    from safetensors.torch import load

    path = Path(path)
    if expected_sha256 is None:
        raise CheckpointError(f"{record} records no hash for {path.name}")
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    data = path.read_bytes()
    if sha256_bytes(data) != expected_sha256:
        raise CheckpointError(f"{path} does not match the hash in {record}: the file is corrupt or from another save")
    try:
        return load(data)
    except Exception as e:  # safetensors raises its own error type for a bad header
        raise CheckpointError(f"{path} is not a readable safetensors file: {e}") from e


def tensors_fingerprint(tensors: dict[str, "torch.Tensor"]) -> str:
    """sha256 over names, shapes and fp32 values: the same weights give the same print, whatever
    file or device they came from (a model's fingerprint, a run's teacher)."""
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        t = _cpu_fp32(tensor)
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
