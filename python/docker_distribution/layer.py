"""Layers: apply a compressed tar to a directory in one verified pass, rebuild a diff's exact
tar, and produce compressed layers for push. The bytes never pass through Python loops.

Apply (:func:`apply_layer`, or :class:`LayerApplier` fed chunk by chunk from a download):
verify the compressed size and digest, detect the compression by magic bytes (gzip, zstd,
none; bzip2 and xz raise :class:`~docker_distribution.errors.UnsupportedCompressionError`),
compute the diffID and write the files, on two native threads. Targets:

* ``mode="diff"``: a fresh directory for this layer alone (whiteout files kept as files),
  staged and renamed into place only after every byte verified, plus a tar-split record
  from which :class:`TarReader` rebuilds the identical tar (same diffID) for push.
* ``mode="rootfs"``: flattened onto an existing tree, honouring OCI whiteouts and opaque
  directories. On error the target is left as it is: unpack into a fresh directory.

Containment: ``..`` and absolute names are refused, symlinks are resolved strictly inside
the target, and links that would leave it raise :class:`~docker_distribution.errors.PathEscapeError`.
Ownership is applied only when running as root; device nodes need root; xattrs are set
where the filesystem allows.

Produce (:func:`produce_layer`, or :class:`LayerProducer` for streaming uploads): a directory
as a deterministic tar (sorted, PAX for long names), or a diff's rebuilt tar, compressed in
parallel blocks (gzip: 1 MiB members, ISA-L at level 1, libdeflate at others; zstd: 4 MiB
frames); digest, size and diffID in the same pass. The tar is always the same; the compressed
bytes are too, except at gzip level 1 (the default): ISA-L, run at once with other
compressions, now and then picks a different match near the start of a member (valid gzip of
the same tar, another digest). A push that resumes an upload therefore starts over when the
registry refuses the result's digest (see :mod:`docker_distribution.push`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from . import _native
from .digest import Digest
from .errors import InvalidOptionError, check_count

__all__ = [
    "DEFAULT_GZIP_LEVEL",
    "DEFAULT_ZSTD_LEVEL",
    "LEVELS",
    "AppliedLayer",
    "LayerApplier",
    "LayerProducer",
    "Limits",
    "ProducedLayer",
    "TarReader",
    "apply_layer",
    "check_compression",
    "produce_layer",
]

StrPath = str | os.PathLike[str]
Mode = Literal["diff", "rootfs"]
Codec = Literal["gzip", "zstd", "none"]

#: level 1, by ISA-L: within 10% of zlib -6's size (1.05x skopeo's default gzip) at about four
#: times the speed of level 6 (moby pushes Go's level 6; pass ``level=6`` for that)
DEFAULT_GZIP_LEVEL: int = _native.DEFAULT_GZIP_LEVEL
DEFAULT_ZSTD_LEVEL: int = _native.DEFAULT_ZSTD_LEVEL  # zstd's default: smaller than gzip -6
#: the levels each codec takes (gzip: ISA-L at 1, libdeflate above; zstd: libzstd's positive levels)
LEVELS: Mapping[str, range] = MappingProxyType({"gzip": range(1, 13), "zstd": range(1, 23)})


def check_compression(compression: str, level: int | None) -> None:
    """Raise :class:`InvalidOptionError` (a ``ValueError``) for a codec other than gzip or zstd,
    or a level it does not have."""
    levels = LEVELS.get(compression)
    if levels is None:
        raise InvalidOptionError(f"unsupported compression {compression!r}: use 'gzip' or 'zstd'")
    if level is not None and level not in levels:
        raise InvalidOptionError(f"invalid {compression} compression level {level}: use {levels.start}-{levels.stop - 1}")


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds a layer may not exceed; the defaults allow any real image and stop bombs."""

    max_bytes: int = 256 << 30
    max_entries: int = 10_000_000

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_entries"):
            check_count(getattr(self, name), f"layer limit {name}")


@dataclass(frozen=True, slots=True)
class AppliedLayer:
    """What applying one layer blob produced: its diffID (the uncompressed tar's digest), the blob's
    own digest and size as verified, the tar's size and entry count, docker's size of the layer,
    and the compression found (``gzip``, ``zstd`` or ``none``)."""

    diff_id: Digest
    digest: Digest
    size: int
    uncompressed_size: int
    entries: int
    #: docker's size of the layer (overlay2's ``DiffSize``): the bytes of its files and symlink
    #: targets, a hardlinked file once
    content_size: int
    compression: str

    @classmethod
    def _from(cls, a: _native.Applied) -> AppliedLayer:
        return cls(diff_id=Digest.parse(a.diff_id), digest=Digest.parse(a.digest), size=a.size,
                   uncompressed_size=a.uncompressed_size, entries=a.entries, content_size=a.content_size,
                   compression=a.compression)


@dataclass(frozen=True, slots=True)
class ProducedLayer:
    """A layer blob made for push or save: its digest and size as compressed, and its diffID and
    size uncompressed, all computed in the one pass that wrote it."""

    digest: Digest
    size: int
    diff_id: Digest
    uncompressed_size: int

    @classmethod
    def _from(cls, p: _native.Produced) -> ProducedLayer:
        return cls(digest=Digest.parse(p.digest), size=p.size, diff_id=Digest.parse(p.diff_id),
                   uncompressed_size=p.uncompressed_size)


