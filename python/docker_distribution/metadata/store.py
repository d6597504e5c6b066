"""moby's ``metadata.Store``: a namespaced key/value store, one file per key (moby distribution/metadata/)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol

from ..errors import ObjectNotFoundError
from ..fsutil import atomic_write

__all__ = ["FSMetadataStore", "MetadataStore"]


class MetadataStore(Protocol):
    """moby's ``metadata.Store``: bytes by (namespace, key)."""

    def get(self, namespace: str, key: str) -> bytes:
        """The value; :class:`ObjectNotFoundError` when there is none."""
        ...

    def set(self, namespace: str, key: str, value: bytes) -> None:
        """Store ``value``, replacing any earlier one whole."""
        ...

    def delete(self, namespace: str, key: str) -> None:
        """Remove the value; no error when there is none."""
        ...


class FSMetadataStore(MetadataStore):
    """``<base>/<namespace>/<key>``; writes are atomic. Keys may contain ``/`` (``sha256/<hex>``)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.RLock()

    def _path(self, namespace: str, key: str) -> Path:
        if ".." in namespace.split("/") or ".." in key.split("/"):
            raise ValueError(f"invalid metadata key {namespace}/{key}")
        return self.base / namespace / key

    def get(self, namespace: str, key: str) -> bytes:
        try:
            return self._path(namespace, key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFoundError(f"metadata {namespace}/{key}: not found") from None

    def set(self, namespace: str, key: str, value: bytes) -> None:
        """Write ``value`` atomically (a reader sees the old value or the new one, whole), without
        fsync."""
        with self._lock:
            atomic_write(self._path(namespace, key), value, durable=False)

    def delete(self, namespace: str, key: str) -> None:
        with self._lock:
            try:
                self._path(namespace, key).unlink()
            except FileNotFoundError:
                pass
