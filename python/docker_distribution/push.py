"""``push()``: moby's ``distribution.Push`` (moby distribution/push.go, push_v2.go), from the embedded store.

For each tag: the image's layers are uploaded top to bottom, five at a time; each layer is
first looked for (V2 metadata: existence checks and cross-repository mounts, ordered by
HMAC match, likeness and age, within moby's size thresholds), and otherwise produced from the
layer store's exact tar, compressed natively on the fly (gzip by default; zstd beyond moby)
while its digest and size are computed, and streamed to the registry in one PATCH. Then the
config and a manifest byte-identical to moby's (3-space indent) are pushed.

Beyond moby: an upload whose connection breaks continues from the offset the registry
reports; the upload location is kept in the metadata store, so a push killed and run again
continues too. The producer's output nearly always depends on the layer and options alone
(see :mod:`docker_distribution.layer`'s native producer on ISA-L's rare exception); a session
whose held bytes the registry then refuses fails that attempt, and the next one starts afresh. ``compression="zstd"`` pushes OCI zstd layers
(with an OCI manifest).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .config import Config, common_fields
from .descriptor import Descriptor
from .digest import Digest
from .errors import (
    BlobUnknownError,
    BlobUploadInvalidError,
    BlobUploadUnknownError,
    DigestInvalidError,
    DistributionError,
    DoNotRetry,
    ObjectNotFoundError,
    RegistryError,
    TagInvalidError,
    TransportError,
    UnauthorizedError,
    UnexpectedHTTPStatusError,
)
from .fallback import check_reserved, resolve_auth, try_endpoints
from .layer import LayerProducer, check_compression
from .manifest import schema2_manifest_bytes
from .mediatype import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
)
from .metadata import (
    V2Metadata,
    V2MetadataService,
    check_v2_metadata_hmac,
    compute_v2_metadata_hmac_key,
)
from .progress import Progress, ProgressOutput, ProgressReader
from .reference import Reference, as_reference, parse_normalized_named
from .registry.auth import AuthConfig
from .registry.client import BlobUpload, Repository, connect
from .registry.service import APIEndpoint
from .store import Store
from .store.adapters import PushLayer, PushLayerProvider, new_layer_providers_from_store
from .store.images import ImageStore, rootfs_diff_ids
from .store.layers import chain_of
from .store.references import ReferenceStore
from .xfer.transfer import TransferContext, drop_prefix
from .xfer.upload import LayerUploadManager

__all__ = ["ImagePushConfig", "get_repository_mount_candidates", "push", "push_image"]

log = logging.getLogger(__name__)

SMALL_LAYER_MAXIMUM_SIZE = 100 * 1024  # moby: (mount, exist, other) = (1, 1, False) up to here
MIDDLE_LAYER_MAXIMUM_SIZE = 10 * 1024 * 1024  # (3, 1, False) up to here, (4, 3, True) above
UPLOAD_RESUMES = 3  # in-place continuations of a broken upload before the attempt fails
#: chunk size when the registry asks for chunked uploads (413, or OCI-Chunk-Min-Length)
DEFAULT_CHUNK = 16 * 1024 * 1024
#: layers whose tar is at most this big go up in one monolithic PUT
MONOLITHIC_MAX = 1024 * 1024
_UPLOAD_NS = "upload-by-diffid"


def upload_key(repo: str, compression: str, level: int | None, diff_id: Digest) -> str:
    """The V2 metadata key under which an unfinished upload's session location is kept."""
    return f"{repo}/{compression}-{level}/{diff_id.algorithm}/{diff_id.encoded}"


@dataclass(frozen=True, kw_only=True)
class ImagePushConfig(Config):
    """moby's ``ImagePushConfig``: the stores to push from (layers, images, references, V2
    metadata), the upload manager, and how layers are compressed (gzip by default; zstd beyond
    moby). :func:`push_image` builds one over the embedded store."""

    config_media_type: str = DOCKER_CONFIG
    layer_stores: PushLayerProvider
    upload_manager: LayerUploadManager
    image_store: ImageStore
    reference_store: ReferenceStore
    metadata: V2MetadataService | None = None
    compression: Literal["gzip", "zstd"] = "gzip"
    compression_level: int | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        check_compression(self.compression, self.compression_level)


