"""docker-distribution: pull, push and store container images without a daemon.

The public API is what this module exports in ``__all__``; submodules are named for the
protocol concept they own (``digest``, ``errors``, …). ``_native`` is private.
"""

from __future__ import annotations

from . import errors
from ._native import __version__
from .digest import Digest, Digester, digest_bytes, verify_file
from .errors import (
    AIModelNotSupportedError,
    DeprecatedSchema1ImageError,
    DigestMismatchError,
    DistributionError,
    InvalidDigestError,
    InvalidReferenceError,
    RegistryError,
    SizeMismatchError,
    UnsupportedMediaTypeError,
)

__all__ = [
    "AIModelNotSupportedError",
    "DeprecatedSchema1ImageError",
    "Digest",
    "DigestMismatchError",
    "Digester",
    "DistributionError",
    "InvalidDigestError",
    "InvalidReferenceError",
    "RegistryError",
    "SizeMismatchError",
    "UnsupportedMediaTypeError",
    "__version__",
    "digest_bytes",
    "errors",
    "verify_file",
]
