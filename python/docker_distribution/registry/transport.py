"""HTTP transport to one registry endpoint: sessions, headers, auth, redirects, retries, errors.

* One pooled ``requests.Session`` per :class:`Transport`; User-Agent plus the caller's
  meta headers on every request; connect and read timeouts. Its TLS connections share one
  context per trust setting (:mod:`.tls`), and a connection closed with its request
  unanswered drops what it still had to send (:mod:`.connection`).
* Redirects are followed here (at most 10, moby's limit) so that ``Authorization`` is only
  ever computed for the endpoint that was pinged: a redirect to blob storage or a CDN, or
  to any other host, gets none. ``Accept`` and ``Range`` are carried over, as moby does.
* Idempotent requests are retried with backoff on 408/429/5xx and on connection errors,
  honouring ``Retry-After`` (bounded by :class:`RetryPolicy`); small documents (manifests,
  listings) are read whole by :meth:`Transport.fetch`, which also retries a body cut short.
* Non-success answers become the typed errors of :mod:`docker_distribution.errors`
  (moby's ``HandleErrorResponse``, docker/distribution registry/client/errors.go, HandleErrorResponse); error bodies are read up to a cap.
* URLs in messages are redacted: no userinfo, and query values other than a few harmless
  protocol parameters are replaced.
* ``rate_limit`` exposes the last ``RateLimit-Limit`` / ``RateLimit-Remaining`` seen.
"""

from __future__ import annotations

import contextlib
import email.utils
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests
from requests.cookies import extract_cookies_to_jar
from requests.hooks import dispatch_hook

from .. import __version__
from ..errors import (
    MAX_ERROR_BODY,
    DeniedError,
    DistributionError,
    ManifestTooLargeError,
    RegistryError,
    SizeMismatchError,
    TransportError,
    UnauthorizedError,
    UnexpectedHTTPStatusError,
    errors_from_response,
)
from .auth import Authorizer, ChallengeManager, parse_challenges
from .service import APIEndpoint
from .connection import AbortingAdapter
from .tls import TLSAdapter, quiet_insecure

__all__ = [
    "DEFAULT_TIMEOUT",
    "PING_TIMEOUT",
    "RateLimit",
    "RetryPolicy",
    "Transport",
    "describe_request_error",
    "handle_error_response",
    "read_capped",
    "redact_url",
    "user_agent",
]

PING_TIMEOUT = 15.0  # moby's ping client timeout
DEFAULT_TIMEOUT = (30.0, 300.0)  # (connect: moby's dial timeout, read: generous for slow registries)
MAX_REDIRECTS = 10  # moby's limit
_SAFE_QUERY_KEYS = frozenset({"digest", "n", "last", "mount", "from", "service", "scope", "artifactType"})
_REDIRECTS = (301, 302, 303, 307, 308)


def user_agent(extra: str | None = None) -> str:
    """The User-Agent sent to registries, with moby's ``UpstreamClient(…)`` suffix when ``extra`` is
    given."""
    ua = f"docker-distribution/{__version__} python-requests/{requests.__version__}"
    return f"{ua} UpstreamClient({extra})" if extra else ua


def redact_url(url: str) -> str:
    """The URL with userinfo removed and query values other than protocol parameters hidden."""
    u = urlsplit(url)
    netloc = u.netloc.rpartition("@")[2]
    query = "&".join(
        f"{k}={v if k in _SAFE_QUERY_KEYS else 'REDACTED'}" for k, v in parse_qsl(u.query, keep_blank_values=True)
    )
    return urlunsplit((u.scheme, netloc, u.path, query, ""))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How idempotent requests are retried. ``attempts`` counts the first try."""

    attempts: int = 3
    backoff: float = 0.5  # doubled after each failure
    max_backoff: float = 8.0
    max_retry_after: float = 60.0  # a longer Retry-After is not waited for
    statuses: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})
    #: (connect, read) seconds: a request that stalls longer fails, and is retried like any other
    timeout: tuple[float, float] = DEFAULT_TIMEOUT


NO_RETRY = RetryPolicy(attempts=1)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A registry's rate-limit headers as sent (``RateLimit-Limit`` and ``RateLimit-Remaining``,
    e.g. ``100;w=21600``); None when absent."""

    limit: str | None
    remaining: str | None


