"""OCI image layouts (image-spec "Image Layout"): ``save`` images from the store, ``load`` them back.

``save`` writes ``oci-layout``, ``index.json`` and ``blobs/`` — the config as stored, each layer
rebuilt from its diff and gzip-compressed natively, an OCI manifest — into a directory, or a
``.tar`` of one. Each image is named in the index by ``org.opencontainers.image.ref.name`` (its
tag, as skopeo's ``oci:DIR:TAG`` and umoci expect) and ``io.containerd.image.name`` (the full
reference). ``load`` verifies every blob it reads, registers the layers, stores the configs, and
tags what carries a full reference; it returns the image IDs (the config digests).
"""

from __future__ import annotations

import json
import os
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..descriptor import Descriptor
from ..digest import Digest
from ..errors import DistributionError, InvalidLayoutError
from ..layer import produce_layer
from ..manifest import (
    ImageIndex,
    ImageManifest,
    InvalidManifestError,
    Schema1Manifest,
    detect_manifest_blob_media_type,
    parse_manifest,
)
from ..mediatype import OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST
from ..platform import default_platform, filter_manifests
from ..reference import Reference, parse_normalized_named

__all__ = ["load", "save"]

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"


def save(store: Any, refs: Sequence[Reference | str], path: os.PathLike[str] | str) -> None:
    """Write the images ``refs`` name into an OCI layout at ``path`` (a ``.tar`` file if it ends so).
    A string is read as ``Store.lookup`` reads it; an image given by ID gets no name in the index."""
    target = Path(path)
    if target.suffix == ".tar":
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            _save_dir(store, refs, Path(tmp) / "layout")
            # written beside the target and renamed: a failed or killed save leaves no partial .tar
            with tarfile.open(Path(tmp) / "layout.tar", "w") as t:
                for p in sorted((Path(tmp) / "layout").rglob("*")):
                    t.add(p, arcname=str(p.relative_to(Path(tmp) / "layout")), recursive=False)
            os.replace(Path(tmp) / "layout.tar", target)
        return
    _save_dir(store, refs, target)


def _blob(layout: Path, data: bytes) -> Descriptor:
    d = Digest.from_bytes(data)
    p = layout / "blobs" / d.algorithm / d.encoded
    p.parent.mkdir(parents=True, exist_ok=True)
    if not p.exists():
        p.write_bytes(data)
    return Descriptor("", d, len(data))


def _save_dir(store: Any, refs: Sequence[Reference | str], layout: Path) -> None:
    # every name resolves before anything is written: a missing image leaves no half layout
    images: list[tuple[Reference | None, Digest]] = [
        store.lookup(ref) if isinstance(ref, str) else (ref, store.resolve(ref if ref.digest else ref.tag_name_only()))
        for ref in refs]
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    entries = []
    for ref, image_id in images:
        config = store.images.get(image_id)
        _blob(layout, config)
        layers = []
        cid = store.image_chain_id(image_id)
        for info in (store.layers.chain(cid) if cid is not None else []):
            d = store.layers.layer_dir(info.chain_id)
            tmp = layout / "blobs" / "sha256" / ".layer.tmp"
            produced = produce_layer(tmp, source_diff=(d / "diff", d / "tar-split.zst"), compression="gzip")
            tmp.rename(layout / "blobs" / "sha256" / produced.digest.encoded)
            layers.append({"mediaType": OCI_LAYER_GZIP, "digest": str(produced.digest), "size": produced.size})
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": {"mediaType": OCI_CONFIG, "digest": str(image_id), "size": len(config)},
                               "layers": layers}, separators=(",", ":")).encode()
        m = _blob(layout, manifest)
        entry: dict[str, object] = {"mediaType": OCI_MANIFEST, "digest": str(m.digest), "size": m.size}
        if ref is not None:
            entry["annotations"] = {REF_NAME: ref.tag or "latest", CONTAINERD_NAME: str(ref.tag_name_only())}
        entries.append(entry)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}))


