"""The image store: image configs by ID (the digest of the config bytes), kept byte for byte.

Layout: ``<root>/<alg>/<hex>`` holds the exact config JSON received (raw bytes are the truth:
the ID is their digest, and a push sends them unchanged). Every read is verified against the
ID; a damaged file is replaced when the same config is stored again (a new pull of the image).
"""

from __future__ import annotations

import builtins
import contextlib
import json
from pathlib import Path

from ..digest import Digest
from ..errors import CorruptStoreError, DistributionError, ObjectNotFoundError, StoreError
from ..fsutil import atomic_write

__all__ = ["ImageStore", "rootfs_diff_ids"]


def rootfs_diff_ids(doc: object) -> builtins.list[Digest]:
    """A parsed config's ``rootfs.diff_ids``. A config that is not an object, has no ``rootfs``
    object, or has diff_ids that are not a list of digest strings fails, as Go's unmarshal into
    moby's struct does: ``DistributionError("invalid rootfs in image configuration")``."""
    rootfs = doc.get("rootfs") if isinstance(doc, dict) else None
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(rootfs, dict) or not isinstance(diff_ids or [], list) \
            or not all(isinstance(d, str) for d in diff_ids or ()):
        raise DistributionError("invalid rootfs in image configuration")
    return [Digest.parse(d) for d in diff_ids or ()]


class ImageStore:
    """Image configs by image ID (the sha256 of the config's bytes) under ``root``, as the daemon's
    image store keeps them; every read is verified."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, image_id: Digest) -> Path:
        return self.root / image_id.algorithm / image_id.encoded

    def put(self, config: bytes) -> Digest:
        """Store a config; returns the image ID. The config must be a JSON object with a valid
        ``rootfs`` (moby's image store refuses one without)."""
        try:
            doc = json.loads(config)
        except ValueError as exc:
            raise StoreError(f"invalid image configuration: {exc}") from None
        if not isinstance(doc, dict):
            raise StoreError("invalid image configuration: not a JSON object")
        rootfs_diff_ids(doc)
        image_id = Digest.from_bytes(config)
        try:
            self.get(image_id)
        except (ObjectNotFoundError, CorruptStoreError):  # absent, or damaged: these bytes verify
            atomic_write(self._path(image_id), config)
        return image_id

    def get(self, image_id: Digest | str) -> bytes:
        """The config's bytes, verified against the ID as moby's image store does on every read:
        a file that no longer hashes to its name is a :class:`CorruptStoreError`."""
        d = image_id if isinstance(image_id, Digest) else Digest.parse(image_id)
        path = self._path(d)
        try:
            config = path.read_bytes()
        except FileNotFoundError:
            raise ObjectNotFoundError(f"image {d}: not found") from None
        if Digest.from_bytes(config, d.algorithm) != d:
            raise CorruptStoreError(f"image {d}: failed to verify: {path} does not hash to its name")
        return config

    def exists(self, image_id: Digest) -> bool:
        """Whether the config is here and verifies (a damaged one counts as absent, so a pull of
        the image fetches and stores it again)."""
        try:
            self.get(image_id)
        except (ObjectNotFoundError, CorruptStoreError):
            return False
        return True

    def present(self, image_id: Digest) -> bool:
        """Whether a config file for ``image_id`` is here, verified or not (reading it says which)."""
        return self._path(image_id).is_file()

    def delete(self, image_id: Digest | str) -> None:
        """Remove the config ``image_id``; :class:`ObjectNotFoundError` if there is none."""
        d = image_id if isinstance(image_id, Digest) else Digest.parse(image_id)
        try:
            self._path(d).unlink()
        except FileNotFoundError:
            raise ObjectNotFoundError(f"image {d}: not found") from None

    def list(self) -> list[Digest]:
        """The IDs of every stored config, sorted."""
        out = []
        for alg in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for f in sorted(alg.iterdir()):
                with contextlib.suppress(ValueError):
                    if not f.name.startswith("."):
                        out.append(Digest(alg.name, f.name))
        return out

    def diff_ids(self, image_id: Digest) -> builtins.list[Digest]:
        """The config's ``rootfs.diff_ids``."""
        return rootfs_diff_ids(json.loads(self.get(image_id)))
