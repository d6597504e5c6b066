"""Image archives: ``save`` images from the store, ``load`` them back.

``save`` writes an OCI image layout (image-spec "Image Layout": ``oci-layout``, ``index.json``,
``blobs/``) — the config as stored, each layer rebuilt from its diff and gzip-compressed natively,
an OCI manifest — plus docker's ``manifest.json`` over the same blobs, as ``docker save`` has
written since 25.0, so both ``docker load`` (any version) and OCI tools read it; into a directory,
or a ``.tar`` of one. Each image is named in the index by ``org.opencontainers.image.ref.name``
(its tag, as skopeo's ``oci:DIR:TAG`` and umoci expect) and ``io.containerd.image.name`` (the full
reference), and in ``manifest.json`` by ``RepoTags`` (familiar names, as docker writes them).

``load`` reads an OCI layout (``index.json``) or, without one, a ``docker save`` archive
(``manifest.json``, as docker before 25.0 writes it: ``<id>/layer.tar`` files, uncompressed or
not), following moby's ``tarexport.Load``: the layer count must match the config's diffIDs, each
layer's diffID must be the config's (checked before the layer is published), and a layer already
in the store is not read again. It verifies every blob it reads, stores the configs, tags what
carries a reference, and returns the image IDs (the config digests).
"""

from __future__ import annotations

import errno
import json
import os
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from ..descriptor import Descriptor
from ..digest import Digest
from ..errors import DistributionError, InvalidLayoutError
from ..fsutil import tmp_dir
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
from .images import rootfs_diff_ids
from .layers import chain_id

__all__ = ["load", "save"]

REF_NAME = "org.opencontainers.image.ref.name"
#: docker's own index of a saved archive (``docker save``, ``docker load``)
DOCKER_MANIFEST = "manifest.json"
#: the largest manifest or config ``load`` reads
_MAX_CONFIG = 16 << 20
CONTAINERD_NAME = "io.containerd.image.name"


def save(store: Any, refs: Sequence[Reference | Digest | str], path: os.PathLike[str] | str | BinaryIO) -> None:
    """Write the images ``refs`` name into an OCI layout at ``path`` (a ``.tar`` file if it ends so;
    a writable binary file object gets the ``.tar`` streamed into it, as ``docker save`` to stdout).
    A string is read as ``Store.lookup`` reads it; an image given by ID gets no name in the index."""
    if not isinstance(path, (str, os.PathLike)):
        with tmp_dir(store.root, "save-") as tmp:
            _save_dir(store, refs, tmp / "layout")
            with tarfile.open(fileobj=path, mode="w|") as t:
                _add_tree(t, tmp / "layout")
        return
    target = Path(path)
    if target.suffix == ".tar":
        with tmp_dir(target.parent, "save-") as tmp:
            _save_dir(store, refs, tmp / "layout")
            # written beside the target and renamed: a failed or killed save leaves no partial .tar
            with tarfile.open(tmp / "layout.tar", "w") as t:
                _add_tree(t, tmp / "layout")
            os.replace(tmp / "layout.tar", target)
        return
    _save_dir(store, refs, target)


def _add_tree(t: tarfile.TarFile, root: Path) -> None:
    for p in sorted(root.rglob("*")):
        t.add(p, arcname=str(p.relative_to(root)), recursive=False)


def _blob_path(layout: Path, d: Digest) -> Path:
    """Where the image-spec puts blob ``d`` in a layout: ``blobs/<algorithm>/<encoded>``."""
    return layout / _blob_name(d)


def _blob(layout: Path, data: bytes) -> Descriptor:
    d = Digest.from_bytes(data)
    p = _blob_path(layout, d)
    p.parent.mkdir(parents=True, exist_ok=True)
    if not p.exists():
        p.write_bytes(data)
    return Descriptor("", d, len(data))


def _saved_as(store: Any, ref: Reference | Digest | str) -> tuple[Reference | None, Digest]:
    """The name an image is saved under (None for one given by ID) and its image ID."""
    if isinstance(ref, str):
        return store.lookup(ref)  # type: ignore[no-any-return]
    if isinstance(ref, Digest):
        return None, store.resolve(ref)
    return ref, store.resolve(ref if ref.digest else ref.tag_name_only())