def push_image(ref: Reference | str, store: Store | None = None, *, config: Config | None = None,
               compression: Literal["gzip", "zstd"] = "gzip", compression_level: int | None = None,
               max_concurrent_uploads: int = 5, progress_output: ProgressOutput | None = None) -> None:
    """Push ``ref`` (a tag, or a name for all its local tags; a :class:`Reference` or a string)
    from the embedded store."""
    store = store if store is not None else Store()
    base = config or Config()
    cfg = ImagePushConfig(
        **common_fields(base, progress_output=progress_output),
        layer_stores=new_layer_providers_from_store(store.layers), upload_manager=LayerUploadManager(max_concurrent_uploads),
        image_store=store.images, reference_store=store.references, metadata=store.v2_metadata,
        compression=compression, compression_level=compression_level,
    )
    with store.lease():  # an rmi elsewhere waits: the layers are read until the push ends
        push(ref, cfg)


def push(ref: Reference | str, config: ImagePushConfig) -> None:
    """moby's ``distribution.Push``: push ``ref`` from the stores named in ``config``.

    A name-only ``ref`` pushes every local tag of that repository (moby's order); a tag pushes
    that one; a digest reference is refused. Endpoints are tried in order (mirrors never take
    pushes), falling back on the errors moby falls back on. Progress goes to
    ``config.progress_output`` in moby's vocabulary, ending with ``<tag>: digest: … size: N``.
    :func:`push_image` is the same over the embedded :class:`~docker_distribution.store.Store`.
    """
    ref = as_reference(ref)
    repo_name = ref.trim()
    check_reserved(repo_name)
    out = config.progress_output
    out.write_progress(Progress(message=f"The push refers to repository [{repo_name.name}]"))
    if not config.reference_store.references_by_name(repo_name):
        raise DistributionError(f"An image does not exist locally with the tag: {repo_name.familiar_name}")
    auth = resolve_auth(config, ref)

    def attempt(endpoint: APIEndpoint, repo_name: Reference) -> None:
        repo = connect(repo_name, endpoint, auth_config=auth, actions=("push", "pull"),
                       meta_headers=config.meta_headers, retry=config.retry)
        _Pusher(config, repo, auth).push(ref)

    try_endpoints(ref, config, "push", attempt)
    if config.image_event_logger is not None:
        config.image_event_logger(ref.familiar, repo_name.familiar_name, "push")


