"""Content digests: the ``Digest`` value, a streaming ``Digester``, and file verification.

All hashing runs in the native core with the GIL released for inputs of 64 KiB and more,
so several threads hash in parallel. Accepted algorithms are sha256, sha384 and sha512,
with the exact lowercase-hex length each produces (OCI image-spec, "Digests").
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from . import _native
from .errors import check_count

__all__ = ["Digest", "Digester", "digest_bytes", "verify_file", "ALGORITHMS", "SHA256", "SHA384", "SHA512"]

SHA256 = "sha256"
SHA384 = "sha384"
SHA512 = "sha512"
#: every algorithm a digest may name (the image-spec's registered ones)
ALGORITHMS = (SHA256, SHA384, SHA512)

StrPath = str | os.PathLike[str]


@dataclass(frozen=True, slots=True)
class Digest:
    """A validated ``algorithm:encoded`` digest. ``str(d)`` is its canonical form."""

    algorithm: str
    encoded: str

    def __post_init__(self) -> None:
        _native.parse_digest(f"{self.algorithm}:{self.encoded}")

    @classmethod
    def parse(cls, value: str) -> Digest:
        """Parse ``value``; raises :class:`~docker_distribution.errors.InvalidDigestError`."""
        algorithm, encoded = _native.parse_digest(value)
        return cls(algorithm, encoded)

    @classmethod
    def from_bytes(cls, data: bytes, algorithm: str = SHA256) -> Digest:
        """The digest of ``data`` (hashed natively)."""
        return cls.parse(_native.digest_bytes(data, algorithm))

    @classmethod
    def from_file(cls, path: StrPath, algorithm: str = SHA256) -> tuple[Digest, int]:
        """Digest and size of a file, hashed natively without the GIL."""
        value, size = _native.digest_file(os.fspath(path), algorithm)
        return cls.parse(value), size

    @property
    def short_id(self) -> str:
        """The first 12 hex characters, as docker prints image and layer IDs."""
        return self.encoded[:12]

    def verify_bytes(self, data: bytes) -> None:
        """Raise :class:`~docker_distribution.errors.DigestMismatchError` unless ``data`` hashes to this digest."""
        actual = _native.digest_bytes(data, self.algorithm)
        if actual != str(self):
            from .errors import DigestMismatchError

            raise DigestMismatchError(str(self), actual)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"


class Digester:
    """Incremental hashing: ``update()`` any number of times, then ``digest()``."""

    __slots__ = ("_inner",)

    def __init__(self, algorithm: str = SHA256) -> None:
        self._inner = _native.Digester(algorithm)

    def update(self, data: bytes) -> None:
        """Hash ``data`` (in native code, the GIL released for large buffers)."""
        self._inner.update(data)

    @property
    def written(self) -> int:
        """Bytes hashed since creation or the last ``digest()``."""
        return self._inner.written

    def digest(self) -> Digest:
        """The digest of everything written so far; the digester starts afresh afterwards."""
        return Digest.parse(self._inner.finalize())

    def peek(self) -> Digest:
        """The digest so far, leaving the digester as it is."""
        return Digest.parse(self._inner.peek())


def digest_bytes(data: bytes, algorithm: str = SHA256) -> Digest:
    """The digest of a buffer (the GIL is released for large ones)."""
    return Digest.from_bytes(data, algorithm)


def verify_file(path: StrPath, digest: Digest | str, size: int | None = None) -> None:
    """Check a file's size (when given) and digest.

    Raises :class:`~docker_distribution.errors.SizeMismatchError`,
    :class:`~docker_distribution.errors.DigestMismatchError`, or ``OSError``; a negative ``size``
    is an :class:`~docker_distribution.errors.InvalidOptionError`.
    """
    _native.verify_file(os.fspath(path), str(digest), None if size is None else check_count(size, "size"))
