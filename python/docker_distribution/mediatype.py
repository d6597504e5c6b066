"""Media types of the Docker and OCI image formats, and the sets moby accepts (moby distribution/pull_v2.go, validateMediaType)."""

from __future__ import annotations

# Docker schema 2
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_PLUGIN_CONFIG = "application/vnd.docker.plugin.v1+json"
# Docker schema 1 (deprecated: only detected, to refuse it with moby's message)
DOCKER_SCHEMA1_MANIFEST = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED_MANIFEST = "application/vnd.docker.distribution.manifest.v1+prettyjws"

# OCI image-spec
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

#: What a manifest GET/HEAD asks for (moby sends one Accept header per registered type).
MANIFEST_ACCEPT = (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_SCHEMA1_SIGNED_MANIFEST,
    "application/json",
)

INDEX_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
MANIFEST_TYPES = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})

#: ``defaultImageTypes``: config media types a top-level schema2 pull accepts (D/registry.go).
DEFAULT_IMAGE_TYPES = (DOCKER_CONFIG, OCI_CONFIG, "application/octet-stream", "application/json", "text/html", "")
#: ``supportedMediaTypes``: prefixes a config or layer media type may have (D/registry.go).
SUPPORTED_MEDIA_TYPE_PREFIXES = ("application/vnd.oci.image", "application/vnd.docker", "application/octet-stream",
                                 "application/json", "text/html", "")
AI_MODEL_PREFIX = "application/vnd.docker.ai."
