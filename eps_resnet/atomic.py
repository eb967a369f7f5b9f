"""The project's small files: written so that a reader (or a rerun after a crash) never sees half
of one, and YAML read back."""
from __future__ import annotations

import errno
import json
import os
import tempfile
from contextlib import contextmanager

import yaml


@contextmanager
def atomic_path(path: str):
    """Yields a temporary path beside ``path`` (same extension, so writers that look at it pick
    the right format); it replaces ``path`` only if the block finishes without an error."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.tmp-",
                               suffix=os.path.splitext(path)[1])
    os.close(fd)
    # mkstemp makes the file private (0600); give it the mode any new file gets under the umask,
    # so collaborators read results as they read everything else the user writes
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str, text: str) -> None:
    """``text`` as the file ``path``, whole or not at all; an OSError names ``path`` (a failed
    write or close, as on a full disk, names no file of its own)."""
    try:
        with atomic_path(path) as tmp, open(tmp, "w") as f:
            f.write(text)
    except OSError as e:
        if e.filename is not None:
            raise
        raise OSError(e.errno, e.strerror, path) from None


def write_yaml(path: str, data: dict) -> None:
    write_text(path, yaml.safe_dump(data, sort_keys=False))


#: The largest YAML file read (the project's records are a few KiB, a workflow config a few dozen).
YAML_MAX_BYTES = 16 << 20
#: Aliases, and nodes once every alias is expanded, that a YAML document may hold: a few aliases
#: are what yaml.safe_dump writes for a repeated object; a "billion laughs" nests thousands.
YAML_MAX_ALIASES, YAML_MAX_NODES = 200, 200_000


class YAMLLimitError(yaml.YAMLError):
    """A YAML file beyond YAML_MAX_BYTES, YAML_MAX_ALIASES or YAML_MAX_NODES."""


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses a document whose aliases expand past YAML_MAX_NODES
    nodes (or which holds more than YAML_MAX_ALIASES aliases) while composing it, before any
    expansion is built."""

    def __init__(self, stream):
        super().__init__(stream)
        self._aliases, self._sizes = 0, {}

    def compose_node(self, parent, index):
        alias = self.check_event(yaml.AliasEvent)
        node = super().compose_node(parent, index)
        if alias:
            self._aliases += 1
            if self._aliases > YAML_MAX_ALIASES:
                raise YAMLLimitError(f"more than {YAML_MAX_ALIASES} aliases")
            return node
        if isinstance(node, yaml.SequenceNode):
            size = 1 + sum(self._sizes.get(id(child), 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            size = 1 + sum(self._sizes.get(id(k), 1) + self._sizes.get(id(v), 1) for k, v in node.value)
        else:
            size = 1
        if size > YAML_MAX_NODES:
            raise YAMLLimitError(f"more than {YAML_MAX_NODES:,} values once its aliases are expanded")
        self._sizes[id(node)] = size
        return node


def load_yaml(stream):
    """``yaml.safe_load`` through BoundedLoader: a YAMLLimitError (a YAMLError) past the limits."""
    loader = BoundedLoader(stream)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_yaml(path: str) -> dict | None:
    """A YAML mapping, ``{}`` for an empty file, None when the file does not exist; a file over
    YAML_MAX_BYTES, or whose aliases expand too far, raises YAMLLimitError (a YAMLError)."""
    if not os.path.exists(path):
        return None
    size = os.path.getsize(path)
    if size > YAML_MAX_BYTES:
        raise YAMLLimitError(f"{size:,} bytes, more than the {YAML_MAX_BYTES:,} a YAML file here holds")
    with open(path) as f:
        return load_yaml(f) or {}


def read_json(path: str, expected: str, error: type[Exception]):
    """The JSON value of the file ``path``; ``error`` in one line naming the file and what was
    ``expected`` when it is not JSON in UTF-8."""
    from .errors import first_line

    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise error(f"{path} is not valid JSON ({first_line(e)[:120]}); expected "
                    f"{expected}") from None


class PlantedLinkError(OSError):
    """A lock file that is a symbolic link: writing through it would overwrite its target."""


def open_lock_file(path: str, shared: bool = False, readonly: bool = False):
    """``path`` opened for reading and writing, created if missing, never through a symbolic
    link (O_NOFOLLOW: a link planted in its place raises PlantedLinkError, naming it) and not
    truncated: its holder writes it only once it holds the lock. ``shared`` (a folder several
    users share): a file this process creates is left writable by every user, and one another
    user created read-only is opened for reading, which is all a lock needs. ``readonly``: for
    a shared lock only, opened for reading and never created (FileNotFoundError)."""
    flags = (os.O_RDONLY if readonly else os.O_RDWR | os.O_CREAT) | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise PlantedLinkError(errno.ELOOP, f"{path} is a symbolic link, not a lock file: "
                                   "remove it (nothing is written through a link)") from None
        if not (shared and e.errno == errno.EACCES):
            raise
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        return os.fdopen(fd, "r")
    if readonly:
        return os.fdopen(fd, "r")
    if shared and os.fstat(fd).st_uid == os.geteuid():
        os.fchmod(fd, 0o666)
    return os.fdopen(fd, "r+")
