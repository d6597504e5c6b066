"""Registry authentication: credentials, ``WWW-Authenticate`` challenges, and the token flows.

* :class:`AuthConfig`: moby's ``registry.AuthConfig``; its repr never shows a secret.
* :func:`parse_challenges` / :class:`ChallengeManager`: challenges read from 401 answers to
  ``/v2/`` pings only, stored per ``scheme://host:port/…/v2/`` (docker/distribution registry/client/auth/challenge).
* :class:`TokenHandler`, :class:`BasicHandler`, :class:`PassThruTokenHandler`: the handlers the
  :class:`Authorizer` runs for each challenge scheme (docker/distribution registry/client/auth/session.go). A request to a host that was
  never pinged gets no ``Authorization`` at all, so credentials never follow a redirect.
* :class:`DockerConfigFile`: ``~/.docker/config.json`` credentials — ``auths``, ``credsStore``
  and ``credHelpers`` through ``docker-credential-<name>`` programs.
"""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import requests

from ..errors import (
    CredentialHelperError,
    ManifestTooLargeError,
    NoBasicAuthCredentialsError,
    NoTokenError,
    TokenAuthError,
)

__all__ = [
    "AUTH_CLIENT_ID",
    "AuthConfig",
    "Authorizer",
    "BasicHandler",
    "Challenge",
    "ChallengeManager",
    "DockerConfigFile",
    "PassThruTokenHandler",
    "TokenHandler",
    "parse_challenges",
    "repository_scope",
]

AUTH_CLIENT_ID = "docker"  # moby's AuthClientID
MIN_TOKEN_LIFETIME = 60  # seconds; moby's minimum for expires_in
MAX_TOKEN_RESPONSE = 1 << 20  # bytes of a token server's answer that are read
TOKEN_TIMEOUT = 15.0  # seconds; moby's token client timeout
IDENTITY_TOKEN_USERNAME = "<token>"  # what credential helpers use for identity tokens


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Credentials for one registry. Secrets are left out of ``repr``."""

    username: str = ""
    password: str = field(default="", repr=False)
    auth: str = field(default="", repr=False)
    server_address: str = ""
    identity_token: str = field(default="", repr=False)
    registry_token: str = field(default="", repr=False)

    @property
    def has_auth_info(self) -> bool:
        """moby's ``hasAuthInfo``: a registry token, or both username and password."""
        return bool(self.registry_token or (self.username and self.password))

    def hmac_key_input(self) -> bytes:
        """The JSON moby digests for the V2-metadata HMAC key (keys in its order, empty ones omitted)."""
        fields = (("username", self.username), ("password", self.password), ("auth", self.auth),
                  ("identitytoken", self.identity_token), ("registrytoken", self.registry_token))
        return json.dumps({k: v for k, v in fields if v}, separators=(",", ":")).encode()


def repository_scope(path: str, *actions: str) -> str:
    """``repository:<path>:<actions>`` as the token spec writes it."""
    return f"repository:{path}:{','.join(actions)}"


