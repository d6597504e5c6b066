"""Filesystem primitives the store is built on: atomic writes, inter-process locks, and the
reading back of the store's own JSON files.

A write becomes visible only by ``rename`` of a fully written (and fsynced) temporary file
in the same directory, so a ``kill -9`` at any instant leaves either the old or the new
file, never a torn one. Locks are ``flock`` on a lock file: they are released by the kernel
when a process dies, so a crash never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import CorruptStoreError

__all__ = ["TMP_PREFIX", "atomic_write", "disk_usage", "file_lock", "fsync_dir", "read_json", "str_map", "tmp_dir", "tmp_owner_gone",
           "unique_tmp"]

#: every temporary name in the store starts with this, so ``verify``/``prune`` can find leftovers
TMP_PREFIX = ".tmp-"


def unique_tmp(directory: Path, hint: str = "") -> Path:
    """A fresh temporary name in ``directory`` that carries the writer's pid."""
    return directory / f"{TMP_PREFIX}{hint}{os.getpid()}-{secrets.token_hex(6)}"


@contextlib.contextmanager
def tmp_dir(directory: Path, hint: str = "") -> Iterator[Path]:
    """A scratch directory in ``directory``, removed on the way out; named by :func:`unique_tmp`,
    so one a killed process leaves is a leftover that ``prune`` finds (``tempfile``'s names are not)."""
    path = unique_tmp(directory, hint)
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


_TMP_OWNER = re.compile(r"(\d+)-[0-9a-f]{12}$")


def tmp_owner_gone(path: Path) -> bool:
    """True when the process that made the temporary name ``path`` (see ``unique_tmp``) no longer runs.

    A store is used from one pid namespace, as ``/var/lib/docker`` is; a name without a pid is
    never judged gone."""
    m = _TMP_OWNER.search(path.name)
    if m is None or not path.name.startswith(TMP_PREFIX):
        return False
    try:
        os.kill(int(m.group(1)), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: it runs under another user
        pass
    return False


def fsync_dir(directory: Path) -> None:
    """fsync a directory, so that entries just created or renamed in it survive a crash."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically (temp file, fsync, rename, fsync of the dir)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = unique_tmp(path.parent)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if durable:
        fsync_dir(path.parent)


def read_json(path: Path, shape: Any = None) -> Any:
    """One of the store's own JSON files, parsed. A missing file raises ``FileNotFoundError``;
    bytes that are not JSON, or a document ``shape`` rejects (returns False), raise
    :class:`CorruptStoreError` naming the file."""
    data = path.read_bytes()
    try:
        doc = json.loads(data)
    except ValueError as exc:  # UnicodeDecodeError included
        raise CorruptStoreError(f"corrupt store file {path}: {exc}") from None
    if shape is not None and not shape(doc):
        raise CorruptStoreError(f"corrupt store file {path}: not the JSON the store writes there")
    return doc


def str_map(value: Any) -> bool:
    """``value`` is a JSON object of strings (labels, a repository's references)."""
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


@contextlib.contextmanager
def file_lock(path: Path, *, shared: bool = False, blocking: bool = True) -> Iterator[bool]:
    """Hold an ``flock`` on ``path`` (created if needed). Yields False when non-blocking and busy."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        flags = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB)
        try:
            fcntl.flock(fd, flags)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def disk_usage(path: Path) -> int:
    """The bytes of the files under ``path`` (or of ``path`` itself), a hardlinked file once,
    symlinks not followed; 0 for what is not there."""
    seen: set[tuple[int, int]] = set()
    total = 0
    try:
        entries = [os.lstat(path)]
    except FileNotFoundError:
        return 0
    if path.is_dir() and not path.is_symlink():
        for base, dirs, files in os.walk(path):
            for name in dirs + files:
                with contextlib.suppress(FileNotFoundError):
                    entries.append(os.lstat(os.path.join(base, name)))
    for st in entries:
        if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total
