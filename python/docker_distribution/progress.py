"""Progress in moby's vocabulary (moby pkg/jsonmessage and distribution/xfer progress): items, outputs, and the JSON stream format.

A :class:`Progress` is either a message (``Pulling from library/busybox``, ``Digest: …``) or an
action with counts (``Downloading`` 1.2MB/3.4MB). Outputs receive items; :class:`JSONProgress`
writes moby's JSON stream (one object per line), :class:`TerminalProgress` draws docker-style
per-layer lines, and :class:`ProgressReader` turns byte counts into throttled action updates.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

__all__ = ["CollectingProgress", "JSONProgress", "NullProgress", "Progress", "ProgressOutput", "ProgressReader",
           "TerminalProgress", "format_bytes", "progress_text", "render"]


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress event, moby's ``progress.Progress``: a layer's ``id`` with an ``action``
    (``Downloading``, ``Pull complete`` …) and its ``current``/``total`` bytes, or a ``message``
    line, or ``aux`` data (a push's tag, digest and size). ``last_update`` marks a layer's last
    event."""

    id: str = ""
    message: str = ""
    action: str = ""
    current: int = 0
    total: int = 0
    hide_counts: bool = False
    aux: Mapping[str, Any] | None = None
    last_update: bool = False


class ProgressOutput(Protocol):
    """Where progress goes (moby's ``progress.Output``): pulls and pushes call it from their
    transfer threads, so an implementation must be thread-safe."""

    def write_progress(self, p: Progress) -> None:
        """Take one progress item; must not raise for a well-formed item."""
        ...


class NullProgress:
    """Discards every item."""

    def write_progress(self, p: Progress) -> None:
        """Drop ``p``."""
        pass


@dataclass
class CollectingProgress:
    """Keeps every item (for tests and for callers that render themselves)."""

    items: list[Progress] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def write_progress(self, p: Progress) -> None:
        """Keep ``p`` (thread-safe)."""
        with self._lock:
            self.items.append(p)

    def last(self, id: str) -> Progress:
        """The last item kept for the layer or object ``id``; IndexError if there is none."""
        return [p for p in self.items if p.id == id][-1]

    def texts(self) -> list[str]:
        """Each item's message, or its action when it has none, in order."""
        return [p.message or p.action for p in self.items]


def format_bytes(n: float, precision: int = 4) -> str:
    """Docker's ``units.HumanSizeWithPrecision``: decimal units, ``precision`` significant digits
    (4 in progress bars, as ``units.HumanSize``; 3 in ``docker images``)."""
    units = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000
        i += 1
    return f"{n:.{precision}g}{units[i]}"


#: the width moby's daemon renders JSON progress at; docker's CLI uses the terminal's
DAEMON_WIDTH = 200
#: docker draws the bar only on terminals wider than this; narrower ones get the counts alone
BAR_MIN_WIDTH = 110