# --- challenges -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: its scheme (lower-cased: ``basic`` or ``bearer``) and
    its parameters (``realm``, ``service``, ``scope`` …)."""

    scheme: str  # lower-cased
    params: Mapping[str, str]


_SEPARATORS = set(' \t"(),/:;<=>?@[]\\{}')


def _is_token_char(c: str) -> bool:
    return 32 < ord(c) < 127 and c not in _SEPARATORS


def _parse_one(value: str) -> Challenge | None:
    i, n = 0, len(value)
    while i < n and value[i] in " \t":
        i += 1
    start = i
    while i < n and _is_token_char(value[i]):
        i += 1
    scheme = value[start:i].lower()
    if not scheme:
        return None
    params: dict[str, str] = {}
    while True:
        while i < n and value[i] in " \t":
            i += 1
        start = i
        while i < n and _is_token_char(value[i]):
            i += 1
        key = value[start:i].lower()
        if not key:
            break
        while i < n and value[i] in " \t":
            i += 1
        if i >= n or value[i] != "=":
            break
        i += 1
        while i < n and value[i] in " \t":
            i += 1
        if i < n and value[i] == '"':
            i += 1
            out: list[str] = []
            closed = False
            while i < n:
                c = value[i]
                if c == "\\" and i + 1 < n:
                    out.append(value[i + 1])
                    i += 2
                    continue
                if c == '"':
                    closed = True
                    i += 1
                    break
                out.append(c)
                i += 1
            if not closed:
                break
            params[key] = "".join(out)
        else:
            start = i
            while i < n and _is_token_char(value[i]):
                i += 1
            if start == i:
                break
            params[key] = value[start:i]
        while i < n and value[i] in " \t":
            i += 1
        if i < n and value[i] == ",":
            i += 1
            continue
        break
    return Challenge(scheme, params)


def parse_challenges(headers: Iterable[str]) -> list[Challenge]:
    """Parse ``WWW-Authenticate`` values; a malformed parameter ends that challenge's parameters."""
    return [c for c in (_parse_one(v) for v in headers) if c is not None]


