"""The layer download manager (moby's ``xfer/download.go``, moby distribution/xfer/download.go).

Layers are fetched concurrently (3 by default), each streamed into a pending layer of the
store as it arrives; a layer becomes part of the chain once its parent is. Failed attempts
are retried up to 5 times with moby's ``attempt × 5`` second countdown; a layer already in the
store (known through the ``diffid-by-digest`` metadata) reports ``Already exists``. The same
chain prefix requested by two pulls at once is downloaded once (the transfer key).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from ..digest import Digest
from ..errors import (
    DistributionError,
    ObjectNotFoundError,
    OperationCancelledError,
    check_count,
)
from ..progress import Progress, ProgressOutput
from ..store.layers import Layer, LayerStore, PendingLayer, chain_id, chain_of
from .transfer import (
    DEFAULT_WAIT_DURATION,
    RETRY_DELAY_UNIT,
    Transfer,
    TransferContext,
    TransferManager,
    Watcher,
    release_all,
    should_retry,
)

__all__ = ["DEFAULT_MAX_CONCURRENT_DOWNLOADS", "DEFAULT_MAX_DOWNLOAD_ATTEMPTS", "DownloadDescriptor",
           "LayerDownloadManager"]

log = logging.getLogger(__name__)

DEFAULT_MAX_CONCURRENT_DOWNLOADS = 3  # moby's daemon default
DEFAULT_MAX_DOWNLOAD_ATTEMPTS = 5  # moby's daemon default


class DownloadDescriptor(Protocol):
    """One layer to pull (moby's ``xfer.DownloadDescriptor``)."""

    def key(self) -> str:
        """Identifies the download: callers asking for the same key share one transfer."""
        ...

    def id(self) -> str:
        """The short ID shown in progress."""
        ...

    def diff_id(self) -> Digest:
        """The diffID if already known (raise any DistributionError when not)."""
        ...

    def expected(self) -> tuple[Digest | None, int | None]:
        """The compressed blob's digest and size, which the pending layer verifies."""
        ...

    def download(self, ctx: TransferContext, pending: PendingLayer) -> None:
        """Stream the layer into ``pending`` (which verifies it) or raise."""
        ...

    def registered(self, diff_id: Digest) -> None:
        """Told the layer's diffID once it is in the layer store (found there or downloaded)."""
        ...


class LayerDownloadManager:
    """moby's ``xfer.LayerDownloadManager``: downloads layers into a layer store, ``concurrency``
    at a time (3 by default), each up to ``max_attempts`` times with moby's growing delays, and
    shares one transfer between callers asking for the same layer at once."""

    def __init__(self, layer_store: LayerStore, concurrency: int = DEFAULT_MAX_CONCURRENT_DOWNLOADS, *,
                 max_attempts: int = DEFAULT_MAX_DOWNLOAD_ATTEMPTS, wait_duration: float = DEFAULT_WAIT_DURATION) -> None:
        self.layer_store = layer_store
        self.tm = TransferManager(concurrency, "max concurrent downloads")
        self.max_attempts = check_count(max_attempts, "max download attempts")
        self.wait_duration = wait_duration

    def set_concurrency(self, concurrency: int) -> None:
        """Change how many downloads run at once (transfers already started go on)."""
        self.tm.set_concurrency(concurrency)

    def download(self, initial: Sequence[Digest], layers: Sequence[DownloadDescriptor], out: ProgressOutput,
                 cancel: threading.Event | None = None) -> tuple[list[Digest], Callable[[], None]]:
        """Make every layer present; returns the rootfs diffIDs and a release function."""
        rootfs = list(initial)
        top: Layer | None = None
        top_cid = chain_of(rootfs)
        key = ""
        checking = True
        by_key: dict[str, Transfer] = {}
        watchers: list[Watcher] = []
        top_transfer: Transfer | None = None

        def release() -> None:
            release_all(watchers)
            if top is not None:
                top.release()

        for d in layers:
            key += d.key()
            if checking:
                try:
                    diff_id = d.diff_id()
                    cid = chain_id(top_cid, diff_id)
                    if self.layer_store.exists(cid):
                        present = self.layer_store.get(cid)
                        out.write_progress(Progress(d.id(), action="Already exists"))
                        if top is not None:
                            top.release()
                        top, top_cid = present, cid
                        rootfs.append(diff_id)
                        d.registered(diff_id)
                        continue
                except ObjectNotFoundError:
                    pass  # no diffID recorded for this blob: it is fetched
                except (DistributionError, OSError) as exc:
                    log.debug("Checking whether layer %s is present failed, downloading it: %s", d.id(), exc)
                checking = False  # the first missing layer ends existence checks for all above it
            if d.key() in by_key:
                fn = self._from_earlier(d, by_key[d.key()], top_transfer, top_cid)
            else:
                out.write_progress(Progress(d.id(), action="Pulling fs layer"))
                fn = self._download(d, top_transfer, top_cid)
            top_transfer, watcher = self.tm.transfer(key, fn, out)
            by_key[d.key()] = top_transfer
            watchers.append(watcher)

        if top_transfer is None:
            return rootfs, release
        try:
            while not top_transfer.done.wait(0.05):
                if cancel is not None and cancel.is_set():
                    raise OperationCancelledError()
            if top_transfer.error is not None:
                raise top_transfer.error
        except BaseException:  # a cancel, a layer's error, or Ctrl-C in this thread
            release()
            raise
        layer: Layer = top_transfer.result
        chain: list[Digest] = []
        info_cid: Digest | None = layer.chain_id
        for _ in range(len(layers) - (len(rootfs) - len(initial))):
            if info_cid is None:
                release()
                raise DistributionError("internal error: too few parent layers")
            info = self.layer_store.info(info_cid)
            chain.append(info.diff_id)
            info_cid = info.parent
        return rootfs + chain[::-1], release

    def _download(self, d: DownloadDescriptor, parent_transfer: Transfer | None,
                  parent_cid: Digest | None) -> Callable[[TransferContext], Layer]:
        def run(ctx: TransferContext) -> Layer:
            if not ctx.started_immediately:
                ctx.progress(Progress(d.id(), action="Waiting"))
                ctx.wait_for_slot()
            if parent_transfer is not None and parent_transfer.done.is_set() and parent_transfer.error is not None:
                raise parent_transfer.error
            attempt = 1
            while True:
                ctx.check()
                digest, size = d.expected()
                pending = self.layer_store.begin(None, digest=digest, size=size)
                try:
                    d.download(ctx, pending)
                    pending.complete()
                    break
                except BaseException as exc:
                    pending.abort()
                    if not should_retry(ctx, exc, attempt, self.max_attempts):
                        log.debug("Download failed after %d attempts: %s", attempt, exc)  # the caller reports it
                        raise
                    log.info("Download failed, retrying (%d/%d): %s", attempt, self.max_attempts, exc)
                    ctx.countdown(d.id(), attempt * RETRY_DELAY_UNIT, self.wait_duration,
                                  "download cancelled during retry delay")
                    attempt += 1
            ctx.inactive()  # the slot is free before the wait for the parent, as in moby
            parent = self._parent_chain(ctx, parent_transfer, parent_cid)
            layer = pending.publish(parent)
            ctx.progress(Progress(d.id(), action="Pull complete"))
            d.registered(layer.diff_id)
            return layer

        return run

    def _from_earlier(self, d: DownloadDescriptor, earlier: Transfer, parent_transfer: Transfer | None,
                      parent_cid: Digest | None) -> Callable[[TransferContext], Layer]:
        """The same blob twice in one image: register the earlier download's tar on this parent."""
        def run(ctx: TransferContext) -> Layer:
            ctx.inactive()
            while not earlier.done.wait(0.05):
                ctx.check()
            if earlier.error is not None:
                raise earlier.error
            source: Layer = earlier.result
            parent = self._parent_chain(ctx, parent_transfer, parent_cid)
            with self.layer_store.begin(parent) as pending:
                reader = source.tar_stream()
                while chunk := reader.read(1 << 20):
                    pending.feed(chunk)
                layer = pending.finish()
            d.registered(layer.diff_id)
            return layer

        return run

    @staticmethod
    def _parent_chain(ctx: TransferContext, parent_transfer: Transfer | None, parent_cid: Digest | None) -> Digest | None:
        if parent_transfer is None:
            return parent_cid
        while not parent_transfer.done.wait(0.05):
            if ctx.cancelled.is_set():
                raise DistributionError("layer registration cancelled")
        if parent_transfer.error is not None:
            raise parent_transfer.error
        parent: Layer = parent_transfer.result
        return parent.chain_id