def handle_error_response(resp: requests.Response) -> DistributionError:
    """moby's ``HandleErrorResponse``: a typed error for a non-success response (the body is capped)."""
    status = resp.status_code
    if 400 <= status < 500:
        body = _read_capped(resp)
        errs = errors_from_response(status, resp.headers.get("Content-Type"), body)
        if status == 401:
            for ch in parse_challenges(_all_headers(resp, "WWW-Authenticate")):
                if ch.scheme != "bearer":
                    continue
                code = ch.params.get("error")
                cls = {"invalid_token": UnauthorizedError, "insufficient_scope": DeniedError}.get(code or "")
                if cls is not None:
                    errs.insert(0, cls(ch.params.get("error_description") or None, status=status, bare=False))
                    break
        first = errs[0]
        if isinstance(first, RegistryError):
            first.others = tuple(errs[1:])
        return first
    return UnexpectedHTTPStatusError(status, resp.reason or "")


def _discard_body(resp: requests.Response) -> None:
    """The body of a success the caller reads only the headers of (an upload's 202, a manifest
    PUT's 201): drained up to :data:`MAX_ERROR_BODY` so the connection can be used again, and
    never read further (a hostile server's endless body ends the connection instead)."""
    total = 0
    with contextlib.suppress(requests.RequestException, OSError):
        for chunk in resp.iter_content(64 * 1024):  # read to its end, it marks the body consumed
            total += len(chunk)
            if total > MAX_ERROR_BODY:
                break
    resp.close()  # a consumed body gives the connection back to the pool; any other closes it


def _read_capped(resp: requests.Response) -> bytes:
    try:
        if resp.raw is not None and not resp._content_consumed:  # type: ignore[attr-defined]
            return resp.raw.read(MAX_ERROR_BODY, decode_content=True) or b""
        return resp.content[:MAX_ERROR_BODY]
    except (requests.RequestException, OSError):
        return b""


def _all_headers(resp: requests.Response, name: str) -> list[str]:
    raw = getattr(resp.raw, "headers", None)
    if raw is not None and hasattr(raw, "getlist"):
        return list(raw.getlist(name))
    v = resp.headers.get(name)
    return [v] if v else []


