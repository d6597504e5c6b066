"""The registry client: one method per Docker Registry HTTP API v2 / OCI distribution-spec verb.

:func:`connect` pings an endpoint and sets up its authorizer (moby's ``newRepository``,
moby distribution/registry.go, newRepository); :class:`Repository` then speaks the protocol for one repository. It never
decides policy (which endpoint, how often to retry a layer): that is orchestration's job.

Raw bytes are the truth: manifests keep the exact bytes received, and their digest is
computed over those bytes. A manifest fetched by digest is verified; one fetched by tag is
checked against ``Docker-Content-Digest`` when the registry sends it (beyond moby).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import urlencode, urljoin

import requests

from ..descriptor import Descriptor
from ..digest import Digest
from ..errors import (
    BlobUnknownError,
    BlobUploadUnknownError,
    DigestMismatchError,
    ManifestVerificationError,
    FallbackError,
    InvalidDigestError,
    ResponseFormatError,
    TransportError,
)
from ..mediatype import MANIFEST_ACCEPT
from ..reference import Reference
from .auth import (
    AuthConfig,
    Authorizer,
    BasicHandler,
    Handler,
    PassThruTokenHandler,
    TokenHandler,
    repository_scope,
)
from .service import APIEndpoint
from .transport import RetryPolicy, Transport, read_capped, with_query

__all__ = ["BlobUpload", "MAX_MANIFEST_SIZE", "RawManifest", "Repository", "catalog", "connect"]

#: distribution's own limit for a manifest body; a larger one is refused unread
MAX_MANIFEST_SIZE = 4 * 1024 * 1024
#: a config or other small blob read whole into memory
MAX_SMALL_BLOB = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class RawManifest:
    """A manifest as received: ``payload`` is the exact bytes, ``digest`` is computed over them."""

    media_type: str
    digest: Digest
    payload: bytes

    @property
    def descriptor(self) -> Descriptor:
        """The manifest's descriptor: its media type, digest and size."""
        return Descriptor(self.media_type, self.digest, len(self.payload))


def connect(
    ref: Reference,
    endpoint: APIEndpoint,
    *,
    auth_config: AuthConfig | None = None,
    actions: Iterable[str] = ("pull",),
    meta_headers: Mapping[str, Iterable[str]] | None = None,
    retry: RetryPolicy | None = None,
    session: requests.Session | None = None,
) -> Repository:
    """Ping ``endpoint`` and return a :class:`Repository` for ``ref``'s path (moby's ``newRepository``).

    Ping failures are :class:`~docker_distribution.errors.FallbackError` (``transport_ok`` False
    when there was no HTTP answer), so the caller may go on to the next endpoint.
    """
    auth = auth_config or AuthConfig()
    transport = Transport(endpoint, meta_headers=meta_headers, retry=retry, session=session)
    try:
        transport.ping()
    except TransportError as exc:
        raise FallbackError(exc, transport_ok=False) from exc
    handlers: list[Handler]
    if auth.registry_token:
        handlers = [PassThruTokenHandler(auth.registry_token)]
    else:
        token = TokenHandler(transport.session, auth, [repository_scope(ref.path, *actions)],
                             verify=transport.verify, cert=transport.cert, headers=transport.headers)
        handlers = [token, BasicHandler(auth)]
    transport.authorizer = Authorizer(transport.challenges, handlers)
    return Repository(ref.trim(), transport)


