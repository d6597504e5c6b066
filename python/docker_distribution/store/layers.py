"""The layer store: unpacked layer diffs by ChainID, with the record to rebuild each one's tar.

Layout under the root::

    sha256/<chain hex>/diff/            the layer's files, whiteouts kept as files
    sha256/<chain hex>/tar-split.zst    how to rebuild the exact tar (same diffID) for push
    sha256/<chain hex>/meta.json        {"diff_id", "parent", "size" (tar bytes)}
    tmp/.tmp-*/                         layers being registered (each holds an flock on "lock")

``chain_id(parent, diff_id) = sha256(parent + " " + diff_id)``; the bottom layer's ChainID is
its diffID. A layer is applied into a private ``tmp/`` directory, verified, completed with its
``meta.json``, and renamed into place in one step; when another thread or process got there
first, the copy is discarded. So a layer directory either exists whole or not at all.

References (``get``/``release``) are counted per store object, as moby's layer store does;
what an image needs is kept by the images referencing it (see ``Store.prune``).
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import json
import os
import shutil
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .. import _native
from ..digest import ALGORITHMS, Digest
from ..errors import CorruptStoreError, DistributionError, MaxDepthExceededError, ObjectNotFoundError, StoreError
from ..fsutil import file_lock, fsync_dir, read_json, unique_tmp
from ..layer import AppliedLayer, LayerApplier, Limits, TarReader, apply_layer

__all__ = ["Layer", "LayerInfo", "LayerStore", "PendingLayer", "chain_id", "chain_of"]

_CHUNK = 1 << 20
#: moby's maxLayerDepth: a chain may hold this many layers (overlay's lower-directory limit is near)
MAX_LAYER_DEPTH = 125


def chain_id(parent: Digest | None, diff_id: Digest) -> Digest:
    """The ChainID of ``diff_id`` on top of the layer whose ChainID is ``parent``."""
    return diff_id if parent is None else Digest.from_bytes(f"{parent} {diff_id}".encode())


def chain_of(diff_ids: Iterable[Digest]) -> Digest | None:
    """The ChainID of the top of a stack of diffIDs (None for no layers)."""
    cid: Digest | None = None
    for d in diff_ids:
        cid = chain_id(cid, d)
    return cid


def _count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


@dataclass(frozen=True, slots=True)
class LayerInfo:
    """A layer store record: chain ID, diffID, parent chain ID (None for a base layer), the diff's
    size in bytes, and docker's size of the layer."""

    chain_id: Digest
    diff_id: Digest
    parent: Digest | None
    size: int
    #: docker's size of the layer (overlay2's ``DiffSize``: its files' and symlinks' bytes, a
    #: hardlinked file once); None in a record written before it was kept
    content_size: int | None = None

    @classmethod
    def _read(cls, directory: Path, cid: Digest) -> LayerInfo:
        """The layer's ``meta.json``; one that is unreadable or of the wrong shape is a
        :class:`CorruptStoreError`."""
        path = directory / "meta.json"
        meta = read_json(path, lambda m: isinstance(m, dict) and isinstance(m.get("diff_id"), str)
                         and isinstance(m.get("parent"), (str, type(None)))
                         and _count(m.get("size")) and ("content_size" not in m or _count(m["content_size"])))
        try:
            parent = meta["parent"]
            return cls(cid, Digest.parse(meta["diff_id"]), Digest.parse(parent) if parent else None, meta["size"],
                       meta.get("content_size"))
        except DistributionError as exc:
            raise CorruptStoreError(f"corrupt store file {path}: {exc}") from None


