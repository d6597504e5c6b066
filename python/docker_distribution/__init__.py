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
    BlobUnknownError,
    DeniedError,
    DeprecatedSchema1ImageError,
    DigestMismatchError,
    DistributionError,
    InvalidDigestError,
    InvalidOptionError,
    InvalidReferenceError,
    LayerError,
    ManifestUnknownError,
    ManifestVerificationError,
    NameUnknownError,
    NoSuchImageError,
    NotFoundError,
    OperationCancelledError,
    RegistryError,
    SizeMismatchError,
    StoreError,
    TooManyRequestsError,
    TransportError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
    VerificationError,
)
from .platform import Platform, parse_platform
from .progress import JSONProgress, Progress, ProgressOutput, TerminalProgress
from .pull import ImagePullConfig, pull, pull_all_tags, pull_image
from .push import ImagePushConfig, push, push_image
from .reference import Reference, parse_docker_ref, parse_normalized_named
from .registry import AuthConfig, RegistryService, RetryPolicy, ServiceOptions
from .store import ContentStore, Store
from .store.adapters import (
    ImageConfigStore,
    PushLayer,
    PushLayerProvider,
    new_image_config_store_from_store,
    new_layer_providers_from_store,
)
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
    "ContentStore",
    "ImageConfigStore",
    "PushLayer",
    "PushLayerProvider",
    "new_image_config_store_from_store",
    "new_layer_providers_from_store",
    "TerminalProgress",
    "parse_platform",
    "pull",
    "pull_all_tags",
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
    "BlobUnknownError",
    "DeniedError",
    "DeprecatedSchema1ImageError",
    "Digest",
    "DigestMismatchError",
    "Digester",
    "DistributionError",
    "InvalidDigestError",
    "InvalidOptionError",
    "InvalidReferenceError",
    "LayerError",
    "ManifestUnknownError",
    "ManifestVerificationError",
    "NameUnknownError",
    "NoSuchImageError",
    "NotFoundError",
    "OperationCancelledError",
    "RegistryError",
    "SizeMismatchError",
    "StoreError",
    "TooManyRequestsError",
    "TransportError",
    "UnauthorizedError",
    "UnsupportedMediaTypeError",
    "VerificationError",
    "__version__",
    "digest_bytes",
    "errors",
    "verify_file",
]