def _save_dir(store: Any, refs: Sequence[Reference | Digest | str], layout: Path) -> None:
    # every name resolves before anything is written: a missing image leaves no half layout
    images: list[tuple[Reference | None, Digest]] = [_saved_as(store, ref) for ref in refs]
    layout.mkdir(parents=True, exist_ok=True)
    entries = []
    saved: dict[Digest, dict[str, Any]] = {}  # image ID → its manifest's descriptor
    archive: dict[Digest, dict[str, Any]] = {}  # image ID → its item of docker's manifest.json
    for ref, image_id in images:
        if image_id not in saved:
            saved[image_id], archive[image_id] = _save_image(store, layout, image_id)
        entry = dict(saved[image_id])
        if ref is not None:
            entry["annotations"] = {REF_NAME: ref.tag or "latest", CONTAINERD_NAME: str(ref.tag_name_only())}
            tags = archive[image_id]["RepoTags"]
            if ref.digest is None and ref.tag_name_only().familiar not in tags:  # docker: tagged names only
                tags.append(ref.tag_name_only().familiar)
        entries.append(entry)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}))
    # docker writes null for an image saved without a name
    (layout / DOCKER_MANIFEST).write_text(json.dumps([dict(i, RepoTags=i["RepoTags"] or None) for i in archive.values()]))


def _save_image(store: Any, layout: Path, image_id: Digest) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write one image's blobs; returns its manifest's descriptor and its docker ``manifest.json`` item."""
    config = store.images.get(image_id)
    _blob(layout, config)
    layers = []
    cid = store.image_chain_id(image_id)
    for info in (store.layers.chain(cid) if cid is not None else []):
        d = store.layers.layer_dir(info.chain_id)
        tmp = layout / "blobs" / ".layer.tmp"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        produced = produce_layer(tmp, source_diff=(d / "diff", d / "tar-split.zst"), compression="gzip")
        dest = _blob_path(layout, produced.digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(dest)
        layers.append({"mediaType": OCI_LAYER_GZIP, "digest": str(produced.digest), "size": produced.size})
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": str(image_id), "size": len(config)},
                           "layers": layers}, separators=(",", ":")).encode()
    m = _blob(layout, manifest)
    item = {"Config": _blob_name(image_id), "RepoTags": [],
            "Layers": [_blob_name(Digest.parse(str(layer["digest"]))) for layer in layers]}
    return {"mediaType": OCI_MANIFEST, "digest": str(m.digest), "size": m.size}, item


def _blob_name(d: Digest) -> str:
    return f"blobs/{d.algorithm}/{d.encoded}"


def load(store: Any, path: os.PathLike[str] | str | BinaryIO) -> list[tuple[Digest, Reference | None]]:
    """Load an OCI layout or, without ``index.json``, a ``docker save`` archive (a directory, a
    ``.tar``, or a readable binary file object streaming one, as ``docker load`` from stdin; a
    gzip, bzip2 or xz compressed archive too); returns (image ID, reference or None) per image
    (per tag, for a docker archive).

    A layout that cannot be read (not a tar, an archive member that would land outside the
    directory or is a device, bad JSON, a missing blob or file, a layer whose diffID is not the
    config's, moby's ``invalid tag``) raises :class:`InvalidLayoutError`; a blob
    whose bytes do not match its digest raises :class:`~docker_distribution.errors.DigestMismatchError`.
    Nothing is tagged unless its image loaded whole.
    """
    if isinstance(path, (str, os.PathLike)):
        source = Path(path)
        if not source.exists():  # said as the filesystem says it, before anything is tried
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(source))
        if not source.is_file():
            return _load_dir(store, source, source)
        return _load_archive(store, lambda: tarfile.open(source), source)
    stream = path
    return _load_archive(store, lambda: tarfile.open(fileobj=stream, mode="r|*"), Path("<stream>"))


def _load_archive(store: Any, opener: Callable[[], tarfile.TarFile], source: Path) -> list[tuple[Digest, Reference | None]]:
    with tmp_dir(store.root, "load-") as tmp:  # a killed load leaves a leftover prune removes
        try:
            with opener() as t:
                t.extractall(tmp, filter="data")  # refuses traversal, absolute paths, links out, devices
        except (tarfile.TarError, OSError) as exc:
            raise InvalidLayoutError(f"{source}: cannot unpack the layout archive: {exc}") from None
        return _load_dir(store, tmp, source)


#: indexes nested deeper than this are refused, as a pull refuses them
MAX_INDEX_DEPTH = 4


def _read_blob(layout: Path, desc: Descriptor) -> bytes:
    data = _read_small(_existing_blob(layout, desc), str(desc.digest))
    desc.digest.verify_bytes(data)
    return data


def _read_small(path: Path, what: str) -> bytes:
    """One of the archive's JSON documents (an index, a manifest, a config), refused above the cap."""
    if path.stat().st_size > _MAX_CONFIG:
        raise InvalidLayoutError(f"{what}: too large for an index, a manifest or a config")
    return path.read_bytes()


def _existing_blob(layout: Path, desc: Descriptor) -> Path:
    p = _blob_path(layout, desc.digest)
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


def _load_dir(store: Any, layout: Path, source: Path) -> list[tuple[Digest, Reference | None]]:
    if (layout / "index.json").is_file() or not (layout / DOCKER_MANIFEST).is_file():
        return _load_oci(store, layout, source)
    return _load_docker(store, layout, source)