class _Pusher:
    def __init__(self, config: ImagePushConfig, repo: Repository, auth: AuthConfig) -> None:
        self.config = config
        self.repo = repo
        self.auth = auth
        self.out = config.progress_output
        self.remote_layers: dict[Digest, Descriptor] = {}
        self.lock = threading.Lock()
        self.has_auth_info = auth.has_auth_info

    def push(self, ref: Reference) -> None:
        refs = self.config.reference_store
        if ref.digest is not None:
            raise DistributionError("cannot push a digest reference")
        if ref.tag is not None:
            try:
                image_id = refs.get(ref)
            except ObjectNotFoundError:
                raise DistributionError(f"tag does not exist: {ref.familiar}") from None
            self.push_tag(ref, image_id)
            return
        pushed = 0
        for assoc in refs.references_by_name(ref):
            if assoc.ref.tag is None or assoc.ref.digest is not None:
                continue
            self.push_tag(assoc.ref, assoc.id)
            pushed += 1
        if not pushed:
            raise DistributionError(f"no tags to push for {ref.familiar_name}")

    def push_tag(self, ref: Reference, image_id: Digest) -> None:
        try:
            config = self.config.image_store.get(image_id)
        except DistributionError as exc:
            raise DistributionError(f"could not find image from tag {ref.familiar}: {exc}") from None
        try:
            diff_ids = rootfs_diff_ids(json.loads(config))
        except (ValueError, DistributionError) as exc:
            raise DistributionError(f"unable to get rootfs for image {ref.familiar}: {exc}") from None
        try:
            top = self.config.layer_stores.get(chain_of(diff_ids))
        except DistributionError as exc:
            raise DistributionError(f"failed to get top layer from image: {exc}") from None
        hmac_key = compute_v2_metadata_hmac_key(self.auth)
        descriptors: list[_PushDescriptor] = []
        layer: PushLayer | None = top
        held: list[PushLayer] = []
        try:
            for _ in diff_ids:
                assert layer is not None
                descriptors.append(_PushDescriptor(self, layer, hmac_key))
                held.append(layer)
                layer = layer.parent()
            self.config.upload_manager.upload(descriptors, self.out, self.config.cancel)
        finally:
            for h in held:
                h.release()
        zstd = self.config.compression == "zstd"
        config_type = OCI_CONFIG if zstd else self.config.config_media_type
        config_desc = self._push_config(config, config_type)
        layers = [d.remote for d in reversed(descriptors)]
        assert all(layers)
        payload = schema2_manifest_bytes(config_desc, [d for d in layers if d is not None],
                                         OCI_MANIFEST if zstd else DOCKER_MANIFEST)
        media_type = OCI_MANIFEST if zstd else DOCKER_MANIFEST
        assert ref.tag is not None
        try:
            self.repo.put_manifest(ref.tag, payload, media_type)
        except TagInvalidError as exc:
            # moby compares the error's text with "tag invalid": the bare code, with no message
            # or detail of the registry's own (what a registry that wants schema1 answers)
            if exc.bare and exc.request is None:
                raise DistributionError(
                    "[DEPRECATED] support for pushing manifest v2 schema1 images has been removed. More information "
                    f"at https://docs.docker.com/registry/spec/deprecated-schema-v1/: {exc.code_text()}") from exc
            raise
        digest = Digest.from_bytes(payload)
        self.out.write_progress(Progress(message=f"{ref.tag}: digest: {digest} size: {len(payload)}"))
        digest_ref = ref.trim().with_digest(digest)
        try:
            existing = self.config.reference_store.get(digest_ref)
            if existing != image_id:
                # moby writes this to the daemon log: a note for --debug, not an error of the push
                log.info("Image ID for digest %s changed from %s to %s, cannot update", digest, existing, image_id)
        except ObjectNotFoundError:
            self.config.reference_store.add_digest(digest_ref, image_id, force=True)
        self.out.write_progress(Progress(aux={"Tag": ref.tag, "Digest": str(digest), "Size": len(payload)}))

    def _push_config(self, config: bytes, media_type: str) -> Descriptor:
        digest = Digest.from_bytes(config)
        try:
            desc = self.repo.stat_blob(digest)
        except BlobUnknownError:
            desc = self.repo.upload_monolithic(config, digest)
        return Descriptor(media_type, digest, desc.size)


def _thresholds(size: int) -> tuple[int, int, bool]:
    if size > MIDDLE_LAYER_MAXIMUM_SIZE:
        return 4, 3, True
    if size > SMALL_LAYER_MAXIMUM_SIZE:
        return 3, 1, False
    return 1, 1, False


class _Stat(Protocol):
    def stat_blob(self, digest: Digest | str) -> Descriptor: ...


class _Meta(Protocol):
    def tag_and_add(self, diff_id: Digest, hmac_key: bytes | None, meta: V2Metadata) -> None: ...

    def remove(self, meta: V2Metadata) -> None: ...


def _path_components(path: str) -> list[str]:
    return path.split("/")


def _matching_components(path: str, match: list[str]) -> int:
    comps = _path_components(path)
    i = 0
    while i < len(comps) and i < len(match) and comps[i] == match[i]:
        i += 1
    return i


def sort_v2_metadata_by_likeness_and_age(repo: Reference, hmac_key: bytes | None, metas: list[V2Metadata]) -> list[V2Metadata]:
    """Newest first, then (stably) HMAC matches first, then most leading path components shared."""
    match = _path_components(repo.name)
    newest_first = metas[::-1]
    return sorted(newest_first, key=lambda m: (not check_v2_metadata_hmac(m, hmac_key),
                                               -_matching_components(m.source_repository, match)))


