"""The transfer manager (moby's ``xfer/transfer.go``, moby distribution/xfer/transfer.go), on threads.

* ``transfer(key, fn, out)`` runs ``fn`` in a thread once per key: a second request for a key
  whose transfer is running attaches another watcher instead of starting a new one.
* At most ``limit`` transfers hold a slot (0 means unlimited); the rest wait in FIFO order.
  A transfer gives its slot back when it calls ``ctx.inactive()`` (e.g. before extraction) or
  ends, whichever comes first.
* Every watcher sees the transfer's progress (the latest item when it attaches late).
  Releasing the last watcher of a running transfer cancels it; ``released`` is set once the
  transfer is done and every watcher has let go.
* ``drop_prefix(chunk, skip)``: a resumed transfer's stream that starts over (a server ignoring
  ``Range``, a layer compressed again) drops the bytes already moved.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import (
    DistributionError,
    DoNotRetry,
    OperationCancelledError,
    check_count,
    retry_on_error,
)
from ..progress import Progress, ProgressOutput

__all__ = ["DEFAULT_WAIT_DURATION", "RETRY_DELAY_UNIT", "SETTLE_TIMEOUT", "Transfer", "TransferContext",
           "TransferManager", "Watcher", "release_all", "should_retry"]

DEFAULT_WAIT_DURATION = 1.0  # seconds per countdown tick, moby's waitDuration
RETRY_DELAY_UNIT = 5  # seconds × attempt before the next attempt, as moby
#: how long a caller that gave up waits for the transfers its release cancelled to stop: they check
#: for cancellation between chunks, so this bounds a read from a silent server, or an upload
#: whose last bytes already sit in the socket and wait for the registry's answer
SETTLE_TIMEOUT = 10.0


class Watcher:
    """One caller's attachment to a transfer: where that caller's progress goes."""

    def __init__(self, transfer: Transfer, out: ProgressOutput) -> None:
        self.transfer = transfer
        self.out = out


class Transfer:
    """One running transfer: its result or error once ``done`` is set, the progress it broadcasts to
    its watchers, and its cancellation (``cancelled``), set when the last watcher lets go before it
    is done."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.cancelled = threading.Event()  # the transfer's own context
        self.done = threading.Event()
        self.released = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.started = False
        self._inactive = False
        self._watchers: list[Watcher] = []
        self._latest: Progress | None = None
        self._lock = threading.Lock()

    def broadcast(self, p: Progress) -> None:
        """Send ``p`` to every watcher (and keep it for watchers that attach later)."""
        with self._lock:
            self._latest = p
            outs = [w.out for w in self._watchers]
        for out in outs:
            out.write_progress(p)

    def watch(self, out: ProgressOutput) -> Watcher:
        """Attach ``out``: it gets the latest progress at once, then everything broadcast."""
        w = Watcher(self, out)
        with self._lock:
            self._watchers.append(w)
            latest = self._latest
        if latest is not None:
            out.write_progress(latest)
        return w

    def release(self, watcher: Watcher) -> None:
        """Detach ``watcher``; the last one to go cancels a transfer still running."""
        with self._lock:
            if watcher in self._watchers:
                self._watchers.remove(watcher)
            left = len(self._watchers)
        if left == 0:
            if not self.done.is_set():
                self.cancelled.set()
            else:
                self.released.set()

    def watchers(self) -> int:
        """How many watchers are attached."""
        with self._lock:
            return len(self._watchers)

    def _finish(self) -> None:
        self.done.set()
        if self.watchers() == 0:
            self.released.set()


class TransferContext:
    """What a transfer function gets: progress, its slot, cancellation."""

    def __init__(self, manager: TransferManager, transfer: Transfer, start: threading.Event) -> None:
        self.manager = manager
        self.transfer = transfer
        self._start = start

    @property
    def cancelled(self) -> threading.Event:
        """Set when the transfer is cancelled (every watcher let go)."""
        return self.transfer.cancelled

    @property
    def started_immediately(self) -> bool:
        """True when the transfer got a concurrency slot at once (else it should show ``Waiting`` and
        :meth:`wait_for_slot`)."""
        return self._start.is_set()

    def progress(self, p: Progress) -> None:
        """Send ``p`` to every watcher of the transfer."""
        self.transfer.broadcast(p)

    write_progress = progress  # a ProgressOutput: what it is given goes to every watcher

    def wait_for_slot(self) -> None:
        """Block until the transfer may run; :class:`OperationCancelledError` if it is cancelled
        meanwhile."""
        while not self._start.wait(0.05):
            if self.transfer.cancelled.is_set():
                raise OperationCancelledError()

    def check(self) -> None:
        """Raise :class:`OperationCancelledError` if the transfer is cancelled."""
        if self.transfer.cancelled.is_set():
            raise OperationCancelledError()

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake up cancelled."""
        if self.transfer.cancelled.wait(seconds):
            raise OperationCancelledError()

    def countdown(self, id: str, seconds: int, tick: float, cancelled_message: str) -> None:
        """moby's retry delay: ``Retrying in N seconds`` once per tick; cancellation ends it with an error."""
        for n in range(seconds, 0, -1):
            self.progress(Progress(id, action=f"Retrying in {n} second{'s' if n != 1 else ''}"))
            try:
                self.sleep(tick)
            except OperationCancelledError:
                raise DistributionError(cancelled_message) from None

    def inactive(self) -> None:
        """Give the concurrency slot back (the rest of the work does not count against the limit)."""
        self.manager._inactivate(self.transfer)