def _apply_options(mode: Mode, split: StrPath | None, digest: Digest | str | None, size: int | None,
                   limits: Limits) -> dict[str, Any]:
    if mode not in ("diff", "rootfs"):
        raise InvalidOptionError(f"invalid apply mode {mode!r}: use 'diff' or 'rootfs'")
    if mode == "diff" and split is None:
        raise InvalidOptionError("mode='diff' needs a split path")
    if size is not None:
        check_count(size, "layer size")
    return {"mode": mode, "split": os.fspath(split) if split is not None else None,
            "digest": str(digest) if digest is not None else None, "size": size,
            "max_bytes": limits.max_bytes, "max_entries": limits.max_entries}


def _produce_options(source_dir: StrPath | None, source_diff: tuple[StrPath, StrPath] | None, compression: Codec,
                     level: int | None, threads: int | None, mtime: int | None) -> dict[str, Any]:
    if compression != "none":
        check_compression(compression, level)
    if threads is not None:
        check_count(threads, "thread count")
    if mtime is not None:
        check_count(mtime, "mtime")
    return {"source_dir": os.fspath(source_dir) if source_dir is not None else None,
            "source_diff": (os.fspath(source_diff[0]), os.fspath(source_diff[1])) if source_diff is not None else None,
            "compression": compression, "level": level, "threads": threads, "mtime": mtime}


def apply_layer(
    source: StrPath,
    target: StrPath,
    *,
    mode: Mode = "rootfs",
    split: StrPath | None = None,
    digest: Digest | str | None = None,
    size: int | None = None,
    limits: Limits = Limits(),
) -> AppliedLayer:
    """Apply the (compressed) layer file ``source`` to ``target``; see the module docs."""
    return AppliedLayer._from(_native.apply_layer_file(os.fspath(source), os.fspath(target),
                                                       **_apply_options(mode, split, digest, size, limits)))


class LayerApplier:
    """Apply a layer from bytes handed over as they arrive (e.g. an HTTP body).

    ``feed()`` large chunks, then ``finish()``; ``abort()`` on any error of your own, so the
    staged diff is removed. Usable as a context manager (aborts unless finished).
    """

    def __init__(
        self,
        target: StrPath,
        *,
        mode: Mode = "rootfs",
        split: StrPath | None = None,
        digest: Digest | str | None = None,
        size: int | None = None,
        limits: Limits = Limits(),
    ) -> None:
        self._inner = _native.LayerApplier(os.fspath(target), **_apply_options(mode, split, digest, size, limits))
        self._done = False
        #: what stopped the worker: every later call raises it again (not a bare "cancelled")
        self._error: BaseException | None = None

    def feed(self, data: bytes) -> None:
        """Hand over the next bytes of the (compressed) layer; they are verified, decompressed and
        written on native threads. Raises the pipeline's error, if it has met one, and again on
        every later call."""
        if self._error is not None:
            raise self._error
        try:
            self._inner.feed(data)
        except Exception as exc:
            self._error = exc
            raise

    def finish(self) -> AppliedLayer:
        """End of input: wait for every byte to be verified and written; the layer's digest, diffID and
        sizes. A digest or size mismatch raises here; a ``diff`` target then leaves nothing behind."""
        self._done = True
        if self._error is not None:
            raise self._error
        return AppliedLayer._from(self._inner.finish())

    def abort(self) -> None:
        """Stop; a ``diff`` target's staged layer is removed."""
        self._done = True
        self._inner.abort()

    def __enter__(self) -> LayerApplier:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._done:
            self.abort()


def produce_layer(
    dest: StrPath,
    *,
    source_dir: StrPath | None = None,
    source_diff: tuple[StrPath, StrPath] | None = None,
    compression: Codec = "gzip",
    level: int | None = None,
    threads: int | None = None,
    mtime: int | None = None,
) -> ProducedLayer:
    """Write a compressed layer to ``dest`` from a directory or a diff ``(dir, split)``."""
    return ProducedLayer._from(_native.produce_layer_file(
        os.fspath(dest), **_produce_options(source_dir, source_diff, compression, level, threads, mtime)))


class LayerProducer:
    """A compressed layer produced on native threads, read chunk by chunk (for uploads).

    Iterate it for the bytes; :meth:`result` then gives digest, size and diffID.
    """

    def __init__(
        self,
        *,
        source_dir: StrPath | None = None,
        source_diff: tuple[StrPath, StrPath] | None = None,
        compression: Codec = "gzip",
        level: int | None = None,
        threads: int | None = None,
        mtime: int | None = None,
    ) -> None:
        self._inner = _native.LayerProducer(**_produce_options(source_dir, source_diff, compression, level, threads, mtime))

    def __iter__(self) -> Iterator[bytes]:
        while (chunk := self._inner.read_chunk()) is not None:
            yield chunk

    @property
    def tar_bytes(self) -> int:
        """Uncompressed tar bytes consumed so far (what an upload's progress counts, as moby's does);
        ahead of the chunks iterated by at most the blocks being compressed."""
        return self._inner.tar_bytes

    def result(self) -> ProducedLayer:
        """Digest, size and diffID of what was produced, once every chunk has been read."""
        return ProducedLayer._from(self._inner.result())


class TarReader:
    """The exact tar of a diff directory, rebuilt from its tar-split record (a readable file)."""

    def __init__(self, root: StrPath, split: StrPath) -> None:
        self._inner = _native.TarReader(os.fspath(root), os.fspath(split))

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes of the tar (all the rest when ``size`` is negative); ``b''`` at its
        end."""
        return self._inner.read(size)
