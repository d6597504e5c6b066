"""The registry protocol: endpoints and mirrors (``service``), credentials and tokens (``auth``),
HTTP (``transport``) and the protocol verbs (``client``)."""

from .auth import AuthConfig, DockerConfigFile
from .client import BlobUpload, RawManifest, Repository, catalog, connect
from .service import (
    APIEndpoint,
    RegistryService,
    ServiceOptions,
    validate_index_name,
    validate_mirror,
)
from .transport import RetryPolicy, Transport

__all__ = [
    "APIEndpoint",
    "AuthConfig",
    "BlobUpload",
    "DockerConfigFile",
    "RawManifest",
    "RegistryService",
    "Repository",
    "RetryPolicy",
    "ServiceOptions",
    "Transport",
    "catalog",
    "connect",
    "validate_index_name",
    "validate_mirror",
]
