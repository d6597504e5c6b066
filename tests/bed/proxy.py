"""A fault-injecting HTTP proxy in front of a real registry.

Requests are forwarded to the upstream registry unchanged (Host included, so the registry
writes its upload locations for the proxy); a script of faults, chosen per
request by path substring (first match, each fault used ``times`` times), can:

* ``cut_after``: close the connection after N body bytes;
* ``ignore_range``: drop the client's Range header (the upstream answers 200 with everything);
* ``status``: answer with this status (and ``retry_after``) instead of forwarding; ``body`` is
  then the JSON error document sent (by default one for 429, plain text for the rest);
* ``flip_byte``: flip the byte at offset N of the body;
* ``stall``: sleep this many seconds before answering;
* ``throttle``: send (and read) bodies at this many bytes per second;
* ``truncate_to``: answer only the first N body bytes, with a Content-Length that agrees (a
  short answer that looks complete to HTTP);
* ``length_delta``: announce a Content-Length off by this many bytes (the body itself unchanged;
  the connection is closed after it);
* ``cut_request_after``: read N bytes of the request body, then drop the connection unanswered;
* ``flip_request_byte``: flip the byte at offset N of the request body before forwarding it;
* ``headers``: add these headers to the registry's answer (say, ``OCI-Chunk-Min-Length``, which
  distribution 2.8 never sends).

Every response body byte sent and request body byte read is counted per path, so tests can
measure what was re-fetched and re-sent.

``resumable_uploads=True`` puts an upload front in front of the registry: blob upload sessions
are kept by the proxy, which holds every byte that reached it, even from a request cut
mid-body, reports that offset (``GET`` on the session), and hands the whole blob to the real
registry on the final ``PUT``. That is the behaviour of registries that keep offsets across a
broken connection (distribution 3, zot); Debian's distribution 2.8 instead cancels a session
whose PATCH was cut, so resuming an upload cannot be shown against it alone.
"""

from __future__ import annotations

import http.client
import re
import select
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Fault:
    match: str
    method: str | None = None
    times: int = 1
    cut_after: int | None = None
    ignore_range: bool = False
    status: int | None = None
    retry_after: str | None = None
    flip_byte: int | None = None
    stall: float = 0.0
    throttle: int | None = None  # bytes per second of the body
    truncate_to: int | None = None
    length_delta: int | None = None
    cut_request_after: int | None = None
    flip_request_byte: int | None = None
    headers: dict[str, str] | None = None
    body: bytes | None = None  # with status: a JSON answer instead of the default
    #: requests the fault was applied to so far (the test asserts it fired: see unfired)
    fired: int = 0
    #: the fault may rightly never fire (a guard against what a client might do)
    optional: bool = False