def progress_text(p: Progress, width: int = DAEMON_WIDTH) -> str:
    """moby's ``JSONProgress.String()`` at ``width`` columns: ``[====>    ]  1.234MB/5.678MB``, the
    bar left out at ``BAR_MIN_WIDTH`` columns or fewer (as docker does); the counts alone when the
    total is unknown; empty for an item without counts."""
    if p.current <= 0 and p.total <= 0:
        return ""
    if p.total <= 0:
        return f"{format_bytes(p.current):>8}"
    filled = min(50, int(p.current / p.total * 100) // 2)
    box = f"[{'=' * filled}>{' ' * (50 - filled)}] " if width > BAR_MIN_WIDTH else ""
    if p.hide_counts:
        return box
    current = format_bytes(p.current)
    return box + (f"{current:>8}" if p.current > p.total else f"{current:>8}/{format_bytes(p.total)}")


def render(p: Progress) -> dict[str, Any]:
    """moby's JSON message for one item (zero fields omitted, ``progressDetail`` always present for actions)."""
    if p.aux is not None:
        return {"progressDetail": {}, "aux": dict(p.aux)}
    if p.message:
        out: dict[str, Any] = {"status": p.message}
    else:
        detail: dict[str, int] = {}
        if p.current:
            detail["current"] = p.current
        if p.total:
            detail["total"] = p.total
        out = {"status": p.action, "progressDetail": detail}
        if text := progress_text(p):
            out["progress"] = text
    if p.id:
        out["id"] = p.id
    return out


class JSONProgress:
    """moby's JSON progress stream: one object per line."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()

    def write_progress(self, p: Progress) -> None:
        """Write ``p`` as one JSON object on its own line (moby's ``jsonmessage`` shape)."""
        line = json.dumps(render(p), separators=(",", ":"))
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()


class TerminalProgress:
    """docker-style output: on a TTY one live line per layer, with its bar; otherwise one plain line
    per status change, leaving out the items that carry counts (bars), as docker does off a TTY.

    On a TTY every line is fitted to the terminal's width, read at each update: the bar is left
    out at 110 columns or fewer (as docker does), and what is still too long is cut, so a line
    never wraps and each layer keeps exactly one line. When the width changes (a resized window,
    SIGWINCH), every live line is drawn again at the new width.
    """

    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None,
                 width: Callable[[], int] | None = None) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self._width = width or self._terminal_width
        self._lines: list[str] = []  # ids with a live line, in order
        self._items: dict[str, Progress] = {}
        self._drawn_width = 0
        self._lock = threading.Lock()
        self._last_plain: dict[str, str] = {}

    def _terminal_width(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns or DAEMON_WIDTH
        except (OSError, ValueError, AttributeError):
            return DAEMON_WIDTH

    @staticmethod
    def _line(p: Progress, width: int) -> str:
        status = p.message or p.action
        line = f"{p.id}: {status}" if p.id else status
        counts = progress_text(p, width) if p.action else ""
        return f"{line} {counts}" if counts else line

    def write_progress(self, p: Progress) -> None:
        """Show ``p`` (aux records, such as the push result, are not shown)."""
        if p.aux is not None:
            return
        status = p.message or p.action
        if p.action and progress_text(p) and not self.tty:
            return  # as docker: items with counts are not shown off a terminal
        with self._lock:
            if not self.tty or not p.id:
                if not p.id or self._last_plain.get(p.id) != status:
                    line = self._line(p, DAEMON_WIDTH)
                    self.stream.write((self._fit(line, self._width()) if self.tty else line) + "\n")
                    self._last_plain[p.id] = status
                    if self.tty:
                        self._lines.clear()
                        self._items.clear()
                self.stream.flush()
                return
            width = self._width()
            if width != self._drawn_width and self._lines:
                self._redraw(width)
            self._drawn_width = width
            line = self._fit(self._line(p, width), width)
            if p.id not in self._items:
                self._lines.append(p.id)
                self.stream.write(line + "\n")
            else:
                up = len(self._lines) - self._lines.index(p.id)
                self.stream.write(f"\x1b[{up}A\r\x1b[2K{line}\x1b[{up}B\r")
            self._items[p.id] = p
            self.stream.flush()

    @staticmethod
    def _fit(line: str, width: int) -> str:
        """``line`` cut to leave the last column free: writing into it would wrap on some terminals."""
        return line[: max(1, width - 1)]

    def _redraw(self, width: int) -> None:
        """Every live line again, at ``width``, from the top one down."""
        n = len(self._lines)
        self.stream.write(f"\x1b[{n}A\r")
        for id_ in self._lines:
            self.stream.write(f"\x1b[2K{self._fit(self._line(self._items[id_], width), width)}\n")


class ProgressReader:
    """Counts bytes and emits ``action`` updates every min(512 KiB, 1% of total), at most 10 per second."""

    def __init__(self, out: ProgressOutput, id: str, action: str, total: int) -> None:
        self.out, self.id, self.action, self.total = out, id, action, total
        self.current = 0
        self._step = min(512 * 1024, max(1, total // 100)) if total else 512 * 1024
        self._next = self._step
        self._last = 0.0
        self._reported = -1  # the count last reported

    def add(self, n: int) -> None:
        """Count ``n`` more bytes, and report when a step is crossed (at most 10 reports a second)."""
        self.current += n
        if self.current >= self._next:
            self._next = self.current + self._step
            now = time.monotonic()
            if now - self._last >= 0.1:
                self._last = now
                self._report(self.current)

    def finish(self) -> None:
        """Report the transfer complete (the final count, never below the total), unless that
        very count was the last report."""
        final = max(self.current, self.total)
        if final != self._reported:
            self._report(final)

    def _report(self, current: int) -> None:
        self._reported = current
        self.out.write_progress(Progress(self.id, action=self.action, current=current, total=self.total))