def _canonical(name: str) -> Reference | None:
    try:
        ref = parse_normalized_named(name)
    except DistributionError:
        return None
    return ref if str(ref) == name else None


def get_repository_mount_candidates(repo: Reference, hmac_key: bytes | None, max_candidates: int,
                                    metas: Sequence[V2Metadata]) -> list[V2Metadata]:
    """moby's candidates: canonical source repositories on the same registry, other than the target."""
    out = []
    for m in metas:
        src = _canonical(m.source_repository)
        if src is None or src.domain != repo.domain or src.name == repo.name:
            continue
        out.append(m)
    out = sort_v2_metadata_by_likeness_and_age(repo, hmac_key, out)
    return out[:max_candidates] if max_candidates >= 0 else out


def layer_already_exists(repo: _Stat, metadata: _Meta, repo_name: Reference, hmac_key: bytes | None, diff_id: Digest,
                         check_other: bool, max_checks: int, metas: Sequence[V2Metadata],
                         checked: set[Digest]) -> Descriptor | None:
    """moby's ``layerAlreadyExists``: HEAD up to ``max_checks`` candidate digests; None when none is there."""
    candidates = [m for m in metas if not (m.source_repository and not check_other and m.source_repository != repo_name.name)]
    candidates = sort_v2_metadata_by_likeness_and_age(repo_name, hmac_key, candidates)
    by_digest: dict[Digest, V2Metadata] = {}
    order: list[Digest] = []
    for m in candidates:
        if len(order) >= max_checks:
            break
        if m.digest in by_digest or m.digest in checked:
            continue
        by_digest[m.digest] = m
        order.append(m.digest)
    for d in order:
        meta = by_digest[d]
        try:
            desc = repo.stat_blob(d)
        except BlobUnknownError:
            checked.add(d)
            if meta.source_repository == repo_name.name:
                metadata.remove(meta)
            continue
        except (DistributionError, OSError) as exc:
            checked.add(d)
            log.debug("Failed to check for presence of layer %s (%s) in %s: %s", diff_id, d, repo_name.name, exc)
            continue
        checked.add(d)
        if meta.source_repository != repo_name.name or not check_v2_metadata_hmac(meta, hmac_key):
            try:
                metadata.tag_and_add(diff_id, hmac_key, V2Metadata(desc.digest, repo_name.name))
            except DistributionError as exc:
                raise DoNotRetry(exc) from exc
        return Descriptor(DOCKER_LAYER_GZIP, desc.digest, desc.size)
    return None