def _load_oci(store: Any, layout: Path, source: Path) -> list[tuple[Digest, Reference | None]]:
    try:
        data = _read_small(layout / "index.json", f"{source}: index.json")
    except OSError as exc:
        raise InvalidLayoutError(f"{source}: neither an OCI image layout (index.json) nor a docker save "
                                 f"archive ({DOCKER_MANIFEST}): {exc.strerror}") from None
    index = _parse(data, OCI_INDEX, f"{source}: index.json")
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
    return _load_image(store, _read_blob(layout, m.config), [(_existing_blob(layout, ld), ld) for ld in m.layers],
                       f"manifest {desc.digest}")


def _load_docker(store: Any, layout: Path, source: Path) -> list[tuple[Digest, Reference | None]]:
    """A ``docker save`` archive: moby's ``tarexport.Load`` over ``manifest.json``."""
    what = f"{source}: {DOCKER_MANIFEST}"
    try:
        items = json.loads(_read_small(layout / DOCKER_MANIFEST, what))
    except ValueError as exc:
        raise InvalidLayoutError(f"{what}: {exc}") from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise InvalidLayoutError(f"{what}: not a list of images")
    loaded: list[tuple[Digest, list[Reference]]] = []
    for item in items:
        config_name, layer_names, repo_tags = item.get("Config"), item.get("Layers") or [], item.get("RepoTags") or []
        if not isinstance(config_name, str) or not isinstance(layer_names, list) or not isinstance(repo_tags, list) \
                or not all(isinstance(n, str) for n in layer_names + repo_tags):
            raise InvalidLayoutError(f"{what}: an image entry of the wrong shape")
        tags = []
        for name in repo_tags:  # every name is checked before anything is loaded
            try:
                ref = parse_normalized_named(name)
            except DistributionError:
                ref = None
            if ref is None or ref.tag is None or ref.digest is not None:
                raise InvalidLayoutError(f'invalid tag "{name}"')
            tags.append(ref)
        config = _read_small(_inside(layout, config_name, what), f"{what}: {config_name}")
        layers = [(_inside(layout, n, what), None) for n in layer_names]
        loaded.append((_load_image(store, config, layers, f"{what}: {config_name}"), tags))
    out: list[tuple[Digest, Reference | None]] = []
    for image_id, tags in loaded:  # nothing is tagged unless every image loaded
        for ref in tags:
            store.references.add_tag(ref, image_id, force=True)
            out.append((image_id, ref))
        if not tags:
            out.append((image_id, None))
    return out


def _inside(layout: Path, name: str, what: str) -> Path:
    """moby's ``safePath``: ``name`` within the archive (links followed, but not out of it), a file."""
    p = (layout / name.lstrip("/")).resolve()
    if not p.is_relative_to(layout.resolve()):
        raise InvalidLayoutError(f"{what}: {name} is outside the archive")
    if not p.is_file():
        raise InvalidLayoutError(f"{what}: {name} is missing")
    return p


def _load_image(store: Any, config: bytes, layers: Sequence[tuple[Path, Descriptor | None]], what: str) -> Digest:
    """Register ``layers`` (files, bottom first; a descriptor's digest and size are verified) as
    the config's diffIDs, then store the config; returns the image ID. A layer already stored is
    not read again; one whose diffID is not the config's is refused before it is published."""
    try:
        doc = json.loads(config)
        os_name = doc.get("os") if isinstance(doc, dict) else None
        diff_ids = rootfs_diff_ids(doc)
    except (ValueError, DistributionError) as exc:
        raise InvalidLayoutError(f"{what}: not an image configuration: {exc}") from None
    if os_name and os_name != default_platform().os:
        raise DistributionError(f"cannot load {os_name} image on {default_platform().os}")
    if len(layers) != len(diff_ids):
        raise InvalidLayoutError(f"invalid manifest, layers length mismatch: expected {len(layers)}, got {len(diff_ids)}")
    parent: Digest | None = None
    for i, ((path, desc), diff_id) in enumerate(zip(layers, diff_ids)):
        cid = chain_id(parent, diff_id)
        try:
            store.layers.chain(cid)  # stored whole: not read again
        except DistributionError:
            with store.layers.begin(parent, digest=desc.digest if desc else None, size=desc.size if desc else None,
                                    source=path) as pending:  # aborted, staging removed, on any error
                applied = pending.complete()
                if applied.diff_id != diff_id:
                    raise InvalidLayoutError(f'invalid diffID for layer {i}: expected "{diff_id}", got "{applied.diff_id}"')
                pending.publish(parent).release()
        parent = cid
    image_id: Digest = store.images.put(config)
    return image_id