class Repository:
    """Protocol verbs for one repository at one endpoint."""

    def __init__(self, named: Reference, transport: Transport) -> None:
        self.named = named
        self.transport = transport

    @property
    def path(self) -> str:
        """The repository's path on its registry (``library/alpine``)."""
        return self.named.path

    @property
    def endpoint(self) -> APIEndpoint:
        """The registry endpoint this repository is reached through."""
        return self.transport.endpoint

    def _url(self, suffix: str) -> str:
        return self.transport.url(f"/v2/{self.path}/{suffix}")

    # --- manifests -------------------------------------------------------------------------

    def resolve(self, tag_or_digest: str, *, accept: Iterable[str] = MANIFEST_ACCEPT) -> Descriptor:
        """The descriptor a tag points at: HEAD, or a GET when HEAD lacks ``Docker-Content-Digest`` (docker/distribution registry/client/repository.go, tags.Get)."""
        headers = {"Accept": ", ".join(accept)}
        resp = self.transport.request("HEAD", self._url(f"manifests/{tag_or_digest}"), headers=headers,
                                      ok=lambda s: True)
        resp.close()
        if 200 <= resp.status_code < 400 and resp.headers.get("Docker-Content-Digest"):
            ctype = resp.headers.get("Content-Type")
            if not ctype:
                raise ResponseFormatError("missing or empty Content-Type header")
            length = resp.headers.get("Content-Length")
            if not length or not length.isdigit():
                raise ResponseFormatError("missing or empty Content-Length header")
            return Descriptor(ctype, _parse_digest_header(resp), int(length))
        return self.get_manifest(tag_or_digest, accept=accept).descriptor

    def get_manifest(self, tag_or_digest: str, *, accept: Iterable[str] = MANIFEST_ACCEPT,
                     max_size: int = MAX_MANIFEST_SIZE) -> RawManifest:
        """GET a manifest by tag or digest, read with a size cap, and verified (see module docs)."""
        url = self._url(f"manifests/{tag_or_digest}")
        resp, payload = self.transport.fetch(url, headers={"Accept": ", ".join(accept)}, limit=max_size)
        media_type = resp.headers.get("Content-Type", "")
        expected: Digest | None = None
        by_digest = ":" in tag_or_digest
        if by_digest:
            expected = Digest.parse(tag_or_digest)
        elif resp.headers.get("Docker-Content-Digest"):
            try:
                expected = _parse_digest_header(resp)
            except ResponseFormatError:
                expected = None  # an unparsable header is ignored, as moby does
        algorithm = expected.algorithm if expected else "sha256"
        actual = Digest.from_bytes(payload, algorithm)
        if expected is not None and actual != expected:
            raise (ManifestVerificationError if by_digest else DigestMismatchError)(str(expected), str(actual))
        return RawManifest(media_type, actual, payload)

    def manifest_exists(self, digest: Digest | str) -> bool:
        """HEAD the manifest ``digest``: True on a 2xx or 3xx answer, False on 404 (other answers raise
        their typed error)."""
        resp = self.transport.request("HEAD", self._url(f"manifests/{digest}"),
                                      headers={"Accept": ", ".join(MANIFEST_ACCEPT)},
                                      ok=lambda s: 200 <= s < 400 or s == 404)
        resp.close()
        return resp.status_code != 404

    def put_manifest(self, tag_or_digest: str, payload: bytes, media_type: str) -> Digest:
        """PUT the exact ``payload``; returns the digest the registry reports (which must parse)."""
        resp = self.transport.request("PUT", self._url(f"manifests/{tag_or_digest}"), data=payload,
                                      headers={"Content-Type": media_type})
        resp.close()
        return _parse_digest_header(resp)

    def delete_manifest(self, digest: Digest | str) -> None:
        """DELETE the manifest ``digest`` (the registry must allow deletes)."""
        self.transport.request("DELETE", self._url(f"manifests/{digest}")).close()

    # --- blobs -----------------------------------------------------------------------------

    def stat_blob(self, digest: Digest | str) -> Descriptor:
        """HEAD a blob: 404 ⇒ :class:`BlobUnknownError`; ``Content-Length`` is required."""
        url = self._url(f"blobs/{digest}")
        resp = self.transport.request("HEAD", url, ok=lambda s: 200 <= s < 400 or s == 404)
        resp.close()
        if resp.status_code == 404:
            raise BlobUnknownError("unknown blob", status=404, bare=False)
        length = resp.headers.get("Content-Length")
        if not length or not length.isdigit():
            raise ResponseFormatError(f"missing content-length header for request: {self.transport.endpoint.url}")
        return Descriptor(resp.headers.get("Content-Type", ""), _as_digest(digest), int(length))

    def open_blob(self, digest: Digest | str, *, offset: int = 0, length: int | None = None,
                  retry: RetryPolicy | None = None) -> requests.Response:
        """Start a streamed GET; with ``offset``/``length`` a Range request; ``retry`` overrides
        the transport's retry policy for it.

        The caller checks ``status_code``: 206 is a range answer (see :func:`parse_content_range`),
        200 means the server ignored the range and sends the whole blob. The blob is asked for as
        it is stored (``Accept-Encoding: identity``): its bytes are verified as they arrive, never
        decoded, so a proxy or CDN that gzips what a client accepts must not gzip them (Go's
        transport, which moby uses, undoes the gzip it asked for; requests asks for gzip too).
        """
        headers: dict[str, str] = {"Accept-Encoding": "identity"}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            headers["Range"] = f"bytes={offset}-{end}"
        resp = self.transport.request("GET", self._url(f"blobs/{digest}"), headers=headers, stream=True,
                                      ok=lambda s: 200 <= s < 400 or s == 404, retry=retry)
        if resp.status_code == 404:
            resp.close()
            raise BlobUnknownError("unknown blob", status=404, bare=False)
        return resp

    def get_blob(self, digest: Digest | str, *, max_size: int = MAX_SMALL_BLOB, retry: RetryPolicy | None = None) -> bytes:
        """A small blob (a config) read whole, with a cap, and verified against its digest."""
        d = _as_digest(digest)
        with self.open_blob(d, retry=retry) as resp:
            data = read_capped(resp, max_size)
        d.verify_bytes(data)
        return data

    # --- uploads ---------------------------------------------------------------------------

    def start_upload(self) -> BlobUpload:
        """POST ``blobs/uploads/``: a new upload session."""
        url = self._url("blobs/uploads/")
        return self._session(self.transport.request("POST", url, idempotent=False), url)

    def mount(self, digest: Digest, source: str) -> Descriptor | BlobUpload:
        """POST ``blobs/uploads/?mount=<digest>&from=<source>``: a cross-repository mount. The
        mounted blob's :class:`Descriptor` when the registry mounted it (201); otherwise it
        answers with an upload session (202), which is returned to use or cancel."""
        url = self._url(f"blobs/uploads/?{urlencode({'from': source, 'mount': str(digest)})}")
        resp = self.transport.request("POST", url, idempotent=False)
        if resp.status_code == 201:
            resp.close()
            return self.stat_blob(digest)
        return self._session(resp, url)

    def _session(self, resp: requests.Response, url: str) -> BlobUpload:
        resp.close()
        session = BlobUpload(self, _location(resp, url), resp.headers.get("Docker-Upload-UUID", ""))
        session._update(resp)  # the session's first answer may already ask for chunks (OCI-Chunk-Min-Length)
        return session

    def upload_monolithic(self, data: bytes, digest: Digest) -> Descriptor:
        """One POST, then one PUT with the whole body: for small blobs."""
        return self.start_upload().commit(digest, data=data)

    # --- listings --------------------------------------------------------------------------

    def tags(self, *, page_size: int | None = None) -> list[str]:
        """Every tag, following ``Link`` pagination; server order, as moby (no sorting, no dedup)."""
        url = self._url("tags/list") + (f"?n={page_size}" if page_size else "")
        out: list[str] = []
        for doc in _paginate(self.transport, url):
            out.extend(_listed(doc, "tags", str))
        return out

    def referrers(self, digest: Digest | str, *, artifact_type: str | None = None) -> dict[str, Any]:
        """The OCI referrers index for ``digest`` (distribution-spec 1.1)."""
        url = self._url(f"referrers/{digest}") + (f"?{urlencode({'artifactType': artifact_type})}" if artifact_type else "")
        manifests: list[Any] = []
        for doc in _paginate(self.transport, url):
            manifests.extend(_listed(doc, "manifests", dict))
        return {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}


