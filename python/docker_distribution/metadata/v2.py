"""moby's ``V2MetadataService``: which blob digests (in which repositories) a diffID is known as.

Two namespaces of the metadata store, exactly as moby (moby distribution/metadata/v2_metadata_service.go):

* ``v2metadata-by-diffid/<alg>/<hex>``: a JSON list of ``{"Digest", "SourceRepository", "HMAC"}``,
  oldest first, at most 50 (the oldest are dropped; re-adding an entry moves it to the end);
* ``diffid-by-digest/<alg>/<hex>``: the diffID string.

Beyond moby, a third: ``compression-by-digest/<alg>/<hex>`` names a blob's codec when it is not
gzip (moby knows only gzip), so a zstd push never mounts or reuses a gzip blob, nor the reverse.

Pull records entries without HMAC; push tags them with an HMAC of the credentials used, so
mounts are tried first from repositories the same credentials could read.

Every record is a cache: a damaged one reads as a :class:`CorruptStoreError` (which pull and
push take as "unknown") and the next ``add`` writes a good one over it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..digest import Digest
from ..errors import CorruptStoreError, DistributionError, ObjectNotFoundError, StoreError

if TYPE_CHECKING:
    from ..registry.auth import AuthConfig
    from .store import MetadataStore

__all__ = [
    "MAX_METADATA",
    "V2Metadata",
    "V2MetadataService",
    "check_v2_metadata_hmac",
    "compute_v2_metadata_hmac",
    "compute_v2_metadata_hmac_key",
]

MAX_METADATA = 50  # moby's maxMetadata
_BY_DIFFID = "v2metadata-by-diffid"
_BY_DIGEST = "diffid-by-digest"
_COMPRESSION = "compression-by-digest"


@dataclass(frozen=True, slots=True)
class V2Metadata:
    """moby's ``V2Metadata``: a blob (by digest) known to hold some diffID, the repository it was
    seen in, and the HMAC of the credentials it was seen with (empty for anonymous access)."""

    digest: Digest
    source_repository: str = ""
    hmac: str = ""

    def to_json(self) -> dict[str, str]:
        """The entry as moby writes it (keys ``Digest``, ``SourceRepository``, ``HMAC``)."""
        return {"Digest": str(self.digest), "SourceRepository": self.source_repository, "HMAC": self.hmac}

    @classmethod
    def from_json(cls, doc: object) -> V2Metadata:
        """One entry as moby writes it; an entry that is not an object of strings is a
        ValueError, a bad digest an InvalidDigestError."""
        if not isinstance(doc, dict) or not all(isinstance(doc.get(k, ""), str) for k in ("Digest", "SourceRepository", "HMAC")):
            raise ValueError("not a V2 metadata entry")
        return cls(Digest.parse(doc.get("Digest", "")), doc.get("SourceRepository", ""), doc.get("HMAC", ""))


def compute_v2_metadata_hmac_key(auth_config: AuthConfig | None) -> bytes | None:
    """moby's key: the bytes of ``"sha256:" + hex(sha256(json of the credentials))``; None for no config."""
    if auth_config is None:
        return None
    return ("sha256:" + hashlib.sha256(auth_config.hmac_key_input()).hexdigest()).encode()


def compute_v2_metadata_hmac(key: bytes | None, meta: V2Metadata | None) -> str:
    """moby's ``ComputeV2MetadataHMAC``: hex HMAC-SHA256 of the digest and source repository under
    ``key`` (empty without a key or entry)."""
    if not key or meta is None:
        return ""
    return hmac.new(key, (str(meta.digest) + meta.source_repository).encode(), hashlib.sha256).hexdigest()


def check_v2_metadata_hmac(meta: V2Metadata, key: bytes | None) -> bool:
    """moby's ``CheckV2MetadataHMAC``: True when the entry was tagged with ``key`` (or when neither has
    one); compared in constant time."""
    if not meta.hmac or not key:
        return not meta.hmac and not key
    try:
        expected = bytes.fromhex(meta.hmac)
    except ValueError:
        return False
    actual = hmac.new(key, (str(meta.digest) + meta.source_repository).encode(), hashlib.sha256).digest()
    return hmac.compare_digest(expected, actual)


def _key(d: Digest) -> str:
    return f"{d.algorithm}/{d.encoded}"