class FaultProxy:
    def __init__(self, upstream: str, *, resumable_uploads: bool = False) -> None:
        u = urlsplit(upstream)
        self.upstream_host = u.hostname or "127.0.0.1"
        self.upstream_port = u.port or 80
        self.faults: list[Fault] = []
        self.bytes_sent: dict[str, int] = defaultdict(int)
        self.bytes_received: dict[str, int] = defaultdict(int)  # request bodies, per path
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self.resumable_uploads = resumable_uploads
        self.sessions: dict[str, bytearray] = {}  # virtual upload sessions (resumable_uploads)
        self.inflight = 0  # requests whose body is still being read
        self.sending = 0  # of those, the ones whose client has not shut its end yet
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                proxy._handle(self)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def add(self, fault: Fault) -> None:
        with self._lock:
            self.faults.append(fault)

    def unfired(self) -> list[Fault]:
        """The faults added that no request met (optional ones aside): a test whose faults did not
        fire proves nothing about surviving them."""
        with self._lock:
            return [f for f in self.faults if not f.fired and not f.optional]

    def total_sent(self, match: str) -> int:
        with self._lock:
            return sum(n for path, n in self.bytes_sent.items() if match in path)

    def total_received(self, match: str) -> int:
        """Request body bytes read so far on paths containing ``match`` (cut requests included)."""
        with self._lock:
            return sum(n for path, n in self.bytes_received.items() if match in path)

    def _take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.times > 0 and f.match in path and (f.method is None or f.method == method):
                    f.times -= 1
                    f.fired += 1
                    return f
        return None

    def senders_gone(self, timeout: float) -> bool:
        """Whether every client sending a body has finished or shut its end, within ``timeout``
        (a throttled read may still be draining what the sockets had buffered)."""
        deadline = time.monotonic() + timeout
        while self.sending and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.sending == 0

    @staticmethod
    def _peer_closed(conn: socket.socket) -> bool:
        p = select.poll()
        p.register(conn, select.POLLRDHUP)
        return any(ev & (select.POLLRDHUP | select.POLLHUP | select.POLLERR) for _, ev in p.poll(0))

    def _read_body(self, h: BaseHTTPRequestHandler, fault: Fault | None, sink: bytearray | None,
                   peer_closed: Callable[[], None]) -> tuple[bytes | None, bool]:
        """The request body as far as it arrives: (bytes, complete). A client that dies or a
        ``cut_request_after`` leaves it incomplete. ``sink`` gets every byte as it arrives;
        ``peer_closed`` is called when the client shuts its end during a throttled read."""
        limit = fault.cut_request_after if fault else None
        throttle = fault.throttle if fault else None
        path = h.path.split("?")[0]
        parts: list[bytes] = []
        got = 0

        def take(n: int) -> bool:
            nonlocal got
            while n > 0:
                want = min(n, 64 * 1024)
                if limit is not None:
                    want = min(want, limit - got)
                    if want <= 0:
                        return False
                data = h.rfile.read(want)
                if not data:
                    return False
                parts.append(data)
                got += len(data)
                n -= len(data)
                with self._lock:
                    self.bytes_received[path] += len(data)
                    if sink is not None:
                        sink.extend(data)
                if throttle:
                    until = time.monotonic() + len(data) / throttle
                    while (left := until - time.monotonic()) > 0:
                        if self._peer_closed(h.connection):
                            peer_closed()
                        time.sleep(min(left, 0.01))
            return True

        try:
            if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
                while True:
                    line = h.rfile.readline()
                    if not line.strip():
                        return b"".join(parts), False
                    size = int(line.split(b";")[0].strip(), 16)
                    if size == 0:
                        h.rfile.readline()
                        return b"".join(parts), True
                    if not take(size):
                        return b"".join(parts), False
                    h.rfile.readline()
            length = int(h.headers.get("Content-Length") or 0)
            if not length:
                return None, True
            done = take(length)
            return b"".join(parts), done
        except (OSError, ValueError):
            return b"".join(parts), False

    @staticmethod
    def _drop(h: BaseHTTPRequestHandler) -> None:
        h.close_connection = True
        try:
            h.connection.shutdown(2)
        except OSError:
            pass

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        fault = self._take(h.command, h.path)
        sending = True

        def stopped_sending() -> None:  # once per request
            nonlocal sending
            with self._lock:
                if sending:
                    sending = False
                    self.sending -= 1

        with self._lock:
            self.inflight += 1
            self.sending += 1
        try:
            body, complete = self._read_body(h, fault, self._session_of(h), stopped_sending)
        finally:
            stopped_sending()
            with self._lock:
                self.inflight -= 1
        headers: dict[str, str] = {}
        for k, v in h.headers.items():  # a repeated header (Accept, say) is one comma-joined list
            if k.lower() not in ("connection", "proxy-connection", "transfer-encoding", "content-length"):
                headers[k] = f"{headers[k]}, {v}" if k in headers else v
        if body is not None:
            headers["Content-Length"] = str(len(body))
            if fault and fault.flip_request_byte is not None and fault.flip_request_byte < len(body):
                i = fault.flip_request_byte
                body = body[:i] + bytes([body[i] ^ 0xFF]) + body[i + 1:]
        with self._lock:
            self.requests.append((h.command, h.path, dict(headers)))
        if self.resumable_uploads and self._virtual(h, body, complete, headers):
            return
        if not complete:
            self._drop(h)  # a cut request never reaches the registry
            return
        if fault and fault.stall:
            time.sleep(fault.stall)
        if fault and fault.status:
            payload = fault.body if fault.body is not None else \
                b'{"errors":[{"code":"TOOMANYREQUESTS","message":"injected"}]}' if fault.status == 429 else b"injected"
            is_json = fault.body is not None or fault.status == 429
            h.send_response(fault.status)
            if fault.retry_after is not None:
                h.send_header("Retry-After", fault.retry_after)
            h.send_header("Content-Type", "application/json" if is_json else "text/plain")
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)
            return
        if fault and fault.ignore_range:
            headers = {k: v for k, v in headers.items() if k.lower() != "range"}
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            conn.request(h.command, h.path, body=body, headers=headers)
            self._relay(h, conn.getresponse(), fault)
        finally:
            conn.close()

    def _relay(self, h: BaseHTTPRequestHandler, resp: http.client.HTTPResponse, fault: Fault | None) -> None:
        h.send_response(resp.status, resp.reason)
        limit: int | None = None
        for k, v in resp.getheaders():
            if k.lower() in ("connection", "transfer-encoding"):
                continue
            if k.lower() == "content-length" and fault and fault.truncate_to is not None:
                limit = min(int(v), fault.truncate_to)
                v = str(limit)
            elif k.lower() == "content-length" and fault and fault.length_delta is not None:
                v = str(max(0, int(v) + fault.length_delta))
                h.close_connection = True
            h.send_header(k, v)
        for k, v in (fault.headers or {}).items() if fault else ():
            h.send_header(k, v)
        if resp.getheader("Content-Length") is None and h.command != "HEAD" and resp.status not in (204, 304):
            h.send_header("Connection", "close")  # an upstream chunked body is relayed up to the close
            h.close_connection = True
        h.end_headers()
        if h.command == "HEAD":
            return
        sent = 0
        while True:
            try:
                chunk = resp.read(64 * 1024)
            except (OSError, http.client.HTTPException):  # the upstream broke off: so do we
                self._drop(h)
                return
            if not chunk:
                break
            if limit is not None:
                chunk = chunk[: max(0, limit - sent)]
                if not chunk:
                    break
            if fault and fault.flip_byte is not None and sent <= fault.flip_byte < sent + len(chunk):
                i = fault.flip_byte - sent
                chunk = chunk[:i] + bytes([chunk[i] ^ 0xFF]) + chunk[i + 1:]
            if fault and fault.cut_after is not None and sent + len(chunk) > fault.cut_after:
                part = chunk[: fault.cut_after - sent]
                h.wfile.write(part)
                self._count(h.path, len(part))
                h.wfile.flush()
                self._drop(h)
                return
            h.wfile.write(chunk)
            sent += len(chunk)
            self._count(h.path, len(chunk))
            if fault and fault.throttle:
                h.wfile.flush()
                time.sleep(len(chunk) / fault.throttle)
        if h.close_connection:
            h.wfile.flush()
            self._drop(h)

    # --- the resumable upload front -----------------------------------------------------------

    _UPLOADS = re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/(?P<id>[^/?]*)$")

    def _session_of(self, h: BaseHTTPRequestHandler) -> bytearray | None:
        """The front's session a PATCH or PUT writes into, if any."""
        if not self.resumable_uploads or h.command not in ("PATCH", "PUT"):
            return None
        m = self._UPLOADS.match(urlsplit(h.path).path)
        if m is None or not m.group("id").startswith("front-"):
            return None
        with self._lock:
            return self.sessions.get(m.group("id"))

    def settled(self, timeout: float = 30.0) -> None:
        """Wait until no request body is being read (a killed client's buffered bytes included)."""
        deadline = time.monotonic() + timeout
        while self.inflight and time.monotonic() < deadline:
            time.sleep(0.02)

    def _virtual(self, h: BaseHTTPRequestHandler, body: bytes | None, complete: bool,
                 headers: dict[str, str]) -> bool:
        """Serve blob upload sessions here; False for every other request."""
        u = urlsplit(h.path)
        m = self._UPLOADS.match(u.path)
        if m is None:
            return False
        query = parse_qs(u.query)
        name, sid = m.group("name"), m.group("id")
        if h.command == "POST" and not sid and not query:
            sid = f"front-{uuid.uuid4()}"
            with self._lock:
                self.sessions[sid] = bytearray()
            self._session_reply(h, 202, name, sid, 0)
            return True
        if not sid.startswith("front-"):
            return False
        with self._lock:
            data = self.sessions.get(sid)  # the body went in as it arrived, cut or not: that is the point
        if data is None:
            self._reply(h, 404, {}, b'{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"blob upload unknown"}]}')
            return True
        if not complete:
            self._drop(h)
            return True
        if h.command in ("PATCH", "GET"):
            self._session_reply(h, 202 if h.command == "PATCH" else 204, name, sid, len(data))
        elif h.command == "DELETE":
            with self._lock:
                self.sessions.pop(sid, None)
            self._reply(h, 204, {}, b"")
        elif h.command == "PUT":
            with self._lock:
                self.sessions.pop(sid, None)
            self._hand_over(h, name, bytes(data), query.get("digest", [""])[0], headers)
        else:
            self._reply(h, 405, {}, b"")
        return True

    def _hand_over(self, h: BaseHTTPRequestHandler, name: str, data: bytes, digest: str,
                   headers: dict[str, str]) -> None:
        """The whole blob to the real registry: POST, then one PUT; its answer is relayed."""
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            keep = {k: v for k, v in headers.items() if k.lower() in ("host", "authorization", "user-agent")}
            conn.request("POST", f"/v2/{name}/blobs/uploads/", body=b"", headers={**keep, "Content-Length": "0"})
            started = conn.getresponse()
            started.read()
            location = urlsplit(started.getheader("Location") or "")
            target = f"{location.path}?{location.query}&digest={digest}"
            conn.request("PUT", target, body=data, headers={**keep, "Content-Length": str(len(data)),
                                                            "Content-Type": "application/octet-stream"})
            self._relay(h, conn.getresponse(), None)
        finally:
            conn.close()

    def _session_reply(self, h: BaseHTTPRequestHandler, status: int, name: str, sid: str, size: int) -> None:
        self._reply(h, status, {"Location": f"/v2/{name}/blobs/uploads/{sid}", "Docker-Upload-UUID": sid,
                                "Range": f"0-{max(size - 1, 0)}"}, b"")

    @staticmethod
    def _reply(h: BaseHTTPRequestHandler, status: int, headers: dict[str, str], payload: bytes) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Docker-Distribution-API-Version", "registry/2.0")
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)

    def _count(self, path: str, n: int) -> None:
        with self._lock:
            self.bytes_sent[path] += n

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