def ping_key(url: str) -> str:
    """``scheme://host:port/<path through /v2/>``: the key challenges are stored and looked up under."""
    u = urlsplit(url)
    port = u.port or (443 if u.scheme == "https" else 80)
    host = (u.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    path = u.path
    idx = path.find("/v2/")
    if idx < 0:
        idx = path.find("/v1/")
        path = path[:idx] + "/v2/" if idx >= 0 else ""
    else:
        path = path[: idx + 4]
    return f"{u.scheme}://{host}:{port}{path}"


class ChallengeManager:
    """Challenges per pinged endpoint; a URL whose key was never pinged has none."""

    def __init__(self) -> None:
        self._by_key: dict[str, list[Challenge]] = {}
        self._lock = threading.Lock()

    def add_response(self, url: str, status: int, www_authenticate: Iterable[str]) -> None:
        """Record a ping's answer for ``url``'s endpoint: its challenges on a 401, none otherwise."""
        with self._lock:
            self._by_key[ping_key(url)] = parse_challenges(www_authenticate) if status == 401 else []

    def get(self, url: str) -> list[Challenge] | None:
        """The challenges of ``url``'s endpoint; None when it was never pinged."""
        with self._lock:
            return self._by_key.get(ping_key(url))


# --- handlers -------------------------------------------------------------------------------


class Handler(Protocol):
    """Answers the challenges of one ``scheme`` (``basic``, ``bearer``)."""

    scheme: str

    def authorize(self, headers: dict[str, str], challenge: Challenge, extra_scopes: list[str]) -> None:
        """Add the credentials that answer ``challenge`` to ``headers``."""
        ...


class PassThruTokenHandler:
    """``RegistryToken`` given by the caller: sent as a bearer token, nothing fetched."""

    scheme = "bearer"

    def __init__(self, token: str) -> None:
        self._token = token

    def authorize(self, headers: dict[str, str], challenge: Challenge, extra_scopes: list[str]) -> None:
        """Send the caller's token as a bearer token."""
        headers["Authorization"] = f"Bearer {self._token}"


class BasicHandler:
    """HTTP basic auth with the username and password of an :class:`AuthConfig`."""
    scheme = "basic"

    def __init__(self, auth: AuthConfig) -> None:
        self._auth = auth

    def authorize(self, headers: dict[str, str], challenge: Challenge, extra_scopes: list[str]) -> None:
        """Add the basic credentials; :class:`NoBasicAuthCredentialsError` without a username and
        password."""
        if not (self._auth.username and self._auth.password):
            raise NoBasicAuthCredentialsError()
        raw = f"{self._auth.username}:{self._auth.password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()


@dataclass
class _Token:
    value: str
    expires: float


class TokenHandler:
    """The bearer-token flow: GET ``realm?service&scope…`` (with basic credentials when both are
    set), or an OAuth2 POST with the identity token as refresh token. Tokens are cached per scope
    set until they expire (at least 60 s after issue)."""

    scheme = "bearer"

    def __init__(
        self,
        session: requests.Session,
        auth: AuthConfig,
        scopes: Iterable[str],
        *,
        offline_access: bool = False,
        client_id: str = AUTH_CLIENT_ID,
        verify: bool | str = True,
        cert: tuple[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        on_refresh_token: Callable[[str], None] | None = None,
    ) -> None:
        self._session = session
        self._auth = auth
        self.scopes = list(scopes)
        self._offline = offline_access
        self._client_id = client_id
        self._verify = verify
        self._cert = cert
        self._headers = dict(headers or {})
        self._on_refresh = on_refresh_token
        self._cache: dict[tuple[str, ...], _Token] = {}
        self._lock = threading.Lock()
        self.requests_made = 0

    def authorize(self, headers: dict[str, str], challenge: Challenge, extra_scopes: list[str]) -> None:
        """Add a bearer token for the challenge's realm and service (fetched or from the cache)."""
        headers["Authorization"] = f"Bearer {self.token(challenge.params, extra_scopes)}"

    def token(self, params: Mapping[str, str], extra_scopes: list[str]) -> str:
        """A token for this handler's scopes plus ``extra_scopes``: cached until it expires, else
        fetched from the challenge's realm (``params``)."""
        scopes = list(self.scopes) + [s for s in extra_scopes if s not in self.scopes]
        key = tuple(scopes)
        with self._lock:
            cached = self._cache.get(key)
            if cached and cached.expires > time.time():
                return cached.value
        tok = self._fetch(params, scopes)
        with self._lock:
            self._cache[key] = tok
        return tok.value

    def _fetch(self, params: Mapping[str, str], scopes: list[str]) -> _Token:
        from .transport import (
            describe_request_error,
            follow_redirects,
            handle_error_response,
            read_capped,
            redact_url,
        )

        realm = params.get("realm")
        if not realm:
            raise TokenAuthError("no realm specified for token auth challenge")
        u = urlsplit(realm)
        if u.scheme not in ("http", "https") or not u.netloc:
            raise TokenAuthError(f"invalid token auth challenge realm: {realm}")
        service = params.get("service", "")
        self.requests_made += 1
        try:
            if self._auth.identity_token:
                form = {"grant_type": "refresh_token", "refresh_token": self._auth.identity_token,
                        "client_id": self._client_id, "scope": " ".join(scopes)}
                if service:
                    form["service"] = service
                resp = follow_redirects(self._session, "POST", realm, data=form, timeout=TOKEN_TIMEOUT,
                                        verify=self._verify, cert=self._cert, headers=self._headers)
            else:
                query: list[tuple[str, str]] = []
                if service:
                    query.append(("service", service))
                query.extend(("scope", s) for s in scopes)
                basic: tuple[str, str] | None = None
                if self._auth.username and self._auth.password:
                    query.append(("account", self._auth.username))
                    basic = (self._auth.username, self._auth.password)
                if self._offline:
                    query += [("offline_token", "true"), ("client_id", self._client_id)]
                resp = follow_redirects(self._session, "GET", realm, params=sorted(query), auth=basic,
                                        timeout=TOKEN_TIMEOUT, verify=self._verify, cert=self._cert,
                                        headers=self._headers)
        except requests.RequestException as exc:
            from ..errors import TransportError

            method = "POST" if self._auth.identity_token else "GET"
            raise TransportError(method, redact_url(realm), describe_request_error(exc, realm)) from None
        with resp:
            if not 200 <= resp.status_code < 400:
                raise handle_error_response(resp)
            try:  # a token is small: a server that sends more is not read on
                body: Any = json.loads(read_capped(resp, MAX_TOKEN_RESPONSE))
            except ManifestTooLargeError:
                raise TokenAuthError(f"token response larger than {MAX_TOKEN_RESPONSE} bytes") from None
            except ValueError as exc:
                raise TokenAuthError(f"unable to decode token response: {exc}") from None
        if not isinstance(body, dict):
            raise TokenAuthError("unable to decode token response: not an object")
        value = body.get("access_token") or body.get("token")
        if not value or not isinstance(value, str):
            raise NoTokenError()
        refresh = body.get("refresh_token")
        if isinstance(refresh, str) and refresh and self._on_refresh is not None:
            self._on_refresh(refresh)
        expires_in = body.get("expires_in")
        if not isinstance(expires_in, (int, float)) or not math.isfinite(expires_in):  # JSON may say Infinity
            expires_in = 0
        lifetime = max(int(expires_in), MIN_TOKEN_LIFETIME)
        issued = _parse_time(body.get("issued_at")) or time.time()
        return _Token(value, issued + lifetime)


def _parse_time(value: object) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class Authorizer:
    """Adds ``Authorization`` to a request from the challenges of the endpoint it goes to."""

    def __init__(self, challenges: ChallengeManager, handlers: Iterable[Handler]) -> None:
        self.challenges = challenges
        self.handlers = list(handlers)

    def modify(self, url: str, headers: dict[str, str]) -> None:
        """Set ``headers``' ``Authorization`` for ``url``, from the challenges of that URL's own
        endpoint only: a request to an endpoint that was not pinged (a redirect to blob storage on
        another host, say) carries no credentials. A cross-repository mount's ``from`` repository
        adds its pull scope."""
        headers.pop("Authorization", None)
        found = self.challenges.get(url)
        if not found:
            return
        extra: list[str] = []
        frm = parse_qs(urlsplit(url).query).get("from")
        if frm:
            extra.append(repository_scope(frm[0], "pull"))
        for handler in self.handlers:
            for ch in found:
                if ch.scheme == handler.scheme:
                    handler.authorize(headers, ch, extra)


# --- docker's config.json -------------------------------------------------------------------


def default_config_dir() -> Path:
    """docker's configuration directory: ``$DOCKER_CONFIG``, else ``~/.docker``."""
    env = os.environ.get("DOCKER_CONFIG")
    return Path(env) if env else Path.home() / ".docker"


class DockerConfigFile:
    """Credentials from docker's ``config.json``, and storing them back (login/logout)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_config_dir() / "config.json"
        try:
            self.data: dict[str, Any] = json.loads(self.path.read_text())
        except FileNotFoundError:
            self.data = {}
        except ValueError as exc:
            raise CredentialHelperError(f"{self.path}: invalid JSON: {exc}") from None
        if not _config_shaped(self.data):
            raise CredentialHelperError(f"{self.path}: not a docker config file (auths, credHelpers, credsStore)")

    @property
    def auths(self) -> dict[str, dict[str, str]]:
        """The file's ``auths`` table (``{server: {"auth": …}}``), created empty when missing."""
        return self.data.setdefault("auths", {})  # type: ignore[no-any-return]

    def _helper_for(self, server: str) -> str | None:
        helpers = self.data.get("credHelpers") or {}
        host = _hostname_key(server)
        return helpers.get(server) or helpers.get(host) or self.data.get("credsStore") or None

    def get(self, server: str) -> AuthConfig:
        """Credentials for ``server`` (an auth-config key: ``https://index.docker.io/v1/`` or ``host[:port]``)."""
        helper = self._helper_for(server)
        if helper:
            return _helper_get(helper, server)
        entry = self.auths.get(server)
        if entry is None:
            for key, value in self.auths.items():
                if _hostname_key(key) == _hostname_key(server):
                    entry = value
                    break
        if entry is None:
            return AuthConfig()
        return _decode_entry(entry, server)

    def all(self) -> dict[str, AuthConfig]:
        """Every stored credential by key (helpers are asked only for the keys ``auths`` lists)."""
        return {key: self.get(key) for key in self.auths}

    def store(self, server: str, auth: AuthConfig) -> bool:
        """Keep ``auth`` for ``server``: through its credential helper, else in this file. True when
        a password went into the file itself (docker warns about that)."""
        helper = self._helper_for(server)
        if helper:
            secret = auth.identity_token or auth.password
            user = IDENTITY_TOKEN_USERNAME if auth.identity_token else auth.username
            _helper_call(helper, "store", json.dumps({"ServerURL": server, "Username": user, "Secret": secret}))
            self.auths.setdefault(server, {})
        else:
            entry: dict[str, str] = {}
            if auth.identity_token:
                entry["auth"] = base64.b64encode(f"{auth.username}:".encode()).decode()
                entry["identitytoken"] = auth.identity_token
            else:
                entry["auth"] = base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode()
            self.auths[server] = entry
        self._save()
        return not helper and bool(auth.password) and not auth.identity_token

    def erase(self, server: str) -> bool:
        """Remove ``server``'s credentials (from its credential helper too); True when the file had an
        entry for it or a helper serves it."""
        helper = self._helper_for(server)
        if helper:
            _helper_call(helper, "erase", server)
        found = self.auths.pop(server, None) is not None
        self._save()
        return found or bool(helper)

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.data, f, indent="\t")
        os.replace(tmp, self.path)


def _config_shaped(data: object) -> bool:
    """``auths`` maps to objects, ``credHelpers`` to helper names, ``credsStore`` is a name."""
    if not isinstance(data, dict):
        return False
    auths, helpers, store = data.get("auths") or {}, data.get("credHelpers") or {}, data.get("credsStore") or ""
    return (isinstance(auths, dict) and all(isinstance(v, dict) for v in auths.values())
            and isinstance(helpers, dict) and all(isinstance(v, str) for v in helpers.values())
            and isinstance(store, str))


def _hostname_key(server: str) -> str:
    for prefix in ("https://", "http://"):
        if server.startswith(prefix):
            server = server[len(prefix):]
    return server.split("/", 1)[0]


def _decode_entry(entry: Mapping[str, str], server: str) -> AuthConfig:
    username, password = entry.get("username", ""), entry.get("password", "")
    raw = entry.get("auth", "")
    if raw:
        try:
            username, _, password = base64.b64decode(raw).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise CredentialHelperError(f"invalid auth entry for {server} in config.json") from None
    return AuthConfig(username=username, password=password, auth=raw, server_address=server,
                      identity_token=entry.get("identitytoken", ""))


def _helper_call(helper: str, action: str, payload: str) -> str:
    program = f"docker-credential-{helper}"
    exe = shutil.which(program)
    if exe is None:
        raise CredentialHelperError(f"{program}: credential helper not found in PATH")
    proc = subprocess.run([exe, action], input=payload, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        # helpers print their error on stdout; it never contains the secret we sent
        message = (proc.stdout.strip() or proc.stderr.strip() or f"exit status {proc.returncode}")[:500]
        raise CredentialHelperError(f"error {action} credentials with {program}: {message}")
    return proc.stdout


def _helper_get(helper: str, server: str) -> AuthConfig:
    try:
        out = _helper_call(helper, "get", server)
    except CredentialHelperError as exc:
        if "credentials not found" in str(exc).lower():
            return AuthConfig(server_address=server)
        raise
    try:
        doc = json.loads(out)
    except ValueError:
        raise CredentialHelperError(f"docker-credential-{helper}: invalid JSON answer") from None
    user, secret = str(doc.get("Username", "")), str(doc.get("Secret", ""))
    if user == IDENTITY_TOKEN_USERNAME:
        return AuthConfig(server_address=server, identity_token=secret)
    return AuthConfig(username=user, password=secret, server_address=server)

