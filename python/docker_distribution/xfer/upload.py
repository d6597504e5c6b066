"""The layer upload manager (moby's ``xfer/upload.go``, moby distribution/xfer/upload.go).

Five uploads at a time by default; identical keys (the same layer for the same repository)
are uploaded once, within a push and across concurrent pushes; a failed upload is retried
up to 5 times with moby's ``retries × 5`` second countdown.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from ..descriptor import Descriptor
from ..errors import (
    OperationCancelledError,
    check_count,
)
from ..progress import Progress, ProgressOutput
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

__all__ = ["DEFAULT_MAX_CONCURRENT_UPLOADS", "MAX_UPLOAD_ATTEMPTS", "LayerUploadManager", "UploadDescriptor"]

log = logging.getLogger(__name__)

DEFAULT_MAX_CONCURRENT_UPLOADS = 5  # moby's daemon default
MAX_UPLOAD_ATTEMPTS = 5  # moby: not configurable


class UploadDescriptor(Protocol):
    """One layer to push (moby's ``xfer.UploadDescriptor``)."""

    def key(self) -> str:
        """Identifies the upload: layers with the same key are uploaded once."""
        ...

    def id(self) -> str:
        """The short ID shown in progress."""
        ...

    def upload(self, ctx: TransferContext) -> Descriptor:
        """Upload the layer (or find it there already); the descriptor of the blob in the registry."""
        ...

    def set_remote_descriptor(self, d: Descriptor) -> None:
        """Told the result of the upload with this key (which may have been another descriptor's)."""
        ...


class LayerUploadManager:
    """moby's ``xfer.LayerUploadManager``: uploads layers ``concurrency`` at a time (5 by
    default), each up to ``max_attempts`` times (5) with moby's countdown between attempts (5
    ticks of ``wait_duration`` seconds per retry so far), once per key."""

    def __init__(self, concurrency: int = DEFAULT_MAX_CONCURRENT_UPLOADS, *,
                 wait_duration: float = DEFAULT_WAIT_DURATION, max_attempts: int = MAX_UPLOAD_ATTEMPTS) -> None:
        self.tm = TransferManager(concurrency, "max concurrent uploads")
        self.wait_duration = wait_duration
        self.max_attempts = check_count(max_attempts, "max upload attempts")

    def set_concurrency(self, concurrency: int) -> None:
        """Change how many uploads run at once (transfers already started go on)."""
        self.tm.set_concurrency(concurrency)

    def upload(self, layers: Sequence[UploadDescriptor], out: ProgressOutput,
               cancel: threading.Event | None = None) -> None:
        """Upload every layer (``Preparing``, ``Waiting``, then the descriptor's own progress) and
        give each its remote descriptor; raises the first failure, or
        :class:`OperationCancelledError` once ``cancel`` is set."""
        transfers: dict[str, tuple[Transfer, Watcher]] = {}
        order: list[tuple[UploadDescriptor, str]] = []
        for d in layers:
            out.write_progress(Progress(d.id(), action="Preparing"))
            if d.key() not in transfers:
                transfers[d.key()] = self.tm.transfer(d.key(), self._run(d), out)
            order.append((d, d.key()))
        try:
            for key, (t, _) in transfers.items():
                while not t.done.wait(0.05):
                    if cancel is not None and cancel.is_set():
                        raise OperationCancelledError()
                if t.error is not None:
                    raise t.error
            for d, key in order:
                d.set_remote_descriptor(transfers[key][0].result)
        finally:
            release_all(w for _, w in transfers.values())

    def _run(self, d: UploadDescriptor) -> Callable[[TransferContext], Descriptor]:
        def run(ctx: TransferContext) -> Descriptor:
            if not ctx.started_immediately:
                ctx.progress(Progress(d.id(), action="Waiting"))
                ctx.wait_for_slot()
            retries = 0
            while True:
                try:
                    return d.upload(ctx)
                except BaseException as exc:
                    retries += 1
                    if not should_retry(ctx, exc, retries, self.max_attempts):
                        log.debug("Upload failed: %s", exc)  # the caller reports it
                        raise
                    log.info("Upload failed, retrying: %s", exc)
                    ctx.countdown(d.id(), retries * RETRY_DELAY_UNIT, self.wait_duration,
                                  "upload cancelled during retry delay")

        return run
