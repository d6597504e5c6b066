"""Manifests and indexes, parsed from their raw bytes (which stay the truth).

:func:`parse_manifest` is moby's ``UnmarshalManifest`` (docker/distribution manifests.go, UnmarshalManifest): the Content-Type picks the
parser, its checks and messages are moby's, and anything unregistered is tried as schema1,
which is refused with :class:`~docker_distribution.errors.DeprecatedSchema1ImageError`.
:func:`detect_manifest_blob_media_type` is moby's detection for content found locally (§2.7.1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .descriptor import Descriptor
from .digest import Digest
from .errors import DeprecatedSchema1ImageError, DistributionError
from .mediatype import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_SCHEMA1_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
)

__all__ = ["ImageIndex", "ImageManifest", "InvalidManifestError", "Manifest", "Schema1Manifest",
           "detect_manifest_blob_media_type", "parse_manifest", "schema2_manifest_bytes"]


class InvalidManifestError(DistributionError):
    """A manifest whose bytes do not match its type (moby's decode errors)."""


@dataclass(frozen=True, slots=True)
class ImageManifest:
    """A Docker schema2 or OCI image manifest."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    raw: bytes
    digest: Digest
    artifact_type: str | None = None


@dataclass(frozen=True, slots=True)
class ImageIndex:
    """A Docker manifest list or OCI image index."""

    media_type: str
    manifests: tuple[Descriptor, ...]
    raw: bytes
    digest: Digest


@dataclass(frozen=True, slots=True)
class Schema1Manifest:
    """A Docker schema1 manifest, kept only to be refused with moby's deprecation message: its
    bytes as received and their digest."""

    raw: bytes
    digest: Digest


Manifest = ImageManifest | ImageIndex | Schema1Manifest


def _json(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise InvalidManifestError(f"error unmarshalling content: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidManifestError("error unmarshalling content: not a JSON object")
    return doc


def _descriptors(items: Any) -> tuple[Descriptor, ...]:
    if items is None:
        return ()
    if not isinstance(items, list):
        raise InvalidManifestError("invalid descriptor list")
    try:
        return tuple(Descriptor.from_json(i) for i in items)
    except (ValueError, AttributeError, TypeError) as exc:
        raise InvalidManifestError(f"invalid descriptor: {exc}") from None


def parse_manifest(content_type: str, body: bytes, digest: Digest | None = None) -> Manifest:
    """moby's ``distribution.UnmarshalManifest``: parse ``body`` by its ``content_type`` (a schema2 or
    OCI manifest, a manifest list or OCI index, else schema1), keeping the exact bytes and their
    digest (``digest``, or computed). A body that contradicts its type is an
    :class:`InvalidManifestError`, with moby's message."""
    mt = (content_type or "").split(";", 1)[0].strip()
    d = digest or Digest.from_bytes(body)
    if mt == DOCKER_MANIFEST or mt == OCI_MANIFEST:
        doc = _json(body)
        if mt == OCI_MANIFEST and "manifests" in doc:
            raise InvalidManifestError("ocimanifest: expected manifest but found index")
        body_mt = doc.get("mediaType", "")
        if mt == DOCKER_MANIFEST and body_mt != mt:
            raise InvalidManifestError(f"mediaType in manifest should be '{mt}' not '{body_mt}'")
        if mt == OCI_MANIFEST and body_mt and body_mt != mt:
            raise InvalidManifestError(f"if present, mediaType in manifest should be '{mt}' not '{body_mt}'")
        if not isinstance(doc.get("config"), dict):
            raise InvalidManifestError("manifest has no config descriptor")
        config = _descriptors([doc["config"]])[0]
        artifact_type = doc.get("artifactType")
        if artifact_type is not None and not isinstance(artifact_type, str):
            raise InvalidManifestError("error unmarshalling content: artifactType is not a string")
        return ImageManifest(mt, config, _descriptors(doc.get("layers")), body, d, artifact_type)
    if mt == DOCKER_MANIFEST_LIST or mt == OCI_INDEX:
        doc = _json(body)
        if mt == OCI_INDEX and ("config" in doc or "layers" in doc):
            raise InvalidManifestError("index: expected index but found manifest")
        body_mt = doc.get("mediaType", "")
        if mt == DOCKER_MANIFEST_LIST and body_mt != mt:
            raise InvalidManifestError(f"mediaType in manifest list should be '{mt}' not '{body_mt}'")
        if mt == OCI_INDEX and body_mt and body_mt != mt:
            raise InvalidManifestError(f"if present, mediaType in manifest should be '{mt}' not '{body_mt}'")
        return ImageIndex(mt, _descriptors(doc.get("manifests")), body, d)
    # everything else is tried as schema1 (moby's "" registration)
    doc = _json(body)
    if "signatures" not in doc:
        raise InvalidManifestError("missing signature key")
    return Schema1Manifest(body, d)


def detect_manifest_blob_media_type(dt: bytes) -> str:
    """moby's ``detectManifestBlobMediaType``: the media type of manifest bytes found locally."""
    doc = _json(dt)
    mt = doc.get("mediaType") or ""
    if not isinstance(mt, str):
        raise InvalidManifestError("error unmarshalling content: mediaType is not a string")

    def has(k: str) -> bool:
        return doc.get(k) is not None

    if mt in (DOCKER_MANIFEST, OCI_MANIFEST):
        if has("manifests") or has("fsLayers"):
            raise InvalidManifestError(f'media-type: "{mt}" should not have "manifests" or "fsLayers"')
        return mt
    if mt in (DOCKER_MANIFEST_LIST, OCI_INDEX):
        if has("config") or has("layers") or has("fsLayers"):
            raise InvalidManifestError(f'media-type: "{mt}" should not have "config", "layers", or "fsLayers"')
        return mt
    if mt == DOCKER_SCHEMA1_MANIFEST:
        raise DeprecatedSchema1ImageError(None)
    if mt:
        return mt
    if has("fsLayers") and not has("manifests") and not has("config") and not has("layers"):
        raise DeprecatedSchema1ImageError(None)
    if (has("config") or has("layers")) and not has("manifests") and not has("fsLayers"):
        return OCI_MANIFEST
    if not has("config") and not has("layers") and not has("fsLayers"):
        return OCI_INDEX
    raise InvalidManifestError("media-type: cannot determine")


#: what Go's encoding/json escapes in strings beyond Python's json: HTML's <, > and &, and the
#: JavaScript line terminators U+2028 and U+2029 (both only ever occur inside strings)
_GO_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029"))


def _schema2_descriptor(d: Descriptor) -> dict[str, Any]:
    """A descriptor as Go marshals moby's ``distribution.Descriptor``: every field omitempty (a
    size of 0 is left out), map keys sorted."""
    doc = d.to_json()
    for key in ("mediaType", "size"):
        if not doc[key]:
            del doc[key]
    if "annotations" in doc:
        doc["annotations"] = dict(sorted(doc["annotations"].items()))
    return doc


def schema2_manifest_bytes(config: Descriptor, layers: list[Descriptor], media_type: str = DOCKER_MANIFEST) -> bytes:
    """moby's serialisation: ``json.MarshalIndent(m, "", "   ")``, its key order, no trailing newline."""
    doc = {"schemaVersion": 2, "mediaType": media_type, "config": _schema2_descriptor(config),
           "layers": [_schema2_descriptor(layer) for layer in layers]}
    text = json.dumps(doc, indent=3, ensure_ascii=False)
    for char, escaped in _GO_ESCAPES:
        text = text.replace(char, escaped)
    return text.encode()
