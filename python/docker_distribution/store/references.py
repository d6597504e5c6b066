"""The reference store: tags and digest references → image IDs (moby's ``refstore``).

One JSON document, ``repositories.json``, in moby's shape::

    {"Repositories": {"<familiar name>": {"<familiar reference>": "sha256:<image id>"}}}

Every operation takes an ``flock``, reads the document fresh and, when changing it, writes
it back atomically, so several threads and processes share one store safely.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..digest import Digest
from ..errors import (
    InvalidReferenceError,
    ReferenceConflictError,
    ReferenceNotFoundError,
)
from ..fsutil import atomic_write, file_lock, read_json, str_map
from ..reference import Reference, parse_normalized_named

__all__ = ["Association", "ReferenceStore"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Association:
    """One reference of the reference store and the image ID it points to."""

    ref: Reference
    id: Digest


class ReferenceStore:
    """Tags and digest references → image IDs, in one ``repositories.json`` (the daemon's format),
    changed under a file lock so that threads and processes can share it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = path.with_name(path.name + ".lock")

    def _read(self) -> dict[str, dict[str, str]]:
        """The tags; a file that is not ``{"Repositories": {name: {reference: image ID}}}`` is a
        :class:`CorruptStoreError` (and ``_change`` then writes nothing over it)."""
        try:
            doc = read_json(self.path, lambda d: isinstance(d, dict) and (
                d.get("Repositories") is None or isinstance(d["Repositories"], dict)
                and all(v is None or str_map(v) for v in d["Repositories"].values())))
        except FileNotFoundError:
            return {}
        return {str(k): dict(v or {}) for k, v in (doc.get("Repositories") or {}).items()}

    def _change(self, fn: Callable[[dict[str, dict[str, str]]], T]) -> T:
        with file_lock(self._lock):
            repos = self._read()
            result = fn(repos)
            repos = {k: v for k, v in repos.items() if v}
            atomic_write(self.path, json.dumps({"Repositories": repos}, indent=None, sort_keys=True).encode())
            return result

    @staticmethod
    def _key(ref: Reference) -> tuple[str, str]:
        # a digest takes precedence over a tag (moby stores no tag+digest combinations)
        ref = Reference(ref.domain, ref.path, None, ref.digest) if ref.digest is not None else ref.tag_name_only()
        return ref.familiar_name, ref.familiar

    def add_tag(self, ref: Reference, image_id: Digest, *, force: bool = False) -> None:
        """Tag ``ref`` (``:latest`` when it has no tag) → ``image_id``."""
        if ref.digest is not None:
            raise InvalidReferenceError("refusing to create a tag with a digest reference")
        self._add(ref, image_id, force)

    def add_digest(self, ref: Reference, image_id: Digest, *, force: bool = False) -> None:
        """Record the digest reference ``ref`` (``name@sha256:…``) → ``image_id``; a digest never moves
        to another image."""
        if ref.digest is None:
            raise InvalidReferenceError("digest reference required")
        self._add(ref, image_id, force)

    def _add(self, ref: Reference, image_id: Digest, force: bool) -> None:
        name, key = self._key(ref)
        if name == "sha256":
            raise InvalidReferenceError("refusing to create an ambiguous tag using digest algorithm as name")

        def change(repos: dict[str, dict[str, str]]) -> None:
            repo = repos.setdefault(name, {})
            old = repo.get(key)
            if old is not None and old != str(image_id):
                if "@" in key:
                    raise ReferenceConflictError(f"Cannot overwrite digest {ref.digest}")
                if not force:
                    raise ReferenceConflictError(
                        f"Conflict: Tag {key} is already set to image {old}, if you want to replace it, "
                        "please use the force option"
                    )
            repo[key] = str(image_id)

        self._change(change)

    def get(self, ref: Reference) -> Digest:
        """The image ID ``ref`` points to (a name alone means ``:latest``);
        :class:`ReferenceNotFoundError` if none."""
        name, key = self._key(ref)
        value = self._read().get(name, {}).get(key)
        if value is None:
            raise ReferenceNotFoundError()
        return Digest.parse(value)

    def delete(self, ref: Reference) -> bool:
        """Remove ``ref``; :class:`ReferenceNotFoundError` if it is not there."""
        name, key = self._key(ref)

        def change(repos: dict[str, dict[str, str]]) -> bool:
            if key not in repos.get(name, {}):
                raise ReferenceNotFoundError()
            del repos[name][key]
            return True

        return self._change(change)

    def references_by_name(self, ref: Reference) -> list[Association]:
        """Every reference of ``ref``'s repository, sorted by the full reference string."""
        repo = self._read().get(ref.familiar_name, {})
        out = [Association(parse_normalized_named(k), Digest.parse(v)) for k, v in repo.items()]
        return sorted(out, key=lambda a: str(a.ref))

    def references(self, image_id: Digest) -> list[Reference]:
        """Every reference to ``image_id``, sorted."""
        target = str(image_id)
        out = [parse_normalized_named(k) for repo in self._read().values() for k, v in repo.items() if v == target]
        return sorted(out, key=str)

    def all(self) -> dict[str, Any]:
        """The whole table: ``{repository: {reference: image ID}}``."""
        return self._read()
