"""The content store: blobs by digest, with containerd's ingest semantics (moby's ``ContentStore``).

Layout under the root::

    blobs/<alg>/<hex>          committed content, immutable
    labels/<alg>/<hex>.json    labels of a blob (e.g. containerd.io/distribution.source.*)
    ingest/<sha256(ref)>/      an open or interrupted write: data, ref, total, expected, lock

A writer opened again with the same ``ref`` resumes at the size already written (the data
is re-hashed once). Writes go to a native ``BlobFile``, which hashes them on the way and, for
content meant to be committed, writes pages back to the disk while the blob grows. ``commit``
verifies size and digest, fsyncs, and renames into ``blobs/``: content is visible only once
verified. The ingest ``lock`` is an ``flock``, so one process
writes a ref at a time and a crashed writer's lock vanishes with it.

``ContentStore(root, durable=False)`` skips the write-back and the fsyncs (which containerd's
store and skopeo's OCI layouts do, and python-dxf and oras-py do not): for a cache or a CI runner
that can fetch again. A committed blob is still verified before it is visible, so a process crash loses
nothing; a power cut can leave a committed blob short of its bytes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

from ..descriptor import Descriptor
from .. import _native
from ..digest import Digest
from ..errors import (
    AlreadyExistsError,
    CorruptStoreError,
    DigestMismatchError,
    DistributionError,
    FailedPreconditionError,
    LockedError,
    ObjectNotFoundError,
    StoreError,
)
from ..fsutil import atomic_write, fsync_dir, read_json, str_map, unique_tmp

__all__ = ["ContentStore", "ContentWriter", "Info", "Status"]

_READ_CHUNK = 1 << 20

log = logging.getLogger(__name__)


def _ingest_meta(m: object) -> bool:
    """An ingest's ``meta.json`` as :meth:`ContentStore.writer` writes it."""
    return isinstance(m, dict) and isinstance(m.get("ref"), str) and all(
        isinstance(m.get(k), (int, float)) and not isinstance(m.get(k), bool) for k in ("started_at", "updated_at")) \
        and isinstance(m.get("total") or 0, int) and isinstance(m.get("expected") or "", str)


@dataclass(frozen=True, slots=True)
class Info:
    """A committed blob of the content store: digest, size, times (Unix seconds) and labels."""

    digest: Digest
    size: int
    created_at: float
    updated_at: float
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Status:
    """An ingest in progress: its ref, the bytes written so far of ``total``, the digest it is
    expected to have, and when it started and last grew (Unix seconds)."""

    ref: str
    offset: int
    total: int
    expected: Digest | None
    started_at: float
    updated_at: float


