"""A bearer-token issuer for the registry's ``auth: token`` mode, written for the tests.

It answers the two flows of the distribution token spec:

* ``GET /token?service=…&scope=…&account=…`` with optional HTTP Basic credentials;
* ``POST /token`` (OAuth2) with ``grant_type=password`` or ``grant_type=refresh_token``.

Each user has a password and grants: repository glob → allowed actions. A scope is granted
only for the actions both requested and allowed. Every request is recorded so tests can see
which scopes and credentials a client sent.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .pki import Issued, sign_jwt


@dataclass
class User:
    password: str
    grants: dict[str, tuple[str, ...]]  # repository glob -> actions


@dataclass
class IssuerRequest:
    method: str
    path: str
    params: dict[str, list[str]]
    username: str | None
    authorized: bool


@dataclass
class TokenIssuer:
    service: str
    issuer: str
    signer: Issued
    users: dict[str, User]
    anonymous: dict[str, tuple[str, ...]] = field(default_factory=dict)
    expires_in: int = 300
    requests: list[IssuerRequest] = field(default_factory=list)
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # token -> username
    _server: ThreadingHTTPServer | None = None

    @property
    def realm(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)
        return f"http://{host}:{port}/token"

    def start(self) -> TokenIssuer:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                u = urlsplit(self.path)
                params = parse_qs(u.query)
                username = self._basic_user()
                issuer._handle(self, "GET", u.path, params, username)

            def do_POST(self) -> None:
                u = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                params = parse_qs(self.rfile.read(length).decode())
                issuer._handle(self, "POST", u.path, params, None)

            def _basic_user(self) -> tuple[str, str] | None:
                header = self.headers.get("Authorization", "")
                if not header.lower().startswith("basic "):
                    return None
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                return user, password

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # --- token logic -----------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler, method: str, path: str, params: dict[str, list[str]],
                basic: tuple[str, str] | None) -> None:
        if path != "/token":
            return self._send(h, 404, {"errors": [{"code": "NOT_FOUND", "message": "not found"}]})
        username: str | None = None
        ok = True
        scopes: list[str] = []
        refresh: str | None = None
        if method == "GET":
            scopes = params.get("scope", [])
            if basic is not None:
                username = basic[0]
                user = self.users.get(username)
                ok = user is not None and secrets.compare_digest(user.password, basic[1])
                if ok and params.get("offline_token", [""])[0] == "true":
                    refresh = self._new_refresh(username)
        else:
            scopes = " ".join(params.get("scope", [])).split()
            grant = params.get("grant_type", [""])[0]
            if grant == "refresh_token":
                username = self.refresh_tokens.get(params.get("refresh_token", [""])[0])
                ok = username is not None
                refresh = params.get("refresh_token", [""])[0]
            elif grant == "password":
                username = params.get("username", [""])[0]
                user = self.users.get(username)
                ok = user is not None and secrets.compare_digest(user.password, params.get("password", [""])[0])
                if ok:
                    refresh = self._new_refresh(username)
            else:
                ok = False
        self.requests.append(IssuerRequest(method, path, params, username, ok))
        if not ok:
            return self._send(h, 401, {"errors": [{"code": "UNAUTHORIZED",
                                                   "message": "incorrect username or password"}]})
        access = [self._grant(username, s) for s in scopes]
        now = int(time.time())
        claims = {
            "iss": self.issuer, "sub": username or "", "aud": self.service,
            "exp": now + self.expires_in, "nbf": now - 10, "iat": now,
            "jti": secrets.token_hex(8),
            "access": [a for a in access if a is not None],
        }
        token = sign_jwt(claims, self.signer)
        body: dict[str, object] = {"token": token, "access_token": token, "expires_in": self.expires_in,
                                   "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}
        if refresh:
            body["refresh_token"] = refresh
        self._send(h, 200, body)

    def _new_refresh(self, username: str) -> str:
        token = secrets.token_urlsafe(16)
        self.refresh_tokens[token] = username
        return token

    def _grant(self, username: str | None, scope: str) -> dict[str, object] | None:
        parts = scope.split(":")
        if len(parts) < 3:
            return None
        typ, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1].split(",")
        rules = self.users[username].grants if username else self.anonymous
        allowed: set[str] = set()
        for pattern, acts in rules.items():
            if fnmatch.fnmatchcase(name, pattern):
                allowed.update(acts)
        granted = [a for a in actions if a in allowed]
        return {"type": typ, "name": name, "actions": granted}

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