class Transport:
    """Requests to one :class:`~docker_distribution.registry.service.APIEndpoint`."""

    def __init__(
        self,
        endpoint: APIEndpoint,
        *,
        meta_headers: Mapping[str, Iterable[str]] | None = None,
        user_agent_suffix: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: tuple[float, float] | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.endpoint = endpoint
        if session is None:
            session = requests.Session()
            session.mount("https://", TLSAdapter())  # one TLS context per trust setting, not per connection
            session.mount("http://", AbortingAdapter())  # an abandoned upload is not flushed after we gave up
        self.session = session
        self.session.trust_env = True  # proxies from the environment, as moby
        host = urlsplit(endpoint.url).hostname
        if endpoint.scheme == "https" and not endpoint.tls.verify and host:
            quiet_insecure(host)  # unverified on purpose, as the user declared it insecure
        self.headers: dict[str, str] = {"User-Agent": user_agent(user_agent_suffix)}
        for k, values in (meta_headers or {}).items():
            self.headers[k] = ", ".join(values)
        self.retry = retry or RetryPolicy()
        self.timeout = timeout or self.retry.timeout
        self.challenges = ChallengeManager()
        self.authorizer: Authorizer | None = None
        self._sleep = sleep
        self._rate_limit = RateLimit(None, None)
        self._lock = threading.Lock()

    @property
    def verify(self) -> bool | str:
        """The endpoint's TLS verification, as ``requests`` takes it."""
        return self.endpoint.tls.requests_verify

    @property
    def cert(self) -> tuple[str, str] | None:
        """The client certificate and key paths for the endpoint, if it has them (``certs.d``)."""
        return self.endpoint.tls.client_cert

    @property
    def rate_limit(self) -> RateLimit:
        """The registry's rate-limit headers, as last seen on this transport."""
        return self._rate_limit

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` (``/v2/…``) on this endpoint."""
        return f"{self.endpoint.url}{path}"

    def ping(self) -> requests.Response:
        """``GET /v2/`` without auth; any status is accepted; 401 challenges are remembered."""
        url = self.url("/v2/")
        try:
            resp = follow_redirects(self.session, "GET", url, headers=self.headers, timeout=PING_TIMEOUT,
                                    verify=self.verify, cert=self.cert)  # the body is not read
        except requests.RequestException as exc:
            raise TransportError("GET", redact_url(url), describe_request_error(exc, url)) from None
        resp.close()
        # redirected pings store their challenges under the final URL, as moby does
        self.challenges.add_response(resp.url, resp.status_code, _all_headers(resp, "WWW-Authenticate"))
        if resp.url != url:
            self.challenges.add_response(url, resp.status_code, _all_headers(resp, "WWW-Authenticate"))
        return resp

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        stream: bool = False,
        idempotent: bool | None = None,
        ok: Callable[[int], bool] = lambda s: 200 <= s < 400,
        timeout: tuple[float, float] | None = None,
        retry: RetryPolicy | None = None,
    ) -> requests.Response:
        """Send a request; return the response when ``ok(status)``, else raise the typed error.

        ``data`` that is not bytes (an iterator or file) is never re-sent, so such requests are
        not retried or redirected with a body. ``retry`` overrides the transport's policy (a
        caller that counts failures itself passes :data:`NO_RETRY`).
        """
        if idempotent is None:
            idempotent = method in ("GET", "HEAD", "DELETE", "PUT") and (data is None or isinstance(data, bytes))
        policy = (retry or self.retry) if idempotent else NO_RETRY
        delay = policy.backoff
        for attempt in range(1, policy.attempts + 1):
            last = attempt == policy.attempts
            try:
                resp = self._send(method, url, headers or {}, data, timeout or self.timeout)
            except TransportError:
                if last:
                    raise
                self._sleep(delay)
                delay = min(delay * 2, policy.max_backoff)
                continue
            self._record_rate_limit(resp)
            if ok(resp.status_code):
                if not stream:
                    _discard_body(resp)
                return resp
            if not last and resp.status_code in policy.statuses:
                wait = _retry_after(resp)
                if wait is None or wait <= policy.max_retry_after:
                    resp.close()
                    self._sleep(wait if wait is not None else delay)
                    delay = min(delay * 2, policy.max_backoff)
                    continue
            try:
                raise handle_error_response(resp)
            finally:
                resp.close()
        raise AssertionError("unreachable")  # pragma: no cover

    def fetch(self, url: str, *, limit: int, headers: Mapping[str, str] | None = None
              ) -> tuple[requests.Response, bytes]:
        """GET a small document whole, capped at ``limit`` bytes. A body that breaks off or
        disagrees with its ``Content-Length`` is fetched again within the retry policy."""
        delay = self.retry.backoff
        for attempt in range(1, self.retry.attempts + 1):
            resp = self.request("GET", url, headers=headers, stream=True)
            try:
                with resp:
                    return resp, read_capped(resp, limit)
            except (TransportError, SizeMismatchError):
                if attempt == self.retry.attempts:
                    raise
                self._sleep(delay)
                delay = min(delay * 2, self.retry.max_backoff)
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, method: str, url: str, headers: Mapping[str, str], data: Any,
              timeout: tuple[float, float]) -> requests.Response:
        hdrs = {**self.headers, **headers}
        for _ in range(MAX_REDIRECTS + 1):
            if self.authorizer is not None:
                try:
                    self.authorizer.modify(url, hdrs)
                except RegistryError as exc:
                    # moby surfaces token-server refusals wrapped in the request's url.Error
                    exc.request = f'{method.capitalize()} "{redact_url(url)}"'
                    exc.args = (str(exc),)
                    raise
            try:
                # always streamed: no body is ever read whole (see _discard_body and read_capped)
                resp = send_once(self.session, method, url, headers=hdrs, data=data, timeout=timeout,
                                 verify=self.verify, cert=self.cert)
            except requests.RequestException as exc:
                raise TransportError(method, redact_url(url), describe_request_error(exc, url)) from None
            hop = _next_hop(resp, url, method, data)
            if hop is None:
                return resp
            url, method, data = hop
            if data is not None and not isinstance(data, bytes):
                raise TransportError(method, redact_url(url), "redirect of a streamed request body")
            # only Accept, Accept-Encoding and Range follow a redirect (plus our own identity headers)
            hdrs = {**self.headers,
                    **{k: v for k, v in headers.items() if k.lower() in ("accept", "accept-encoding", "range")}}
        raise TransportError(method, redact_url(url), f"stopped after {MAX_REDIRECTS} redirects")

    def _record_rate_limit(self, resp: requests.Response) -> None:
        limit = resp.headers.get("RateLimit-Limit")
        remaining = resp.headers.get("RateLimit-Remaining")
        if limit is not None or remaining is not None:
            self._rate_limit = RateLimit(limit, remaining)


def _next_hop(resp: requests.Response, url: str, method: str, data: Any) -> tuple[str, str, Any] | None:
    """Where a redirect leads: its URL, and the method and body it is followed with (RFC 9110
    §15.4, as Go and requests do: a 303, or a 301/302 of a POST, becomes a body-less GET, a HEAD
    stays a HEAD); the redirect's own body is closed unread. None for any other answer."""
    if resp.status_code not in _REDIRECTS or "Location" not in resp.headers:
        return None
    resp.close()
    if resp.status_code == 303 or (resp.status_code in (301, 302) and method == "POST"):
        method, data = ("HEAD" if method == "HEAD" else "GET"), None
    return urljoin(url, resp.headers["Location"]), method, data


def send_once(session: requests.Session, method: str, url: str, *, timeout: tuple[float, float] | float,
              verify: bool | str, cert: tuple[str, str] | None, headers: Mapping[str, str] | None = None,
              params: Any = None, data: Any = None, auth: tuple[str, str] | None = None) -> requests.Response:
    """One request through ``session`` (its adapters, proxies, cookies and hooks), its body
    streamed, a redirect returned as it is. Not ``session.request(allow_redirects=False)``: that
    still reads a redirect's body whole (``Session.send`` prepares ``Response.next`` through
    ``resolve_redirects``, which consumes it), and a hostile server's endless 302 would fill memory."""
    prep = session.prepare_request(requests.Request(method, url, headers=dict(headers or {}), params=params,
                                                    data=data, auth=auth))
    env = session.merge_environment_settings(prep.url, {}, True, verify, cert)  # proxies, a CA bundle
    settings: dict[str, Any] = {"stream": True, "timeout": timeout, "verify": env["verify"], "cert": env["cert"],
                                "proxies": env["proxies"]}
    resp = session.get_adapter(prep.url or url).send(prep, **settings)
    extract_cookies_to_jar(session.cookies, prep, resp.raw)  # type: ignore[no-untyped-call]  # untyped in requests
    hooked = dispatch_hook("response", prep.hooks, resp, **settings)  # type: ignore[no-untyped-call]
    return hooked if isinstance(hooked, requests.Response) else resp


def follow_redirects(session: requests.Session, method: str, url: str, *, auth: tuple[str, str] | None = None,
                     params: Any = None, data: Any = None, timeout: tuple[float, float] | float,
                     verify: bool | str, cert: tuple[str, str] | None,
                     headers: Mapping[str, str] | None = None) -> requests.Response:
    """:func:`send_once`, following redirects (each one's body closed unread) up to
    :data:`MAX_REDIRECTS` (then ``requests.TooManyRedirects``). ``auth`` goes only to the first
    URL's scheme and host:port, ``params`` only to the first URL (a ``Location`` is complete)."""
    origin = urlsplit(url)[:2]
    for _ in range(MAX_REDIRECTS + 1):
        resp = send_once(session, method, url, headers=headers, params=params, data=data, timeout=timeout,
                         verify=verify, cert=cert, auth=auth if urlsplit(url)[:2] == origin else None)
        hop = _next_hop(resp, url, method, data)
        if hop is None:
            return resp
        (url, method, data), params = hop, None
    raise requests.TooManyRedirects(f"stopped after {MAX_REDIRECTS} redirects")


def read_capped(resp: requests.Response, limit: int) -> bytes:
    """A response body read whole, refused past ``limit`` bytes (``ManifestTooLargeError``) and
    checked against its ``Content-Length``."""
    length = resp.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > limit:
        raise ManifestTooLargeError(limit)
    chunks: list[bytes] = []
    total = 0
    try:
        for chunk in resp.iter_content(1 << 20):
            total += len(chunk)
            if total > limit:
                raise ManifestTooLargeError(limit)
            chunks.append(chunk)
    except requests.RequestException as exc:
        raise TransportError("GET", redact_url(resp.url), describe_request_error(exc, resp.url)) from None
    data = b"".join(chunks)
    if length and length.isdigit() and int(length) != len(data):
        raise SizeMismatchError(int(length), len(data))
    return data


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def describe_request_error(exc: requests.RequestException, url: str) -> str:
    """A short reason in Go's words (``dial tcp 127.0.0.1:9: connect: connection refused``) that
    never includes request headers or credentials."""
    text = str(exc.args[0]) if exc.args else type(exc).__name__
    u = urlsplit(url)
    host = u.hostname or ""
    address = f"[{host}]" if ":" in host else host
    address += f":{u.port or (443 if u.scheme == 'https' else 80)}"
    if isinstance(exc, requests.exceptions.SSLError):
        return "tls: " + ("certificate verify failed" if "CERTIFICATE_VERIFY_FAILED" in text else "handshake failed")
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"dial tcp {address}: i/o timeout"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "read: i/o timeout"
    if isinstance(exc, requests.exceptions.ConnectionError):
        if "Connection refused" in text:
            return f"dial tcp {address}: connect: connection refused"
        if "Name or service not known" in text or "NameResolutionError" in text or "No address associated" in text:
            return f"dial tcp: lookup {host}: no such host"
        if "reset" in text.lower():
            return "read: connection reset by peer"
        return "connection error: " + type(exc).__name__
    return type(exc).__name__


def with_query(url: str, **params: str) -> str:
    """Merge ``params`` into the query of ``url`` (for upload locations that carry state)."""
    u = urlsplit(url)
    q = parse_qsl(u.query, keep_blank_values=True) + list(params.items())
    return urlunsplit((u.scheme, u.netloc, u.path, urlencode(q), u.fragment))