class ContentStore:
    """Blobs by digest under ``root`` (``blobs/<alg>/<hex>``), their labels, and ingests in progress
    (``ingest/``). With ``durable`` (the default) a commit fsyncs the blob and its directory before
    the blob is visible."""

    def __init__(self, root: Path, *, durable: bool = True) -> None:
        self.root = root
        #: commits fsync the blob (and its directory) before it is visible; see the module docstring
        self.durable = durable
        for d in ("blobs", "labels", "ingest"):
            (root / d).mkdir(parents=True, exist_ok=True)

    # --- paths -----------------------------------------------------------------------------

    def blob_path(self, digest: Digest | str) -> Path:
        """Where the blob ``digest`` is (or would be) stored; the file exists only once committed."""
        d = digest if isinstance(digest, Digest) else Digest.parse(digest)
        return self.root / "blobs" / d.algorithm / d.encoded

    def _labels_path(self, d: Digest) -> Path:
        return self.root / "labels" / d.algorithm / f"{d.encoded}.json"

    def _ingest_dir(self, ref: str) -> Path:
        return self.root / "ingest" / hashlib.sha256(ref.encode()).hexdigest()

    # --- reading ---------------------------------------------------------------------------

    def exists(self, digest: Digest | str) -> bool:
        """True when the blob ``digest`` is committed."""
        return self.blob_path(digest).is_file()

    def info(self, digest: Digest | str) -> Info:
        """Size, times and labels of a committed blob; :class:`ObjectNotFoundError` if there is none."""
        d = digest if isinstance(digest, Digest) else Digest.parse(digest)
        try:
            st = self.blob_path(d).stat()
        except FileNotFoundError:
            raise ObjectNotFoundError(f"content {d}: not found") from None
        return Info(d, st.st_size, st.st_ctime, st.st_mtime, self._read_labels(d))

    def reader_at(self, digest: Digest | str) -> BinaryIO:
        """The committed blob, opened for reading (binary); :class:`ObjectNotFoundError` if there is
        none."""
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise ObjectNotFoundError(f"content {digest}: not found") from None

    def read(self, digest: Digest | str) -> bytes:
        """The committed blob's whole bytes (for small blobs: manifests, configs)."""
        with self.reader_at(digest) as f:
            return f.read()

    def walk(self, fn: Callable[[Info], None]) -> None:
        """Call ``fn`` with the :class:`Info` of every committed blob, in digest order."""
        for alg_dir in sorted((self.root / "blobs").iterdir()):
            for blob in sorted(alg_dir.iterdir()):
                if not blob.name.startswith("."):
                    fn(self.info(Digest(alg_dir.name, blob.name)))

    def _read_labels(self, d: Digest) -> dict[str, str]:
        """Labels are a cache (where a manifest came from): a damaged file counts as none, and
        the next :meth:`update` writes a good one over it."""
        try:
            return dict(read_json(self._labels_path(d), str_map))
        except FileNotFoundError:
            return {}
        except CorruptStoreError as exc:
            log.warning("%s: ignoring its labels", exc)
            return {}

    # --- changing --------------------------------------------------------------------------

    def update(self, info: Info, *fieldpaths: str) -> Info:
        """Update labels: ``"labels"`` replaces them all, ``"labels.<key>"`` sets or removes one key."""
        current = self.info(info.digest)
        labels = dict(current.labels)
        paths = fieldpaths or ("labels",)
        for path in paths:
            if path == "labels":
                labels = dict(info.labels)
            elif path.startswith("labels."):
                key = path[len("labels."):]
                if key in info.labels:
                    labels[key] = info.labels[key]
                else:
                    labels.pop(key, None)
            else:
                raise FailedPreconditionError(f"cannot update {path!r} of content {info.digest}")
        atomic_write(self._labels_path(info.digest), json.dumps(labels, sort_keys=True).encode())
        return replace(current, labels=labels, updated_at=time.time())

    def delete(self, digest: Digest | str) -> None:
        """Remove a committed blob and its labels; :class:`ObjectNotFoundError` if there is none."""
        d = digest if isinstance(digest, Digest) else Digest.parse(digest)
        try:
            self.blob_path(d).unlink()
        except FileNotFoundError:
            raise ObjectNotFoundError(f"content {d}: not found") from None
        with contextlib.suppress(FileNotFoundError):
            self._labels_path(d).unlink()

    # --- ingests ---------------------------------------------------------------------------

    def writer(self, *, ref: str, descriptor: Descriptor | None = None, total: int | None = None,
               hashing: bool = True) -> ContentWriter:
        """Open (or resume) the ingest ``ref``. Raises :class:`AlreadyExistsError` when the
        descriptor's content is already committed, :class:`LockedError` when another writer holds ``ref``.

        ``hashing=False`` keeps bytes for resumption only (someone else verifies them): such a
        writer cannot commit."""
        if descriptor is not None and self.exists(descriptor.digest):
            raise AlreadyExistsError(f"content {descriptor.digest}: already exists")
        directory = self._ingest_dir(ref)
        lock_fd = _lock_ingest(directory, ref)
        meta_path = directory / "meta.json"
        now = time.time()
        try:
            meta = read_json(meta_path, lambda m: _ingest_meta(m) and m["ref"] == ref)
        except (FileNotFoundError, CorruptStoreError):  # new, or a damaged record: start it afresh
            meta = {"ref": ref, "started_at": now}
        if descriptor is not None:
            meta["expected"], meta["total"] = str(descriptor.digest), descriptor.size
        elif total is not None:
            meta["total"] = total
        meta["updated_at"] = now
        atomic_write(meta_path, json.dumps(meta).encode(), durable=False)
        return ContentWriter(self, ref, directory, lock_fd, meta, hashing=hashing)

    def status(self, ref: str) -> Status:
        """The state of the ingest ``ref`` (bytes written, expected total and digest, times);
        :class:`ObjectNotFoundError` if there is none."""
        directory = self._ingest_dir(ref)
        try:
            meta = read_json(directory / "meta.json", _ingest_meta)
        except FileNotFoundError:
            raise ObjectNotFoundError(f"ingest {ref}: not found") from None
        data = directory / "data"
        offset = data.stat().st_size if data.exists() else 0
        expected = meta.get("expected")
        return Status(ref, offset, int(meta.get("total") or 0), Digest.parse(expected) if expected else None,
                      float(meta["started_at"]), float(meta["updated_at"]))

    def list_statuses(self) -> Iterator[Status]:
        """The status of every ingest in progress (ingests that vanish or cannot be read meanwhile are
        left out)."""
        for d in sorted((self.root / "ingest").iterdir()):
            with contextlib.suppress(FileNotFoundError, DistributionError):  # gone, or unreadable
                yield self.status(read_json(d / "meta.json", _ingest_meta)["ref"])

    def abort(self, ref: str) -> None:
        """Remove the ingest ``ref`` and its bytes; :class:`ObjectNotFoundError` if there is none."""
        directory = self._ingest_dir(ref)
        if not directory.exists():
            raise ObjectNotFoundError(f"ingest {ref}: not found")
        shutil.rmtree(directory, ignore_errors=True)