TransferFunc = Callable[[TransferContext], Any]


def release_all(watchers: Iterable[Watcher]) -> None:
    """Let go of ``watchers``; then wait (at most :data:`SETTLE_TIMEOUT` in all) for the transfers
    that this cancelled (those nobody else watches), so a pull or push that gave up returns with
    none of its own transfers still writing to the store or the registry. A finished transfer is
    not waited for; one that other callers still watch goes on."""
    watchers = list(watchers)
    for w in watchers:
        w.transfer.release(w)
    deadline = time.monotonic() + SETTLE_TIMEOUT
    for w in watchers:
        if w.transfer.cancelled.is_set():
            w.transfer.done.wait(max(0.0, deadline - time.monotonic()))


def drop_prefix(chunk: bytes, skip: int) -> tuple[bytes, int]:
    """Drop up to ``skip`` leading bytes of ``chunk``: what is left of it, and what is left to drop."""
    if len(chunk) <= skip:
        return b"", skip - len(chunk)
    return chunk[skip:], 0


def should_retry(ctx: TransferContext, exc: BaseException, attempt: int, max_attempts: int) -> bool:
    """Whether a failed attempt gets another (moby: not after a cancel, a DoNotRetry, or the last
    attempt). Only errors about the registry, the network or the disk are retried: Ctrl-C or a
    bug (a TypeError, say) ends the transfer at once."""
    if ctx.cancelled.is_set():
        raise OperationCancelledError() from exc
    err = exc if isinstance(exc, DoNotRetry) else retry_on_error(exc)
    return not isinstance(err, DoNotRetry) and attempt < max_attempts and isinstance(exc, (DistributionError, OSError))


class TransferManager:
    """Runs transfers ``limit`` at a time (0: no limit; negative: refused), one per key. ``what`` names the limit in
    the error for a negative one (``max concurrent downloads``, say)."""

    def __init__(self, limit: int, what: str = "concurrency") -> None:
        self.what = what
        self.limit = check_count(limit, what)
        self._active = 0
        self._waiting: deque[tuple[Transfer, threading.Event]] = deque()
        self._transfers: dict[str, Transfer] = {}
        self._lock = threading.Lock()

    def set_concurrency(self, limit: int) -> None:
        """Change the limit (negative: refused); waiting transfers start if it grew."""
        check_count(limit, self.what)
        with self._lock:
            self.limit = limit
            self._fill()

    def transfer(self, key: str, fn: TransferFunc, out: ProgressOutput) -> tuple[Transfer, Watcher]:
        """Run ``fn`` for ``key`` in a thread, or attach to the transfer of that key already running;
        the transfer and this caller's watcher (release it when done)."""
        while True:
            with self._lock:
                existing = self._transfers.get(key)
                if existing is None:
                    t = Transfer(key)
                    self._transfers[key] = t
                    start = threading.Event()
                    if self.limit == 0 or self._active < self.limit:
                        self._active += 1
                        t.started = True
                        start.set()
                    else:
                        self._waiting.append((t, start))
                    break
                if not existing.cancelled.is_set():
                    return existing, existing.watch(out)
            existing.done.wait()  # a cancelled transfer with this key: wait for it to go, then start anew
            with self._lock:
                if self._transfers.get(key) is existing:
                    del self._transfers[key]
        watcher = t.watch(out)
        ctx = TransferContext(self, t, start)
        threading.Thread(target=self._run, args=(t, fn, ctx), name=f"xfer {key[:40]}", daemon=True).start()
        return t, watcher

    def _run(self, t: Transfer, fn: TransferFunc, ctx: TransferContext) -> None:
        try:
            t.result = fn(ctx)
        except BaseException as exc:  # the error is the transfer's result; the watcher raises it
            t.error = exc
        finally:
            self._inactivate(t)
            with self._lock:
                if self._transfers.get(t.key) is t:
                    del self._transfers[t.key]
            t._finish()

    def _inactivate(self, t: Transfer) -> None:
        with self._lock:
            if t._inactive:
                return
            t._inactive = True
            if t.started:
                self._active -= 1
            else:
                self._waiting = deque((w, s) for (w, s) in self._waiting if w is not t)
            self._fill()

    def _fill(self) -> None:
        while self._waiting and (self.limit == 0 or self._active < self.limit):
            t, start = self._waiting.popleft()
            self._active += 1
            t.started = True
            start.set()

    @property
    def active(self) -> int:
        """How many transfers hold a concurrency slot now."""
        with self._lock:
            return self._active