class BlobUpload:
    """An upload session at ``location`` (it moves with every answer)."""

    def __init__(self, repo: Repository, location: str, uuid: str) -> None:
        self.repo = repo
        self.location = location
        self.uuid = uuid
        self.offset = 0
        #: ``OCI-Chunk-Min-Length`` when the registry asks for chunks of a minimum size
        self.chunk_min_length: int | None = None

    def status(self) -> int:
        """The registry's view of how many bytes it holds (``GET`` on the location), stored in ``offset``."""
        resp = self.repo.transport.request("GET", self.location, ok=lambda s: s in (204, 200) or s == 404)
        resp.close()
        if resp.status_code == 404:
            raise BlobUploadUnknownError(status=404)
        self._update(resp)
        return self.offset

    def write(self, body: Iterable[bytes] | BinaryIO | bytes) -> int:
        """One streamed PATCH of everything ``body`` yields (moby's single PATCH). Returns the new offset."""
        return self._patch(body, {})

    def write_chunk(self, data: bytes) -> int:
        """A PATCH with ``Content-Range`` at the current offset (chunked upload)."""
        return self._patch(data, {"Content-Range": f"{self.offset}-{self.offset + len(data) - 1}",
                                  "Content-Length": str(len(data))})

    def _patch(self, body: Iterable[bytes] | BinaryIO | bytes, headers: dict[str, str]) -> int:
        resp = self.repo.transport.request("PATCH", self.location, data=body, idempotent=False,
                                           headers={"Content-Type": "application/octet-stream", **headers},
                                           ok=lambda s: 200 <= s < 400 or s == 404)
        resp.close()
        if resp.status_code == 404:
            raise BlobUploadUnknownError(status=404)
        self._update(resp)
        return self.offset

    def commit(self, digest: Digest, *, data: bytes | None = None) -> Descriptor:
        """PUT ``?digest=`` (with a final chunk or the whole blob as ``data``), then HEAD the blob."""
        headers = {"Content-Type": "application/octet-stream"}
        if data is not None:
            headers["Content-Length"] = str(len(data))
        resp = self.repo.transport.request("PUT", with_query(self.location, digest=str(digest)), data=data,
                                           headers=headers, idempotent=data is None)
        resp.close()
        return self.repo.stat_blob(digest)

    def cancel(self) -> None:
        """DELETE the session; an already-gone session is fine."""
        resp = self.repo.transport.request("DELETE", self.location, ok=lambda s: 200 <= s < 400 or s == 404)
        resp.close()

    def _update(self, resp: requests.Response) -> None:
        if "Location" in resp.headers:
            self.location = urljoin(self.location, resp.headers["Location"])
        self.uuid = resp.headers.get("Docker-Upload-UUID", self.uuid)
        rng = resp.headers.get("Range")
        if rng:
            m = re.fullmatch(r"(?:bytes=)?(\d+)-(\d+)", rng.strip())
            if m is None or int(m.group(2)) < int(m.group(1)):
                raise ResponseFormatError(f"bad range format: {rng}")
            # distribution answers ``0-0`` for an empty session as well as for one byte: an empty
            # session is the case that happens (a cut before any byte arrived), so read it as 0
            start, end = int(m.group(1)), int(m.group(2))
            self.offset = 0 if start == end == 0 else end + 1
        min_len = resp.headers.get("OCI-Chunk-Min-Length")
        if min_len and min_len.isdigit():
            self.chunk_min_length = int(min_len)