class V2MetadataService:
    """A ``store`` of None gives moby's no-op service: adds do nothing, lookups fail."""

    def __init__(self, store: MetadataStore | None) -> None:
        self.store = store
        self._lock = threading.Lock()

    def _require(self) -> MetadataStore:
        if self.store is None:
            raise StoreError("no metadata storage")
        return self.store

    def get_metadata(self, diff_id: Digest) -> list[V2Metadata]:
        """The blobs known to hold ``diff_id``; a damaged record is a :class:`CorruptStoreError`."""
        store = self._require()
        raw = store.get(_BY_DIFFID, _key(diff_id))
        try:
            docs = json.loads(raw)
            if not isinstance(docs, list):
                raise ValueError("not a list of V2 metadata")
            return [V2Metadata.from_json(d) for d in docs]
        except (ValueError, DistributionError) as exc:
            raise CorruptStoreError(f"corrupt V2 metadata for {diff_id}: {exc}") from None

    def get_diff_id(self, digest: Digest) -> Digest:
        """The diffID of the layer whose blob is ``digest``; :class:`ObjectNotFoundError` when unknown."""
        store = self._require()
        raw = store.get(_BY_DIGEST, _key(digest))
        try:
            return Digest.parse(raw.decode())
        except (ValueError, DistributionError) as exc:
            raise CorruptStoreError(f"corrupt V2 metadata for {digest}: {exc}") from None

    def _current(self, diff_id: Digest) -> list[V2Metadata]:
        """For a change: a record that is absent or damaged (a cache, rebuilt as pulls and pushes go) is empty."""
        try:
            return self.get_metadata(diff_id)
        except (ObjectNotFoundError, CorruptStoreError):
            return []

    def add(self, diff_id: Digest, meta: V2Metadata) -> None:
        """Record that the layer ``diff_id`` is the blob ``meta.digest`` in ``meta.source_repository``
        (newest last; the oldest entries beyond moby's limit drop off)."""
        if self.store is None:
            return
        with self._lock:
            current = [m for m in self._current(diff_id) if m != meta] + [meta]
            current = current[-MAX_METADATA:]
            self.store.set(_BY_DIFFID, _key(diff_id), json.dumps([m.to_json() for m in current]).encode())
            self.store.set(_BY_DIGEST, _key(meta.digest), str(diff_id).encode())

    def set_compression(self, digest: Digest, codec: str) -> None:
        """Record that the blob ``digest`` is compressed with ``codec`` ("gzip" or "zstd"); gzip,
        the default, is not written (a digest names its bytes, so its codec never changes)."""
        if self.store is not None and codec != "gzip":
            self.store.set(_COMPRESSION, _key(digest), codec.encode())

    def compression(self, digest: Digest) -> str:
        """The blob's codec as recorded; "gzip" (moby's only one) when nothing is."""
        if self.store is None:
            return "gzip"
        try:
            raw = self.store.get(_COMPRESSION, _key(digest))
        except ObjectNotFoundError:
            return "gzip"
        if raw not in (b"gzip", b"zstd"):
            raise CorruptStoreError(f"corrupt V2 metadata: compression of {digest} recorded as {raw[:16]!r}")
        return raw.decode()

    def tag_and_add(self, diff_id: Digest, hmac_key: bytes | None, meta: V2Metadata) -> None:
        """``add`` with the entry's HMAC computed under ``hmac_key`` (the credentials it was seen
        with)."""
        self.add(diff_id, V2Metadata(meta.digest, meta.source_repository, compute_v2_metadata_hmac(hmac_key, meta)))

    def remove(self, meta: V2Metadata) -> None:
        """Forget the entry (as moby does when a mount or existence check finds it stale)."""
        if self.store is None:
            return
        with self._lock:
            try:
                diff_id = self.get_diff_id(meta.digest)
            except CorruptStoreError:
                self.store.delete(_BY_DIGEST, _key(meta.digest))
                return
            except ObjectNotFoundError:
                return
            kept = [m for m in self._current(diff_id) if m != meta]
            if kept:
                self.store.set(_BY_DIFFID, _key(diff_id), json.dumps([m.to_json() for m in kept]).encode())
            else:
                self.store.delete(_BY_DIFFID, _key(diff_id))
            self.store.delete(_BY_DIGEST, _key(meta.digest))
