"""Distribution metadata: the key/value store (``store``) and the V2 metadata service (``v2``)."""

from .store import FSMetadataStore, MetadataStore
from .v2 import (
    V2Metadata,
    V2MetadataService,
    check_v2_metadata_hmac,
    compute_v2_metadata_hmac,
    compute_v2_metadata_hmac_key,
)

__all__ = [
    "FSMetadataStore",
    "MetadataStore",
    "V2Metadata",
    "V2MetadataService",
    "check_v2_metadata_hmac",
    "compute_v2_metadata_hmac",
    "compute_v2_metadata_hmac_key",
]
