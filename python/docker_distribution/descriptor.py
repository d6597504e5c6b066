"""Content descriptors (OCI image-spec "Content Descriptors"): what a manifest says about a blob."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .digest import Digest

__all__ = ["Descriptor"]


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Mapping[str, Any] | None = None
    artifact_type: str | None = None

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Descriptor:
        """Parse a descriptor object; raises ``InvalidDigestError`` or ``ValueError`` on bad fields."""
        size = doc.get("size", 0)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError(f"invalid descriptor size {size!r}")
        return cls(
            media_type=str(doc.get("mediaType", "")),
            digest=Digest.parse(str(doc.get("digest", ""))),
            size=size,
            urls=tuple(str(u) for u in doc.get("urls") or ()),
            annotations=dict(doc.get("annotations") or {}),
            platform=doc.get("platform"),
            artifact_type=doc.get("artifactType"),
        )

    def to_json(self) -> dict[str, Any]:
        """moby's key order: mediaType, size, digest, then the optional fields when set."""
        out: dict[str, Any] = {"mediaType": self.media_type, "size": self.size, "digest": str(self.digest)}
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            out["platform"] = dict(self.platform)
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out
