"""The embedded local store: docker-distribution's ``/var/lib/docker``.

Layout under the root (``$DOCKER_DISTRIBUTION_ROOT``, else the platform's user data dir)::

    content/               manifests and other blobs by digest (:mod:`.content`)
    image/                 image configs by image ID (:mod:`.images`)
    layers/                unpacked layer diffs by ChainID (:mod:`.layers`)
    repositories.json      tags and digest references (:mod:`.references`)
    distribution/          V2 metadata: diffID ⇔ blob digests (:mod:`..metadata`)

Every piece is safe for many threads and several processes at once, and every write
becomes visible by a rename of complete, verified data, so a ``kill -9`` at any instant
leaves a store that reopens consistent; what the killed writer left (a layer's staging
directory, an atomic write's temp file) is removed when the store next opens, as soon as the
process that made it is gone. :meth:`Store.verify` re-hashes everything and lists
problems; :meth:`Store.prune` removes what no image needs any more.

What a pull, a load or an import adds is named by no reference until its last step (layers are
registered first, the image and its tag come last), and a push, a save or an unpack reads
layers an ``rmi`` could otherwise delete under it (moby keeps them referenced until the push
ends). All of these hold :meth:`Store.lease` (a shared ``flock`` on ``gc.lock``) and
:meth:`Store.prune` takes it exclusively, so a prune in another thread or process waits for them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TypeVar

from ..digest import Digest
from ..errors import (
    CorruptStoreError,
    DistributionError,
    ImageDeleteConflictError,
    NoSuchImageError,
    ObjectNotFoundError,
    ReferenceNotFoundError,
    UnpackTargetError,
)
from ..fsutil import TMP_PREFIX, disk_usage, file_lock, tmp_dir, tmp_owner_gone
from ..layer import Limits, produce_layer
from ..mediatype import INDEX_TYPES
from ..metadata import FSMetadataStore, V2MetadataService
from ..reference import Reference, as_reference
from .content import ContentStore, Info
from .images import ImageStore
from .layers import Layer, LayerStore, chain_id, chain_of
from .references import ReferenceStore

__all__ = ["ROOT_ENV", "ContentStore", "ImageStore", "LayerStore", "ReferenceStore", "Store", "chain_id",
           "default_root"]

ROOT_ENV = "DOCKER_DISTRIBUTION_ROOT"
_T = TypeVar("_T")


def default_root() -> Path:
    """``$DOCKER_DISTRIBUTION_ROOT``, else ``$XDG_DATA_HOME/docker-distribution`` (``~/.local/share/…``)."""
    env = os.environ.get(ROOT_ENV)
    if env:
        return Path(env)
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "docker-distribution"


@dataclass
class PruneReport:
    """What :meth:`Store.prune` deleted: images, layers and content blobs no image needs, and
    leftovers of crashed writers (by path)."""

    images: list[Digest] = field(default_factory=list)
    layers: list[Digest] = field(default_factory=list)
    content: list[Digest] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    #: the bytes those took on disk (docker's "Total reclaimed space")
    reclaimed: int = 0


class Store:
    """The embedded local store, laid out like the daemon's ``/var/lib/docker``: content
    (verified blobs and resumable ingests), images (configs), layers (diffs and tar-split
    records), references (``repositories.json``) and V2 metadata, under ``root`` (default:
    :func:`default_root`). Safe to share between threads and processes.

    ``durable_blobs=False`` skips the fsync of each committed blob (faster, not crash-safe);
    ``limits`` bounds what one layer may unpack to.
    """

    def __init__(self, root: os.PathLike[str] | str | None = None, *, limits: Limits = Limits(),
                 durable_blobs: bool = True) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.root.mkdir(parents=True, exist_ok=True)
        self.content = ContentStore(self.root / "content", durable=durable_blobs)
        self.images = ImageStore(self.root / "image")
        self.layers = LayerStore(self.root / "layers", limits=limits)
        self.references = ReferenceStore(self.root / "repositories.json")
        self.metadata = FSMetadataStore(self.root / "distribution")
        self.v2_metadata = V2MetadataService(self.metadata)
        #: shared by every lease, exclusive for prune
        self._gc_lock = self.root / "gc.lock"
        self._remove_stale_tmp_files()

    @contextlib.contextmanager
    def lease(self) -> Iterator[None]:
        """Hold off :meth:`prune` (in any thread or process) while adding what no reference names
        yet, or reading layers: ``pull_image``, ``push_image``, :meth:`load`, :meth:`save`,
        :meth:`unpack`, :meth:`tag` and :meth:`image_from_directories` hold it; hold it around a
        composed ``pull()`` or ``push()`` too."""
        with file_lock(self._gc_lock, shared=True):
            yield

    # --- images ----------------------------------------------------------------------------

    def image_chain_id(self, image_id: Digest) -> Digest | None:
        """The ChainID of an image's top layer (None for an image without layers)."""
        return chain_of(self.images.diff_ids(image_id))

    def image_size(self, image_id: Digest) -> int:
        """docker's image size (``docker images``' SIZE): the content size of every layer in the
        image's chain (:meth:`.layers.LayerStore.content_size`)."""
        cid = self.image_chain_id(image_id)
        return sum(self.layers.content_size(i) for i in self.layers.chain(cid)) if cid is not None else 0

    def top_layer(self, image_id: Digest) -> Layer | None:
        """The image's top layer in the layer store (None for an image without layers, or whose
        chain is not there)."""
        cid = self.image_chain_id(image_id)
        return self.layers.get(cid) if cid is not None else None

    def unpack(self, image: Reference | Digest | str, dest: os.PathLike[str] | str, *, force: bool = False) -> None:
        """The root filesystem of ``image`` (anything :meth:`resolve` takes), flattened into
        ``dest``, which is created if needed. A ``dest`` that is not empty is refused
        (:class:`~docker_distribution.errors.UnpackTargetError`) unless ``force``: then the
        image's files are written over what is there, and the rest is left as it was."""
        target = Path(dest)
        with self.lease():
            image_id = self.resolve(image)  # an unknown image is refused before the target is touched
            if target.exists() and not target.is_dir():
                raise UnpackTargetError(f"cannot unpack into {target}: it exists and is not a directory")
            if not force and target.is_dir() and any(target.iterdir()):
                raise UnpackTargetError(f"refusing to unpack into the non-empty directory {target} "
                                        "(force=True, or --force, unpacks over what it holds)")
            target.mkdir(parents=True, exist_ok=True)
            cid = self.image_chain_id(image_id)
            if cid is not None:
                self.layers.unpack(cid, dest)

    def resolve(self, ref: Reference | Digest | str) -> Digest:
        """An image ID from a reference, an image ID, or a string as :meth:`lookup` reads it (a
        reference, an ID or a unique ID prefix); :class:`~docker_distribution.errors.NoSuchImageError`
        naming ``ref`` if there is none, a :class:`TypeError` for anything else."""
        if isinstance(ref, Digest):
            if not self.images.present(ref):  # damaged or not: a damaged one is reported when read
                raise NoSuchImageError(str(ref))
            return ref
        if isinstance(ref, Reference):
            return self._image_of(ref)
        if isinstance(ref, str):
            return self.lookup(ref)[1]
        raise TypeError(f"expected an image (a Reference, a Digest or a str), got {type(ref).__name__}")

    def lookup(self, value: str) -> tuple[Reference | None, Digest]:
        """What docker's image commands make of a REF argument: the reference it names when that
        names an image (a bare name is ``:latest``), else an image ID (``sha256:…`` or hex) or a
        unique ID prefix of at least 4 characters, with None for the reference;
        :class:`~docker_distribution.errors.NoSuchImageError`, worded as docker's, if neither."""
        named = _named(value)
        if named is not None:
            with contextlib.suppress(ReferenceNotFoundError):
                return named, self.references.get(named)
        image_id = self._id_of(value)
        if image_id is None:
            raise NoSuchImageError(named.familiar if named is not None else value)
        return None, image_id

    def _id_of(self, value: str) -> Digest | None:
        algorithm, sep, prefix = value.rpartition(":")
        matches = [i for i in self.images.list()
                   if i.encoded.startswith(prefix) and (not sep or i.algorithm == algorithm)] if len(prefix) >= 4 else []
        return matches[0] if len(matches) == 1 else None

    def _image_of(self, ref: Reference, asked: str | None = None) -> Digest:
        try:
            return self.references.get(ref)
        except ReferenceNotFoundError:
            raise NoSuchImageError(asked or ref.familiar) from None

    def tag(self, src: Reference | Digest | str, dst: Reference | str) -> Digest:
        """``docker tag``: name the image ``src`` resolves to (anything :meth:`resolve` takes)
        ``dst`` (a reference or a string; ``:latest`` when it has no tag); returns the image ID.
        Under a :meth:`lease`, so a prune in progress elsewhere cannot delete the image being named."""
        target = as_reference(dst).tag_name_only()
        with self.lease():
            image_id = self.resolve(src)
            self.references.add_tag(target, image_id, force=True)
        return image_id

    def remove_image(self, ref: Reference | Digest | str, *, force: bool = False, prune: bool = True,
                     on_wait: Callable[[], None] | None = None) -> list[str]:
        """``docker rmi``. A :class:`Reference`, or a string that names one, is untagged; when no
        reference is left, the image is deleted with the layers of its chain no other image or
        layer needs, and the manifests its digest references named (with what they point to) that
        nothing else names. A string that names no reference is looked up as an image ID or a
        unique ID prefix (as docker does): every reference to the image is removed and the image
        deleted, provided those references are at most one tag and digest references of the same
        repository, else :class:`~docker_distribution.errors.ImageDeleteConflictError` unless
        ``force``. Everything else stays, unreferenced images and content included: that is
        :meth:`prune`'s job, as ``docker image prune`` is docker's. Returns docker's lines
        (``Untagged:``, then ``Deleted:`` for the image and each layer). The deletion waits for
        every :meth:`lease`, calling ``on_wait`` once if it has to."""
        if isinstance(ref, Digest):
            ref = str(ref)  # an image ID, as docker rmi takes one
        if isinstance(ref, str):
            named, image_id = self.lookup(ref)
            if named is None:
                return self._remove_by_id(image_id, force=force, prune=prune, on_wait=on_wait)
            ref = named
        else:
            image_id = self._image_of(ref)
        out = [f"Untagged: {ref.familiar}"]
        untagged = [ref]
        self.references.delete(ref)
        remaining = self.references.references(image_id)
        if all(r.digest is not None for r in remaining):
            for r in remaining:
                self.references.delete(r)
                untagged.append(r)
                out.append(f"Untagged: {r.familiar}")
        return out + self._untagged(image_id, untagged, prune, on_wait)

    def _remove_by_id(self, image_id: Digest, *, force: bool, prune: bool,
                      on_wait: Callable[[], None] | None) -> list[str]:
        refs = self.references.references(image_id)
        if refs and not force and not _single_reference(refs):
            raise ImageDeleteConflictError(str(image_id))
        for r in refs:
            self.references.delete(r)
        return [f"Untagged: {r.familiar}" for r in refs] + self._untagged(image_id, refs, prune, on_wait)

    def _untagged(self, image_id: Digest, untagged: list[Reference], prune: bool,
                  on_wait: Callable[[], None] | None) -> list[str]:
        """After ``untagged`` were removed: delete what they leave unneeded (see :meth:`remove_image`)."""
        manifests = [r.digest for r in untagged if r.digest is not None]
        if not prune or (not manifests and self.references.references(image_id)):
            return []
        deleted = self._exclusively(lambda: self._delete_image(image_id, manifests), on_wait)
        return [f"Deleted: {d}" for d in deleted]  # as docker: the image, then its layers

    def _delete_image(self, image_id: Digest, manifests: list[Digest]) -> list[Digest]:
        """The content the ``manifests`` lead to that no reference still leads to; then, unless a
        reference names it, the image and its layers top down as long as nothing else needs them.
        Returns what was deleted of the image and its layers."""
        for d in self._content_closure(manifests) - self._needed_content():
            with contextlib.suppress(ObjectNotFoundError):
                self.content.delete(d)
        if self.references.references(image_id) or not self.images.exists(image_id):
            return []  # still named (or again: the digest reference a push records), or gone
        cid = self.image_chain_id(image_id)
        self.images.delete(image_id)
        deleted = [image_id]
        if cid is not None and self.layers.exists(cid):
            needed = self._needed_layers()
            children = Counter(i.parent for i in self.layers.list() if i.parent is not None)
            for info in reversed(self.layers.chain(cid)):
                if info.chain_id in needed or children[info.chain_id] or self.layers.references(info.chain_id):
                    break  # and so is every layer below it
                self.layers.delete(info.chain_id)
                deleted.append(info.chain_id)
                if info.parent is not None:
                    children[info.parent] -= 1
        return deleted

    def image_from_directories(self, layer_dirs: list[os.PathLike[str] | str], ref: Reference | None = None, *,
                               config: dict[str, object] | None = None, mtime: int | None = 0) -> Digest:
        """Make an image whose layers are the given directories (bottom first), like ``docker import``
        of several trees: each becomes a deterministic tar layer; the image is tagged ``ref`` if given."""
        from ..platform import default_platform

        parent: Digest | None = None
        diff_ids: list[str] = []
        host = default_platform()
        with self.lease():
            for d in layer_dirs:
                with tmp_dir(self.root, "layer-") as tmp:
                    blob = tmp / "layer.tar"
                    produce_layer(blob, source_dir=d, compression="none", mtime=mtime)
                    layer = self.layers.register_file(blob, parent)
                parent = layer.chain_id
                diff_ids.append(str(layer.diff_id))
                layer.release()
            doc: dict[str, object] = {"architecture": host.architecture, "os": host.os, "config": {},
                                      **(config or {}), "rootfs": {"type": "layers", "diff_ids": diff_ids}}
            image_id = self.images.put(json.dumps(doc, separators=(",", ":")).encode())
            if ref is not None:
                self.references.add_tag(ref, image_id, force=True)
        return image_id

    def save(self, refs: Sequence[Reference | Digest | str], path: os.PathLike[str] | str | BinaryIO) -> None:
        """Write images to an OCI layout directory or ``.tar``, with docker's ``manifest.json``
        (see :mod:`.layout`), or a ``.tar`` streamed into a binary file object; a string is read
        as :meth:`lookup` reads it, and an image given by ID is saved without a name."""
        from .layout import save

        with self.lease():
            save(self, refs, path)

    def load(self, path: os.PathLike[str] | str | BinaryIO) -> list[tuple[Digest, Reference | None]]:
        """Load an OCI layout or a ``docker save`` archive: a directory, a ``.tar``, or a binary
        file object streaming one (see :mod:`.layout`)."""
        from .layout import load

        with self.lease():
            return load(self, path)

    # --- garbage collection ----------------------------------------------------------------

    def prune(self, *, on_wait: Callable[[], None] | None = None) -> PruneReport:
        """Remove images no reference names, then layers and content no remaining image needs.
        Waits for every :meth:`lease` (a pull, push, load, save or unpack under way) to end first, calling
        ``on_wait`` once if it has to."""
        return self._exclusively(self._prune, on_wait)

    def _exclusively(self, work: Callable[[], _T], on_wait: Callable[[], None] | None) -> _T:
        """``work()`` with no :meth:`lease` held anywhere; ``on_wait()`` first if it has to wait."""
        with file_lock(self._gc_lock, blocking=False) as free:
            if free:
                return work()
        if on_wait is not None:
            on_wait()
        with file_lock(self._gc_lock):
            return work()

    def _prune(self) -> PruneReport:
        report = PruneReport()
        referenced_images = {Digest.parse(v) for repo in self.references.all().values() for v in repo.values()}
        for image_id in self.images.list():
            if image_id not in referenced_images:
                with contextlib.suppress(DistributionError):
                    report.reclaimed += len(self.images.get(image_id))
                self.images.delete(image_id)
                report.images.append(image_id)
        needed_layers = self._needed_layers()
        # delete top-down so that a layer is never removed under a child that is kept
        for layer in sorted(self.layers.list(), key=lambda i: -len(self.layers.chain(i.chain_id))):
            if layer.chain_id not in needed_layers and not self.layers.references(layer.chain_id):
                report.reclaimed += disk_usage(self.layers.layer_dir(layer.chain_id))
                self.layers.delete(layer.chain_id)
                report.layers.append(layer.chain_id)
        needed_content = self._needed_content()
        blobs: list[Info] = []
        self.content.walk(blobs.append)
        for info in blobs:
            if info.digest not in needed_content:
                self.content.delete(info.digest)
                report.content.append(info.digest)
                report.reclaimed += info.size
        for leftover in self.leftovers():
            report.reclaimed += disk_usage(leftover)
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
            report.leftovers.append(str(leftover.relative_to(self.root)))
        return report

    def _remove_stale_tmp_files(self, age: float = 300.0) -> None:
        """Temporary files of atomic writes a crash interrupted: those whose writing process is
        gone, and any old enough that no writer can still be on them."""
        import time

        cutoff = time.time() - age
        for p in self._loose_tmp():
            with contextlib.suppress(OSError):
                if tmp_owner_gone(p) or p.lstat().st_mtime < cutoff:
                    shutil.rmtree(p) if p.is_dir() else p.unlink()

    def leftovers(self) -> list[Path]:
        """Temporary files and staging directories no live writer holds (what a crash leaves)."""
        return list(self.layers.leftovers()) + self._loose_tmp()

    def _loose_tmp(self) -> list[Path]:
        """Temporary files of atomic writes anywhere in the store, other writers' included.

        Unpacked diffs (image content) and the layer store's own staging area are not searched,
        and a directory that vanishes while it is walked (a writer finishing) is passed over."""
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            here = Path(dirpath)
            if here == self.layers.root:
                dirnames[:] = [n for n in dirnames if n != "tmp"]
            elif here.parent.parent == self.layers.root:
                dirnames[:] = [n for n in dirnames if n != "diff"]
            found += [here / n for n in dirnames + filenames if n.startswith(TMP_PREFIX)]
            dirnames[:] = [n for n in dirnames if not n.startswith(TMP_PREFIX)]
        return found

    def _needed_layers(self) -> set[Digest]:
        """The layers of every image's chain."""
        needed: set[Digest] = set()
        for image_id in self.images.list():
            cid = self.image_chain_id(image_id)
            if cid is not None and self.layers.exists(cid):
                needed.update(i.chain_id for i in self.layers.chain(cid))
        return needed

    def _needed_content(self) -> set[Digest]:
        """Manifests named by digest references, and what their indexes and manifests point to."""
        return self._content_closure([r.digest for repo in self.references.all().values()
                                      for key in repo for r in [_parse(key)] if r is not None and r.digest is not None])

    def _content_closure(self, roots: list[Digest]) -> set[Digest]:
        """The blobs of the content store that ``roots`` are, or that their indexes and manifests
        point to."""
        todo = list(roots)
        keep: set[Digest] = set()
        while todo:
            d = todo.pop()
            if d in keep or not self.content.exists(d):
                continue
            keep.add(d)
            with contextlib.suppress(ValueError, DistributionError):
                doc = json.loads(self.content.read(d))
                if doc.get("mediaType") in INDEX_TYPES or "manifests" in doc:
                    todo += [Digest.parse(m["digest"]) for m in doc.get("manifests") or ()]
                else:
                    todo += [Digest.parse(x["digest"]) for x in [doc.get("config") or {}] + list(doc.get("layers") or ())
                             if "digest" in x]
        return keep

    # --- verification ----------------------------------------------------------------------

    def verify(self) -> list[str]:
        """Re-hash every blob, config and layer, and check links between them. Empty is clean.

        Interrupted ingests are not problems (a writer resumes them); :meth:`leftovers` lists
        what crashed writers left and :meth:`prune` removes it."""
        problems: list[str] = []

        def check_blob(info: Info) -> None:
            actual, _ = Digest.from_file(self.content.blob_path(info.digest), info.digest.algorithm)
            if actual != info.digest:
                problems.append(f"content {info.digest}: digest is {actual}")

        self.content.walk(check_blob)
        verified: set[Digest] = set()
        for image_id in self.images.list():
            try:
                self.images.get(image_id)  # verified against its ID
                verified.add(image_id)
            except CorruptStoreError as exc:
                problems.append(str(exc))
        for info in self.layers.records():
            if isinstance(info, CorruptStoreError):
                problems.append(str(info))
                continue
            d = self.layers.layer_dir(info.chain_id)
            try:
                rebuilt = produce_layer(os.devnull, source_diff=(d / "diff", d / "tar-split.zst"), compression="none")
                if rebuilt.diff_id != info.diff_id:
                    problems.append(f"layer {info.chain_id}: diff rebuilds to {rebuilt.diff_id}, not {info.diff_id}")
            except (DistributionError, OSError) as exc:
                problems.append(f"layer {info.chain_id}: {exc}")
            if info.parent is not None and not self.layers.exists(info.parent):
                problems.append(f"layer {info.chain_id}: parent {info.parent} missing")
            if chain_id(info.parent, info.diff_id) != info.chain_id:
                problems.append(f"layer {info.chain_id}: chain ID does not match its parent and diffID")
        try:
            references = self.references.all()
        except CorruptStoreError as exc:
            return problems + [str(exc)]
        for name, repo in references.items():
            for key, value in repo.items():
                try:
                    if Digest.parse(value) not in verified:
                        problems.append(f"reference {key}: image {value} missing")
                except DistributionError as exc:
                    problems.append(f"reference {key}: {exc}")
        return problems


def _parse(key: str) -> Reference | None:
    from ..reference import parse_normalized_named

    try:
        return parse_normalized_named(key)
    except DistributionError:
        return None


def _named(value: str) -> Reference | None:
    """``value`` as docker reads a reference on the command line (a bare name is ``:latest``),
    or None when it cannot be one (a 64-hex ID, say)."""
    ref = _parse(value)
    return ref if ref is None or ref.digest else ref.tag_name_only()


def _single_reference(refs: list[Reference]) -> bool:
    """moby's ``isSingleReference``: at most one tag, and every reference in one repository."""
    return sum(r.digest is None for r in refs) <= 1 and len({r.name for r in refs}) == 1


__all__ += ["Layer", "ObjectNotFoundError", "PruneReport"]