class _PushDescriptor:
    def __init__(self, pusher: _Pusher, layer: PushLayer, hmac_key: bytes | None) -> None:
        self.pusher = pusher
        self.layer = layer
        self.hmac_key = hmac_key
        self.remote: Descriptor | None = None
        self.checked: set[Digest] = set()

    @property
    def repo_name(self) -> Reference:
        return self.pusher.repo.named

    def key(self) -> str:
        return f"v2push:{self.repo_name.name} {self.layer.diff_id()}"

    def id(self) -> str:
        return self.layer.diff_id().short_id

    def set_remote_descriptor(self, d: Descriptor) -> None:
        self.remote = d

    def upload(self, ctx: TransferContext) -> Descriptor:
        p = self.pusher
        diff_id = self.layer.diff_id()
        with p.lock:
            known = p.remote_layers.get(diff_id)
        if known is not None:
            ctx.progress(Progress(self.id(), action="Layer already exists"))
            return known
        metadata = p.config.metadata
        max_mount, max_exist, check_other = _thresholds(self.layer.size())
        metas: list[V2Metadata] = []
        if metadata is not None:
            try:
                # only blobs of the codec being pushed can stand for this layer (beyond moby: zstd)
                metas = [m for m in metadata.get_metadata(diff_id)
                         if metadata.compression(m.digest) == p.config.compression]
            except DistributionError:
                metas = []
            found = layer_already_exists(p.repo, metadata, self.repo_name, self.hmac_key, diff_id, True, 1, metas,
                                         self.checked)
            if found is not None:
                return self._exists(ctx, diff_id, found)
        session: BlobUpload | None = self._resumable_session(diff_id)
        unauthorized = False
        if session is None and metadata is not None:
            for cand in get_repository_mount_candidates(self.repo_name, self.hmac_key, max_mount, metas):
                src = _canonical(cand.source_repository)
                if src is None:
                    metadata.remove(cand)
                    continue
                try:
                    result = p.repo.mount(cand.digest, src.path)
                except UnauthorizedError:
                    unauthorized = True
                    result = None
                except (DistributionError, OSError) as exc:
                    log.info("failed to mount layer %s (%s) from %s: %s", diff_id, cand.digest, src.path, exc)
                    result = None
                if isinstance(result, Descriptor):
                    ctx.progress(Progress(self.id(), action=f"Mounted from {src.path}"))
                    desc = Descriptor(self._media(), result.digest, result.size)
                    with p.lock:
                        p.remote_layers[diff_id] = desc
                    try:
                        metadata.tag_and_add(diff_id, self.hmac_key, V2Metadata(result.digest, self.repo_name.name))
                    except DistributionError as exc:
                        raise DoNotRetry(exc) from exc
                    return desc
                if (not unauthorized or p.has_auth_info) and (check_v2_metadata_hmac(cand, self.hmac_key) or not cand.hmac):
                    metadata.remove(cand)
                if result is not None:
                    if session is not None:
                        session.cancel()
                    session = result
            remaining = max_exist - len(self.checked)
            if remaining > 0:
                found = layer_already_exists(p.repo, metadata, self.repo_name, self.hmac_key, diff_id, check_other,
                                             remaining, metas, self.checked)
                if found is not None:
                    return self._exists(ctx, diff_id, found)
        if session is None:
            session = p.repo.start_upload()
        return self._upload(ctx, session, diff_id)

    def _media(self) -> str:
        return OCI_LAYER_ZSTD if self.pusher.config.compression == "zstd" else DOCKER_LAYER_GZIP

    def _exists(self, ctx: TransferContext, diff_id: Digest, desc: Descriptor) -> Descriptor:
        desc = Descriptor(self._media(), desc.digest, desc.size)  # only blobs of this codec were candidates
        ctx.progress(Progress(self.id(), action="Layer already exists"))
        with self.pusher.lock:
            self.pusher.remote_layers[diff_id] = desc
        return desc

    # --- the bytes -------------------------------------------------------------------------

    def _upload_key(self, diff_id: Digest) -> str:
        c = self.pusher.config
        return upload_key(self.repo_name.name, c.compression, c.compression_level, diff_id)

    def _resumable_session(self, diff_id: Digest) -> BlobUpload | None:
        """An upload a killed push left behind, if the registry still has it."""
        store = self._store()
        if store is None:
            return None
        try:
            location = store.get(_UPLOAD_NS, self._upload_key(diff_id)).decode()
        except DistributionError:
            return None
        session = BlobUpload(self.pusher.repo, location, "")
        try:
            session.status()
        except (DistributionError, OSError):
            store.delete(_UPLOAD_NS, self._upload_key(diff_id))
            return None
        return session

    def _store(self) -> Any:
        md = self.pusher.config.metadata
        return md.store if md is not None else None

    def _produce(self) -> LayerProducer:
        layer = self.layer.layer()
        if layer is None:
            raise DoNotRetry(DistributionError(f"unsupported layer media type {self.layer.media_type()}"))
        c = self.pusher.config
        return LayerProducer(source_diff=(layer.path, layer.split), compression=c.compression, level=c.compression_level)

    def _upload(self, ctx: TransferContext, session: BlobUpload, diff_id: Digest) -> Descriptor:
        if self.layer.media_type() != DOCKER_LAYER:
            raise DoNotRetry(DistributionError(f"unsupported layer media type {self.layer.media_type()}"))
        store = self._store()
        key = self._upload_key(diff_id)
        if self.layer.size() <= MONOLITHIC_MAX and not session.offset:
            producer = self._produce()
            data = b"".join(self._body(ctx, producer, 0))  # at most ~1 MiB
            result = producer.result()
            session.commit(result.digest, data=data)
            return self._pushed(ctx, diff_id, result.digest, result.size)
        if store is not None:
            store.set(_UPLOAD_NS, key, session.location.encode())
        chunked = session.chunk_min_length is not None
        resumes = 0
        while True:
            producer = self._produce()
            try:
                if chunked:
                    self._write_chunks(ctx, session, producer, store, key)
                else:
                    session.write(self._body(ctx, producer, session.offset))
                result = producer.result()
                break
            except RegistryError as exc:
                if exc.status == 413 and not chunked:
                    chunked = True  # a size-limited proxy: go on in chunks
                    continue
                raise
            except UnexpectedHTTPStatusError as exc:
                if exc.status == 413 and not chunked:
                    chunked = True
                    continue
                raise
            except (TransportError, BlobUploadUnknownError, OSError) as exc:
                resumes += 1
                if resumes > UPLOAD_RESUMES:
                    raise
                try:
                    session.status()  # where the registry stands: continue from there
                except (BlobUploadUnknownError, RegistryError):
                    if store is not None:
                        store.delete(_UPLOAD_NS, key)
                    raise exc from None
                log.info("resuming upload of %s at %d bytes", diff_id, session.offset)
        if result.diff_id != diff_id:
            raise DoNotRetry(DistributionError(f"layer {diff_id} rebuilt to {result.diff_id}"))
        try:
            session.commit(result.digest)
        except (DigestInvalidError, BlobUploadInvalidError):
            # the bytes the session held are not this layer's (they were damaged at the registry
            # or on the way): the session is of no use to any later attempt or run
            if store is not None:
                store.delete(_UPLOAD_NS, key)
            with contextlib.suppress(DistributionError, OSError):
                session.cancel()
            raise
        if store is not None:
            store.delete(_UPLOAD_NS, key)
        return self._pushed(ctx, diff_id, result.digest, result.size)

    def _write_chunks(self, ctx: TransferContext, session: BlobUpload, producer: LayerProducer, store: Any,
                      key: str) -> None:
        """PATCHes with Content-Range of at least ``OCI-Chunk-Min-Length`` (16 MiB by default);
        the location after each acknowledged chunk is saved, so a rerun continues after it."""
        size = max(session.chunk_min_length or 0, DEFAULT_CHUNK)
        buf = bytearray()
        for chunk in self._body(ctx, producer, session.offset):
            buf += chunk
            while len(buf) >= size:
                session.write_chunk(bytes(buf[:size]))
                del buf[:size]
                if store is not None:
                    store.set(_UPLOAD_NS, key, session.location.encode())
        if buf:
            session.write_chunk(bytes(buf))

    def _pushed(self, ctx: TransferContext, diff_id: Digest, digest: Digest, size: int) -> Descriptor:
        ctx.progress(Progress(self.id(), action="Pushed"))
        remote = Descriptor(self._media(), digest, size)
        with self.pusher.lock:
            self.pusher.remote_layers[diff_id] = remote
        if self.pusher.config.metadata is not None:
            try:
                self.pusher.config.metadata.tag_and_add(diff_id, self.hmac_key, V2Metadata(digest, self.repo_name.name))
                self.pusher.config.metadata.set_compression(digest, self.pusher.config.compression)
            except DistributionError as exc:
                raise DoNotRetry(exc) from exc
        return remote

    def _body(self, ctx: TransferContext, producer: LayerProducer, skip: int) -> Iterator[bytes]:
        """The compressed stream from byte ``skip`` on (the producer is deterministic). Progress is
        moby's: ``Pushing`` counts the diff's tar bytes consumed, against the diff's size."""
        progress = ProgressReader(ctx, self.id(), "Pushing", self.layer.size())
        for chunk in producer:
            ctx.check()
            progress.add(producer.tar_bytes - progress.current)
            if skip:
                chunk, skip = drop_prefix(chunk, skip)
                if not chunk:
                    continue
            yield chunk
        progress.finish()

