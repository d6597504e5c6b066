"""docker-distribution: pull, push and store container images without a daemon.

The public API is what this module exports in ``__all__``; submodules are named for the
protocol concept they own (``digest``, ``errors``, …). ``_native`` is private.
"""

from __future__ import annotations

from . import errors
from ._native import __version__
from .config import Config, RegistryResolver
from .descriptor import Descriptor
from .digest import Digest, Digester, digest_bytes, verify_file
from .errors import (
    AIModelNotSupportedError,
    DeprecatedSchema1ImageError,
    DigestMismatchError,
    DistributionError,
    InvalidDigestError,
    InvalidReferenceError,
    ManifestVerificationError,
    RegistryError,
    SizeMismatchError,
    UnsupportedMediaTypeError,
    VerificationError,
)
from .platform import Platform, parse_platform
from .progress import JSONProgress, Progress, ProgressOutput, TerminalProgress
from .pull import ImagePullConfig, pull, pull_image
from .push import ImagePushConfig, push, push_image
from .reference import Reference, parse_docker_ref, parse_normalized_named
from .registry import AuthConfig, RegistryService, RetryPolicy, ServiceOptions
from .store import Store
from .tags import get_repositories, tags
from .xfer import LayerDownloadManager

__all__ = [
    "AIModelNotSupportedError",
    "AuthConfig",
    "Config",
    "Descriptor",
    "ImagePullConfig",
    "ImagePushConfig",
    "push",
    "push_image",
    "JSONProgress",
    "LayerDownloadManager",
    "Platform",
    "Progress",
    "ProgressOutput",
    "Store",
    "TerminalProgress",
    "parse_platform",
    "pull",
    "pull_image",
    "Reference",
    "RegistryResolver",
    "RegistryService",
    "RetryPolicy",
    "ServiceOptions",
    "get_repositories",
    "parse_docker_ref",
    "parse_normalized_named",
    "tags",
    "DeprecatedSchema1ImageError",
    "Digest",
    "DigestMismatchError",
    "Digester",
    "DistributionError",
    "InvalidDigestError",
    "InvalidReferenceError",
    "ManifestVerificationError",
    "RegistryError",
    "SizeMismatchError",
    "UnsupportedMediaTypeError",
    "VerificationError",
    "__version__",
    "digest_bytes",
    "errors",
    "verify_file",
]
