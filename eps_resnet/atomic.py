"""The project's small files: written so that a reader (or a rerun after a crash) never sees half
of one, and YAML read back."""
from __future__ import annotations

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
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def write_yaml(path: str, data: dict) -> None:
    write_text(path, yaml.safe_dump(data, sort_keys=False))


def read_yaml(path: str) -> dict | None:
    """A YAML mapping, ``{}`` for an empty file, None when the file does not exist."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return yaml.safe_load(f) or {}
