"""Content descriptors (OCI image-spec "Content Descriptors"): what a manifest says about a blob."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .digest import Digest

__all__ = ["Descriptor"]


@dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI content descriptor: what a manifest or index says of one blob or manifest, its media
    type, digest and size (and the optional URLs, annotations, platform and artifact type). The
    digest and size are what every fetch of the blob is verified against."""

    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Mapping[str, Any] | None = None
    artifact_type: str | None = None

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Descriptor:
        """Parse a descriptor object; raises ``InvalidDigestError`` or ``ValueError`` on a bad field.

        Types are checked as Go's ``json.Unmarshal`` checks them into moby's struct: a field of the
        wrong JSON type is an error, not something to coerce.
        """
        if not isinstance(doc, Mapping):
            raise ValueError(f"descriptor is not a JSON object: {_json_type(doc)}")
        size = doc.get("size", 0)
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size < 1 << 63:
            raise ValueError(f"invalid descriptor size {size!r}")
        platform = _typed(doc, "platform", dict)
        if platform is not None:
            for key in ("architecture", "os", "os.version", "variant"):
                _typed(platform, key, str)
            if not all(isinstance(f, str) for f in _typed(platform, "os.features", list) or ()):
                raise ValueError("descriptor platform os.features must be strings")
        urls = _typed(doc, "urls", list) or []
        annotations = _typed(doc, "annotations", dict) or {}
        if not all(isinstance(u, str) for u in urls):
            raise ValueError("descriptor urls must be strings")
        if not all(isinstance(v, str) for v in annotations.values()):
            raise ValueError("descriptor annotations must be strings")
        return cls(
            media_type=_typed(doc, "mediaType", str) or "",
            digest=Digest.parse(_typed(doc, "digest", str) or ""),
            size=size,
            urls=tuple(urls),
            annotations=annotations,
            platform=platform,
            artifact_type=_typed(doc, "artifactType", str),
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


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


def _typed(doc: Mapping[str, Any], key: str, kind: type) -> Any:
    """``doc[key]`` if it is absent, null or a ``kind``; else Go's unmarshal error, as a ValueError."""
    value = doc.get(key)
    if value is not None and not isinstance(value, kind):
        raise ValueError(f"cannot unmarshal {_json_type(value)} into descriptor field {key}")
    return value
