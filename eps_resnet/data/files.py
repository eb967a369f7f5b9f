"""Getting dataset files safely: download to a temporary name, verify the checksum before
anything reads the content, write outputs atomically, and a marker for a finished prepare."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from contextlib import contextmanager

import numpy as np
import yaml

from ..atomic import read_yaml
from ..errors import EpsResnetError
from ..logs import progress

MARKER = "prepared.yaml"
#: Files already checked against the marker, by (size, modification time): a rewrite of a file
#: changes its time, so an unchanged file need not be hashed again.
VERIFIED = ".verified.yaml"
DOWNLOAD_TIMEOUT_S = 30


class DataError(EpsResnetError):
    """A dataset problem the user can fix; the message is one line naming the file or folder."""


def md5sum(path: str) -> str:
    """The MD5 of a file's bytes, as hex."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def _stamp(st: os.stat_result) -> list[int]:
    """What says a file is unchanged since it was hashed: its size and modification time, and
    what no user can set back (`touch -r` restores the modification time): the inode's change
    time, the inode and the device."""
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def verify(path: str, expected_md5: str, remove_bad: bool) -> None:
    """Raise DataError (and delete the file if ``remove_bad``) when its MD5 is not the expected."""
    found = md5sum(path)
    if found != expected_md5.lower():
        if remove_bad:
            os.unlink(path)
        raise DataError(f"checksum mismatch for {path}: expected md5 {expected_md5}, found {found}"
                        + ("; the file was removed" if remove_bad else ""))


def download(url: str, dest: str, expected_md5: str, source_hint: str, progress: bool = True) -> str:
    """Download ``url`` to ``dest`` through ``dest + '.part'``; verified before it is renamed.

    A leftover ``.part`` from an interrupted download is discarded and the download restarts.
    """
    part = dest + ".part"
    if os.path.exists(part):
        os.unlink(part)
    os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(part, "wb") as f:
            total = int(response.headers.get("Content-Length") or 0) or None
            bar = _progress(total, os.path.basename(dest), progress)
            while block := response.read(1 << 20):
                f.write(block)
                bar.update(len(block))
            bar.close()
    except (urllib.error.URLError, OSError) as e:
        if os.path.exists(part):
            os.unlink(part)
        reason = getattr(e, "reason", e)
        raise DataError(f"cannot download {url} ({reason}); fetch it on a machine with network "
                        f"access and pass it with {source_hint}") from None
    verify(part, expected_md5, remove_bad=True)
    os.replace(part, dest)
    return dest


def _progress(total, name, enabled):
    return progress(total=total, what=f"download {name}", unit="B", unit_scale=True,
                    disable=not enabled)


@contextmanager
def staging_dir(out: str):
    """A temporary folder next to ``out`` whose files are moved into ``out`` only on success."""
    os.makedirs(out, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=out, prefix=".staging-")
    try:
        yield tmp
        # the marker last: a folder with a marker is a finished one
        for name in sorted(os.listdir(tmp), key=lambda n: n == MARKER):
            os.replace(os.path.join(tmp, name), os.path.join(out, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def clean_leftovers(out: str) -> None:
    """Remove staging folders of an interrupted prepare."""
    if os.path.isdir(out):
        for name in os.listdir(out):
            if name.startswith(".staging-"):
                shutil.rmtree(os.path.join(out, name), ignore_errors=True)


def save_arrays(folder: str, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Save a split as ``{split}_images.npy`` (uint8 NHWC) and ``{split}_labels.npy`` (int32)."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(f"{split} images must be uint8 N x H x W x 3, got {images.dtype} {images.shape}")
    if len(images) != len(labels):
        raise DataError(f"{split}: {len(images)} images but {len(labels)} labels")
    np.save(os.path.join(folder, f"{split}_images.npy"), images)
    np.save(os.path.join(folder, f"{split}_labels.npy"), labels.astype(np.int32))


def read_marker(out: str) -> dict | None:
    """A prepared folder's marker (None: not prepared); a DataError naming it when damaged."""
    path = os.path.join(out, MARKER)
    try:
        info = read_yaml(path)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is not readable YAML ({str(e).splitlines()[0][:100]}); delete it "
                        "and run `eps-resnet prepare` on that folder again") from None
    if info is not None and not isinstance(info, dict):
        raise DataError(f"{path} holds a {type(info).__name__}, not the mapping `eps-resnet "
                        "prepare` writes; delete it and run `eps-resnet prepare` on that folder again")
    return info


def write_marker(folder: str, info: dict) -> None:
    """The marker of a prepared folder, with the size and MD5 of every file in it (LMDB packs
    excepted: they hold the same bytes as the indexed images), against which every command
    checks the files it reads (:func:`verify_prepared`)."""
    names = [name for name in sorted(os.listdir(folder))
             if os.path.isfile(os.path.join(folder, name)) and ".lmdb" not in name
             and not name.startswith(".")]
    info = dict(info, checksums={name: md5sum(os.path.join(folder, name)) for name in names},
                sizes={name: os.path.getsize(os.path.join(folder, name)) for name in names})
    with open(os.path.join(folder, MARKER), "w") as f:
        yaml.safe_dump(info, f, sort_keys=False)


#: (path, *stamp) -> MD5 of the files this process verified.
_VERIFIED_HERE: dict[tuple, str] = {}


def verify_prepared(data_dir: str, dataset: str, meta: dict, names) -> dict[str, str]:
    """Check the prepared files ``names`` of ``data_dir`` against its marker before anything
    reads them: each file's size, then its MD5 (skipped for a file whose size, times and inode
    are those of an earlier check (:func:`_stamp`), recorded in the folder's ``.verified.yaml``). Returns
    {name: MD5}; a DataError naming the file and the command that rebuilds it on a mismatch."""
    checksums, sizes = meta.get("checksums") or {}, meta.get("sizes") or {}
    rebuild = f"run `eps-resnet prepare {dataset} --out {data_dir}` to rebuild it"
    cache_path = os.path.join(data_dir, VERIFIED)
    try:
        cache = read_yaml(cache_path) or {}
    except (yaml.YAMLError, UnicodeDecodeError):
        cache = {}
    cache = cache if isinstance(cache, dict) else {}
    found, changed = {}, False
    for name in names:
        path = os.path.join(data_dir, name)
        if name not in checksums:
            continue  # a marker of an older prepare that did not record it
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise DataError(f"{path} is missing; {rebuild}") from None
        if name in sizes and st.st_size != sizes[name]:
            raise DataError(f"{path} has {st.st_size} bytes where {MARKER} records {sizes[name]} "
                            f"(cut short or replaced); {rebuild}")
        key = (path, *_stamp(st))
        if _VERIFIED_HERE.get(key) == checksums[name] or \
                cache.get(name) == [*_stamp(st), checksums[name]]:
            found[name] = checksums[name]
            continue
        md5 = md5sum(path)
        if md5 != checksums[name]:
            raise DataError(f"{path} does not match {MARKER} (md5 {md5}, expected "
                            f"{checksums[name]}): it changed after it was prepared; {rebuild}")
        found[name] = _VERIFIED_HERE[key] = md5
        cache[name], changed = [*_stamp(st), md5], True
    if changed:
        try:
            from ..atomic import write_yaml

            write_yaml(cache_path, cache)
        except OSError:
            pass  # a read-only dataset folder: the files are hashed again next time
    return found