def load(store: Any, path: os.PathLike[str] | str) -> list[tuple[Digest, Reference | None]]:
    """Load an OCI layout directory or ``.tar``; returns (image ID, reference or None) per image.

    A layout that cannot be read (not a tar, an archive member that would land outside the
    directory or is a device, bad JSON, a missing blob) raises :class:`InvalidLayoutError`; a blob
    whose bytes do not match its digest raises :class:`~docker_distribution.errors.DigestMismatchError`.
    Nothing is tagged unless its image loaded whole.
    """
    source = Path(path)
    if source.is_file():
        with tempfile.TemporaryDirectory(dir=store.root) as tmp:
            try:
                with tarfile.open(source) as t:
                    t.extractall(tmp, filter="data")  # refuses traversal, absolute paths, links out, devices
            except (tarfile.TarError, OSError) as exc:
                raise InvalidLayoutError(f"{source}: cannot unpack the layout archive: {exc}") from None
            return _load_dir(store, Path(tmp))
    return _load_dir(store, source)


#: indexes nested deeper than this are refused, as a pull refuses them
MAX_INDEX_DEPTH = 4


def _read_blob(layout: Path, desc: Descriptor, limit: int = 16 << 20) -> bytes:
    p = _blob_path(layout, desc)
    if p.stat().st_size > limit:
        raise InvalidLayoutError(f"{desc.digest}: too large for a manifest or config")
    data = p.read_bytes()
    desc.digest.verify_bytes(data)
    return data


def _blob_path(layout: Path, desc: Descriptor) -> Path:
    p = layout / "blobs" / desc.digest.algorithm / desc.digest.encoded
    if not p.is_file():
        raise InvalidLayoutError(f"{layout}: blob {desc.digest} is missing")
    return p


def _parse(data: bytes, media_type: str, what: str) -> ImageManifest | ImageIndex:
    """The package's manifest parser (moby's checks and messages), its refusals as layout errors."""
    try:
        parsed = parse_manifest(media_type or detect_manifest_blob_media_type(data), data)
    except InvalidManifestError as exc:
        raise InvalidLayoutError(f"{what}: {exc}") from None
    if isinstance(parsed, Schema1Manifest):
        raise InvalidLayoutError(f"{what}: a schema1 manifest")
    return parsed


def _load_dir(store: Any, layout: Path) -> list[tuple[Digest, Reference | None]]:
    try:
        data = (layout / "index.json").read_bytes()
    except OSError as exc:
        raise InvalidLayoutError(f"{layout}: not an OCI image layout: {exc}") from None
    index = _parse(data, OCI_INDEX, f"{layout}/index.json")
    out: list[tuple[Digest, Reference | None]] = []
    for desc in index.manifests if isinstance(index, ImageIndex) else ():
        image_id = _load_manifest(store, layout, desc)
        name = desc.annotations.get(CONTAINERD_NAME) or desc.annotations.get(REF_NAME) or ""
        ref: Reference | None = None
        try:
            ref = parse_normalized_named(name) if "/" in name or ("." in name.split(":")[0]) else None
        except DistributionError:
            ref = None
        if ref is not None and ref.digest is None:
            store.references.add_tag(ref, image_id, force=True)
        out.append((image_id, ref))
    return out


def _load_manifest(store: Any, layout: Path, desc: Descriptor, depth: int = 0) -> Digest:
    m = _parse(_read_blob(layout, desc), desc.media_type, f"manifest {desc.digest}")
    if isinstance(m, ImageIndex):
        if depth >= MAX_INDEX_DEPTH:
            raise InvalidLayoutError(f"{layout}: indexes nested more than {MAX_INDEX_DEPTH} deep")
        matches = filter_manifests(m.manifests, default_platform())
        if not matches:
            raise DistributionError("no manifest in the layout's index matches this platform")
        return _load_manifest(store, layout, matches[0], depth + 1)
    config = _read_blob(layout, m.config)
    parent: Digest | None = None
    for ld in m.layers:
        layer = store.layers.register_file(_blob_path(layout, ld), parent, digest=ld.digest, size=ld.size)
        parent = layer.chain_id
        layer.release()
    image_id: Digest = store.images.put(config)
    if store.image_chain_id(image_id) != parent:
        raise DistributionError("layers from manifest don't match image configuration")
    return image_id