def _lock_ingest(directory: Path, ref: str) -> int:
    """Make the ingest directory if need be and take its lock; the lock's fd.

    A writer that commits or discards moves its ingest directory aside (under its lock), so the
    directory can vanish at any step here: just after ``mkdir`` found it there, before its lock
    file is opened, or after that lock is taken (the lock of a directory no longer in place). Each
    case starts again, with a fresh directory."""
    for _ in range(_INGEST_RACES):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            lock_fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        except (FileExistsError, FileNotFoundError):  # there, then moved aside before we could use it
            continue
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise LockedError(f"ref {ref} locked: unavailable") from None
        try:
            in_place = os.path.samestat(os.fstat(lock_fd), os.stat(directory / "lock"))
        except FileNotFoundError:
            in_place = False
        if in_place:
            return lock_fd
        os.close(lock_fd)
    raise StoreError(f"ingest {ref}: its directory kept vanishing")


#: times :func:`_lock_ingest` starts again before giving up (each start means another writer
#: finished with the same ref in between)
_INGEST_RACES = 100


class ContentWriter:
    """An open ingest. ``offset`` bytes are already written (a resumed ingest starts there)."""

    def __init__(self, store: ContentStore, ref: str, directory: Path, lock_fd: int, meta: dict[str, object], *,
                 hashing: bool = True) -> None:
        self.store = store
        self.ref = ref
        self._dir = directory
        self._lock_fd: int | None = lock_fd
        self._meta = meta
        # native: appends, hashes (a resumed file's existing bytes once, here), and — for a blob
        # that will be committed durably — writes pages back to the disk as it grows, so commit's
        # fsync is short
        self._file = _native.BlobFile(str(directory / "data"), hashing=hashing, writeback=hashing and store.durable)

    @property
    def offset(self) -> int:
        """Bytes written to the ingest so far, by this writer and the ones it resumes."""
        return self._file.size

    @property
    def data_path(self) -> Path:
        """The ingest's data file (readable while it grows)."""
        return self._dir / "data"

    def write(self, data: bytes) -> int:
        """Append ``data``; returns the bytes written."""
        return self._file.write(data)

    def flush(self) -> None:
        """Make what was written visible to readers of ``data_path`` (already so: writes are
        unbuffered); no fsync."""

    def write_from(self, f: BinaryIO) -> int:
        """Copy a whole readable file in large chunks."""
        n = 0
        while chunk := f.read(_READ_CHUNK):
            n += self.write(chunk)
        return n

    def digest(self) -> Digest:
        """The digest of what was written so far (without ending the ingest)."""
        peek = self._file.peek()
        if peek is None:
            raise FailedPreconditionError(f"ingest {self.ref} was opened for resumption only")
        return Digest.parse(peek)

    def truncate(self, size: int = 0) -> None:
        """Cut the ingest's data back to ``size`` bytes (0: start over)."""
        self._file.truncate(size)

    def commit(self, size: int, expected: Digest | None, labels: Mapping[str, str] | None = None) -> Digest:
        """Verify and publish: temp data → fsync (a durable store) → rename into ``blobs/``; the
        ingest is removed."""
        actual = self.digest()  # raises for an ingest kept for resumption only
        written = self.offset
        if size > 0 and size != written:
            raise FailedPreconditionError(f"unexpected commit size {written}, expected {size}")
        if expected is not None and actual != expected:
            raise DigestMismatchError(str(expected), str(actual))
        if self.store.durable:
            self._file.sync()
        target = self.store.blob_path(actual)
        target.parent.mkdir(parents=True, exist_ok=True)
        if labels:
            atomic_write(self.store._labels_path(actual), json.dumps(dict(labels), sort_keys=True).encode())
        if target.exists():
            self._finish()
            raise AlreadyExistsError(f"content {actual}: already exists")
        os.replace(self._dir / "data", target)
        if self.store.durable:
            fsync_dir(target.parent)
        self._finish()
        return actual

    def discard(self) -> None:
        """Remove the ingest (its bytes are not wanted)."""
        self._finish()

    def close(self) -> None:
        """Stop writing but keep the ingest, so a later writer with the same ref resumes it."""
        self._file.close()
        self._release()

    def _finish(self) -> None:
        self._file.close()
        # move aside first so a concurrent writer() never sees a half-removed ingest
        gone = unique_tmp(self._dir.parent)
        with contextlib.suppress(FileNotFoundError):
            os.replace(self._dir, gone)
        self._release()
        shutil.rmtree(gone, ignore_errors=True)

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> ContentWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
