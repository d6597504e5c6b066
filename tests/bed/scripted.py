"""A small scripted HTTP server, for behaviour no real registry shows.

Used only where distribution 2.8 cannot be made to do the thing under test: ``Link``
pagination of tag lists (as Docker Hub and distribution 3 do), redirects to another host,
and 429 answers with ``Retry-After``. Each route is a function of the request; every
request is recorded with its headers so tests can check what a client sent.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | dict[str, Any] | list[Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: instead of ``body``: this many zero bytes, written as the client reads them (a huge body
    #: that is never held whole); what was written is counted in ``ScriptedServer.sent``
    stream: int = 0


Route = Callable[[Request], Reply]


class ScriptedServer:
    def __init__(self) -> None:
        self.routes: list[tuple[str, Route]] = []  # (path prefix, route), first match wins
        self.requests: list[Request] = []
        self.sent = 0  # bytes of streamed bodies written
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                u = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                req = Request(self.command, u.path, parse_qs(u.query), {k: v for k, v in self.headers.items()})
                server.requests.append(req)
                reply = server._route(req)
                if reply.status < 0:  # drop the connection without answering
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                body = reply.body
                if isinstance(body, (dict, list)):
                    body = json.dumps(body).encode()
                    reply.headers.setdefault("Content-Type", "application/json")
                elif isinstance(body, str):
                    body = body.encode()
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(reply.stream or len(body)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                if not reply.stream:
                    self.wfile.write(body)
                    return
                self.close_connection = True
                chunk = bytes(64 * 1024)
                try:
                    for _ in range(0, reply.stream, len(chunk)):
                        self.wfile.write(chunk)
                        server.sent += len(chunk)
                except OSError:  # the client stopped reading and closed
                    pass

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def route(self, prefix: str, fn: Route) -> None:
        self.routes.append((prefix, fn))

    def _route(self, req: Request) -> Reply:
        for prefix, fn in self.routes:
            if req.path.startswith(prefix):
                return fn(req)
        return Reply(404, {"errors": [{"code": "NOT_FOUND", "message": "not found"}]})

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
