"""A fault-injecting HTTP proxy in front of a real registry.

Requests are forwarded to the upstream registry unchanged (Host included, so the registry
writes its upload locations for the proxy); a script of faults, chosen per
request by path substring (first match, each fault used ``times`` times), can:

* ``cut_after``: close the connection after N body bytes;
* ``ignore_range``: drop the client's Range header (the upstream answers 200 with everything);
* ``status``: answer with this status (and ``retry_after``) instead of forwarding;
* ``flip_byte``: flip the byte at offset N of the body;
* ``stall``: sleep this many seconds before answering;
* ``throttle``: send the body at this many bytes per second.

Every response body byte sent is counted per path, so tests can measure what was re-fetched.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


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


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        u = urlsplit(upstream)
        self.upstream_host = u.hostname or "127.0.0.1"
        self.upstream_port = u.port or 80
        self.faults: list[Fault] = []
        self.bytes_sent: dict[str, int] = defaultdict(int)
        self.bytes_received: dict[str, int] = defaultdict(int)  # request bodies, per path
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._lock = threading.Lock()
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

    def total_sent(self, match: str) -> int:
        with self._lock:
            return sum(n for path, n in self.bytes_sent.items() if match in path)

    def _take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.times > 0 and f.match in path and (f.method is None or f.method == method):
                    f.times -= 1
                    return f
        return None

    @staticmethod
    def _read_body(h: BaseHTTPRequestHandler) -> bytes | None:
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    h.rfile.readline()
                    return b"".join(parts)
                parts.append(h.rfile.read(size))
                h.rfile.readline()
        length = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(length) if length else None

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        body = self._read_body(h)
        headers = {k: v for k, v in h.headers.items()
                   if k.lower() not in ("connection", "proxy-connection", "transfer-encoding")}
        if body is not None:
            headers["Content-Length"] = str(len(body))
        with self._lock:
            self.requests.append((h.command, h.path, dict(headers)))
            self.bytes_received[h.path.split("?")[0]] += len(body or b"")
        fault = self._take(h.command, h.path)
        if fault and fault.stall:
            time.sleep(fault.stall)
        if fault and fault.status:
            payload = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"injected"}]}' if fault.status == 429 else b"injected"
            h.send_response(fault.status)
            if fault.retry_after is not None:
                h.send_header("Retry-After", fault.retry_after)
            h.send_header("Content-Type", "application/json" if fault.status == 429 else "text/plain")
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)
            return
        if fault and fault.ignore_range:
            headers = {k: v for k, v in headers.items() if k.lower() != "range"}
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            conn.request(h.command, h.path, body=body, headers=headers)
            resp = conn.getresponse()
            h.send_response(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in ("connection", "transfer-encoding"):
                    h.send_header(k, v)
            h.end_headers()
            if h.command == "HEAD":
                return
            sent = 0
            while True:
                chunk = resp.read(64 * 1024)
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
                    h.close_connection = True
                    h.connection.shutdown(2)
                    return
                h.wfile.write(chunk)
                sent += len(chunk)
                self._count(h.path, len(chunk))
                if fault and fault.throttle:
                    h.wfile.flush()
                    time.sleep(len(chunk) / fault.throttle)
        finally:
            conn.close()

    def _count(self, path: str, n: int) -> None:
        with self._lock:
            self.bytes_sent[path] += n

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