class Layer:
    """A referenced layer. ``release()`` when done (or use it as a context manager)."""

    def __init__(self, store: LayerStore, info: LayerInfo) -> None:
        self.store = store
        self.info = info
        self._released = False

    @property
    def chain_id(self) -> Digest:
        """The layer's ChainID: its identity in the store (its diffID on top of its parent's chain)."""
        return self.info.chain_id

    @property
    def diff_id(self) -> Digest:
        """The sha256 of the layer's uncompressed tar."""
        return self.info.diff_id

    @property
    def size(self) -> int:
        """The uncompressed tar size of the diff (what a push reads)."""
        return self.info.size

    def diff_size(self) -> int:
        """moby's ``DiffSize``: here the size of the layer's tar, which push thresholds and progress use."""
        return self.info.size

    @property
    def parent(self) -> Layer | None:
        """The layer beneath (a new reference, to release too), or None for a base layer."""
        return self.store.get(self.info.parent) if self.info.parent else None

    @property
    def path(self) -> Path:
        """The directory holding the layer's own files (its diff, whiteouts kept as files)."""
        return self.store.layer_dir(self.chain_id) / "diff"

    @property
    def split(self) -> Path:
        """The layer's tar-split record: with :attr:`path`, it rebuilds the exact tar."""
        return self.store.layer_dir(self.chain_id) / "tar-split.zst"

    def tar_stream(self) -> TarReader:
        """The layer's exact tar, rebuilt from its files; its sha256 is the diffID."""
        return TarReader(self.path, self.split)

    def release(self) -> None:
        """Drop this reference (once; later calls do nothing)."""
        if not self._released:
            self._released = True
            self.store._release(self.chain_id)

    def __enter__(self) -> Layer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Layer(chain_id={self.chain_id}, diff_id={self.diff_id})"


class PendingLayer:
    """A layer being registered from bytes fed as they arrive (a download)."""

    def __init__(self, store: LayerStore, parent: Digest | None, *, digest: Digest | None, size: int | None,
                 source: Path | None = None) -> None:
        self.store = store
        self.parent = parent
        self.tmp = unique_tmp(store.root / "tmp", "layer-")
        # the lock exists and is held before the directory appears, so no one can take a
        # directory that is being filled for a crash leftover
        self._lock_path = self.tmp.with_name(self.tmp.name + ".lock")
        self._lock = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.tmp.mkdir(parents=True)
        self._digest, self._size, self._source = digest, size, source
        # a file is applied natively in complete(); bytes arriving over time go through an applier
        self._applier = None if source is not None else LayerApplier(
            self.tmp / "diff", mode="diff", split=self.tmp / "tar-split.zst", digest=digest, size=size,
            limits=store.limits)
        self._applied: AppliedLayer | None = None
        #: compressed bytes handed over so far (where a resumed download continues)
        self.fed = 0

    def feed(self, data: bytes) -> None:
        """Hand over the next compressed bytes (verified and applied natively as they come)."""
        if self._applier is None:
            raise StoreError("this pending layer reads a file; it is not fed")
        self._applier.feed(data)
        self.fed += len(data)

    def complete(self) -> AppliedLayer:
        """End of input: wait until every byte is verified and written (the parent is not needed yet)."""
        if self._applied is None:
            try:
                if self._applier is not None:
                    self._applied = self._applier.finish()
                else:
                    assert self._source is not None
                    self._applied = apply_layer(self._source, self.tmp / "diff", mode="diff",
                                                split=self.tmp / "tar-split.zst", digest=self._digest,
                                                size=self._size, limits=self.store.limits)
            except BaseException:
                self._cleanup()
                raise
        return self._applied

    def publish(self, parent: Digest | None) -> Layer:
        """Put the completed layer into the store on top of ``parent`` (layers download in parallel;
        only this last step waits for the parent)."""
        if parent is not None and not self.store.exists(parent):
            self._cleanup()
            raise ObjectNotFoundError(f"layer {parent}: not found")
        if parent is not None and len(self.store.chain(parent)) >= MAX_LAYER_DEPTH:
            self._cleanup()
            raise MaxDepthExceededError()
        self.parent = parent
        return self.store._publish(self, self.complete())

    def finish(self) -> Layer:
        """End of input: verify, apply and publish the layer on its parent; the registered
        :class:`Layer`."""
        return self.publish(self.parent)

    def abort(self) -> None:
        """Give the layer up: nothing of it stays in the store."""
        if self._applier is not None:
            with contextlib.suppress(Exception):
                self._applier.abort()
        self._cleanup()

    def _cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._unlock()

    def _unlock(self) -> None:
        if self._lock >= 0:
            with contextlib.suppress(FileNotFoundError):
                self._lock_path.unlink()
            os.close(self._lock)
            self._lock = -1

    def __enter__(self) -> PendingLayer:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None:
            self.abort()