def catalog(transport: Transport, *, page_size: int | None = None) -> list[str]:
    """``GET /v2/_catalog`` with ``Link`` pagination."""
    url = transport.url("/v2/_catalog") + (f"?n={page_size}" if page_size else "")
    out: list[str] = []
    for doc in _paginate(transport, url):
        out.extend(_listed(doc, "repositories", str))
    return out


def parse_content_range(value: str | None, offset: int, end: int | None = None) -> int | None:
    """Check a 206's ``Content-Range: bytes <start>-<last>/<size|*>`` starts at ``offset`` and
    runs to ``end`` (exclusive; None: to the end of the content); returns the size if known."""
    if not value:
        raise ResponseFormatError("no Content-Range header found in HTTP 206 response")
    m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", value.strip())
    if m is None:
        raise ResponseFormatError(f"could not parse Content-Range header: {value}")
    start, last, size = int(m.group(1)), int(m.group(2)), m.group(3)
    if start != offset:
        raise ResponseFormatError(f"received Content-Range starting at offset {start} instead of requested {offset}")
    if end is not None:
        if last + 1 != end:
            raise ResponseFormatError(f"range in Content-Range does not end where requested ({end}): {value}")
    elif size != "*" and last + 1 != int(size):
        raise ResponseFormatError(f"range in Content-Range stops before the end of the content: {value}")
    return None if size == "*" else int(size)


# --- helpers --------------------------------------------------------------------------------

#: a page of a listing is JSON and small; this caps what a hostile server can make us read
_MAX_PAGE = 8 * 1024 * 1024
#: all pages of one listing together: a registry that links to page after page without end is cut off here
MAX_LISTING = 256 * 1024 * 1024


def _paginate(transport: Transport, url: str) -> Iterator[dict[str, Any]]:
    seen: set[str] = set()
    total = 0
    while url and url not in seen:
        seen.add(url)
        resp, body = transport.fetch(url, limit=_MAX_PAGE)
        total += len(body)
        if total > MAX_LISTING:
            raise ResponseFormatError(f"listing larger than {MAX_LISTING} bytes: the registry's pages do not end")
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise ResponseFormatError(f"invalid JSON in listing: {exc}") from None
        if not isinstance(doc, dict):
            raise ResponseFormatError("listing is not a JSON object")
        yield doc
        link = resp.headers.get("Link")
        if not link:
            return
        target = link.split(";", 1)[0].strip().lstrip("<").rstrip(">")
        url = urljoin(url, target)


def _listed(doc: dict[str, Any], key: str, kind: type) -> list[Any]:
    """A listing page's ``key``: absent or null is empty; anything but a list of ``kind`` is refused
    (a string is not a list of its characters)."""
    items = doc.get(key)
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(i, kind) for i in items):
        raise ResponseFormatError(f"invalid {key} in listing")
    return items


def _parse_digest_header(resp: requests.Response) -> Digest:
    try:
        return Digest.parse(resp.headers.get("Docker-Content-Digest", ""))
    except InvalidDigestError:
        raise ResponseFormatError("invalid checksum digest format") from None


def _as_digest(d: Digest | str) -> Digest:
    return d if isinstance(d, Digest) else Digest.parse(d)


def _location(resp: requests.Response, url: str) -> str:
    loc = resp.headers.get("Location")
    if not loc:
        raise ResponseFormatError("upload response has no Location header")
    return urljoin(url, loc)