class LayerStore:
    """Layers by ChainID under ``root`` (``sha256/<chain>/``: the diff, its tar-split record and
    ``meta.json``), as the daemon's layer store keeps them. Each layer is staged in ``tmp/`` and
    renamed into place whole; ``limits`` bounds what one layer may unpack to. References taken with
    :meth:`get` are counted per process."""

    def __init__(self, root: Path, *, limits: Limits = Limits()) -> None:
        self.root = root
        self.limits = limits
        (root / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        self.remove_leftovers()  # what crashed writers left; live writers hold their locks
        self._refs: dict[Digest, int] = {}
        self._lock = threading.Lock()

    def layer_dir(self, cid: Digest) -> Path:
        """The directory of the layer ``cid`` (present or not)."""
        return self.root / cid.algorithm / cid.encoded

    def exists(self, cid: Digest) -> bool:
        """True when the layer ``cid`` is registered."""
        return (self.layer_dir(cid) / "meta.json").is_file()

    def info(self, cid: Digest) -> LayerInfo:
        """The record of the layer ``cid``; :class:`ObjectNotFoundError` if it is not registered."""
        try:
            return LayerInfo._read(self.layer_dir(cid), cid)
        except FileNotFoundError:
            raise ObjectNotFoundError(f"layer {cid}: not found") from None

    def list(self) -> list[LayerInfo]:
        """Every layer whose record reads back (:meth:`records` gives the others too)."""
        return [i for i in self.records() if isinstance(i, LayerInfo)]

    def records(self) -> Iterator[LayerInfo | CorruptStoreError]:
        """Each layer's record, or the error (naming the file) of one that does not read back."""
        for algo in sorted(p.name for p in self.root.iterdir() if p.name in ALGORITHMS):
            for d in sorted((self.root / algo).iterdir()):
                if not d.name.startswith(".") and (d / "meta.json").is_file():
                    try:
                        yield LayerInfo._read(d, Digest(algo, d.name))
                    except CorruptStoreError as exc:
                        yield exc

    # --- references ------------------------------------------------------------------------

    def get(self, cid: Digest) -> Layer:
        """A reference to the layer ``cid`` (release it when done); :class:`ObjectNotFoundError` if it
        is not registered."""
        info = self.info(cid)
        with self._lock:
            self._refs[cid] = self._refs.get(cid, 0) + 1
        return Layer(self, info)

    def _release(self, cid: Digest) -> None:
        with self._lock:
            n = self._refs.get(cid, 0) - 1
            if n <= 0:
                self._refs.pop(cid, None)
            else:
                self._refs[cid] = n

    def references(self, cid: Digest) -> int:
        """How many references to the layer ``cid`` this process holds."""
        with self._lock:
            return self._refs.get(cid, 0)

    # --- registering -----------------------------------------------------------------------

    def begin(self, parent: Digest | None, *, digest: Digest | None = None, size: int | None = None,
              source: os.PathLike[str] | str | None = None) -> PendingLayer:
        """Start registering a layer on top of ``parent``; feed it the compressed bytes (or give
        a ``source`` file, applied natively)."""
        if parent is not None and not self.exists(parent):
            raise ObjectNotFoundError(f"layer {parent}: not found")
        return PendingLayer(self, parent, digest=digest, size=size,
                            source=Path(source) if source is not None else None)

    def register_file(self, path: os.PathLike[str] | str, parent: Digest | None, *, digest: Digest | None = None,
                      size: int | None = None) -> Layer:
        """Register a (compressed) layer file natively, without feeding bytes through Python."""
        return self.begin(parent, digest=digest, size=size, source=path).finish()

    def register(self, stream: BinaryIO, parent: Digest | None) -> Layer:
        """Register a layer read from a file object (moby's ``Register(stream, parent)``)."""
        with self.begin(parent) as pending:
            while chunk := stream.read(_CHUNK):
                pending.feed(chunk)
            return pending.finish()

    def _publish(self, pending: PendingLayer, applied: AppliedLayer) -> Layer:
        cid = chain_id(pending.parent, applied.diff_id)
        meta = {"diff_id": str(applied.diff_id), "parent": str(pending.parent) if pending.parent else None,
                "size": applied.uncompressed_size, "content_size": applied.content_size}
        (pending.tmp / "meta.json").write_text(json.dumps(meta))
        final = self.layer_dir(cid)
        try:
            os.rename(pending.tmp, final)
            fsync_dir(final.parent)
        except OSError:  # a copy is in place, damaged, or being repaired: settled under the repair lock
            try:
                self._settle(cid, pending.tmp)
            except StoreError:
                pending._cleanup()
                raise
        pending._unlock()
        return self.get(cid)

    # --- reading back ----------------------------------------------------------------------

    def content_size(self, info: LayerInfo) -> int:
        """docker's size of a layer (see :attr:`LayerInfo.content_size`); for a record written
        before it was kept, measured as moby's ``directory.Size`` measures the diff."""
        if info.content_size is not None:
            return info.content_size
        total, seen = 0, set()
        for dirpath, _, names in os.walk(self.layer_dir(info.chain_id) / "diff"):
            for name in names:
                st = os.lstat(os.path.join(dirpath, name))
                if st.st_size and st.st_ino not in seen:
                    seen.add(st.st_ino)
                    total += st.st_size
        return total

    def chain(self, cid: Digest) -> builtins.list[LayerInfo]:
        """The layers from the bottom up to ``cid``."""
        out: builtins.list[LayerInfo] = []
        cur: Digest | None = cid
        while cur is not None:
            info = self.info(cur)
            out.append(info)
            cur = info.parent
        return out[::-1]

    def unpack(self, cid: Digest, dest: os.PathLike[str] | str) -> None:
        """Materialise the full root filesystem of ``cid`` into ``dest`` (whiteouts applied)."""
        for info in self.chain(cid):
            d = self.layer_dir(info.chain_id)
            _native.apply_diff(str(d / "diff"), str(d / "tar-split.zst"), os.fspath(dest))

    def delete(self, cid: Digest) -> None:
        """Remove a layer nothing holds (the caller checks images and child layers)."""
        if self.references(cid):
            raise StoreError(f"layer {cid} is in use")
        d = self.layer_dir(cid)
        if not d.exists():
            raise ObjectNotFoundError(f"layer {cid}: not found")
        self._discard(d)

    def _settle(self, cid: Digest, staged: Path) -> None:
        """``staged`` could not be renamed into place: keep the copy of ``cid`` that is there and
        drop ``staged``, unless that copy's record is damaged or gone (another repair has just
        moved it aside), in which case ``staged`` (verified) takes its place. Repairs take turns
        on a lock, so one never moves aside the copy another has just put in, and the record is
        looked at again under it."""
        final = self.layer_dir(cid)
        with contextlib.suppress(CorruptStoreError, ObjectNotFoundError):
            self.info(cid)  # the usual case: another writer registered it first
            shutil.rmtree(staged, ignore_errors=True)
            return
        with file_lock(self.root / "tmp" / f"repair-{cid.encoded}.lock"):
            try:
                self.info(cid)  # again: another repair may have come first
            except (CorruptStoreError, ObjectNotFoundError):
                self._discard(final)
                try:
                    os.rename(staged, final)
                    fsync_dir(final.parent)
                    return
                except OSError:  # a first-time writer's copy went in meanwhile: it is kept
                    if not self.exists(cid):
                        raise StoreError(f"could not publish layer {cid}") from None
        shutil.rmtree(staged, ignore_errors=True)

    def _discard(self, d: Path) -> None:
        """Take a layer directory out of sight in one rename, then remove it (another thread or
        process may have done either already)."""
        gone = unique_tmp(self.root / "tmp", "del-")
        with contextlib.suppress(FileNotFoundError):
            os.rename(d, gone)
        shutil.rmtree(gone, ignore_errors=True)

    def leftovers(self) -> Iterator[Path]:
        """Staging directories and lock files no live writer holds (crash remains)."""
        for p in sorted((self.root / "tmp").iterdir()):
            lock = p if p.name.endswith(".lock") else p.with_name(p.name + ".lock")
            if p.name.endswith(".lock") and p.with_name(p.name[: -len(".lock")]).exists():
                continue  # judged together with its directory
            if not lock.exists():
                yield p
                continue
            try:
                fd = os.open(lock, os.O_RDWR)
            except FileNotFoundError:
                continue  # its writer finished, or another process removed it, just now
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            finally:
                os.close(fd)
            yield p
            if lock != p:
                yield lock

    def remove_leftovers(self) -> builtins.list[Path]:
        """Remove what crashed writers left in ``tmp/`` (see :meth:`leftovers`); the paths removed."""
        removed = []
        for p in list(self.leftovers()):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
        return removed
