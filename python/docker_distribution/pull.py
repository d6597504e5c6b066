"""``pull()``: moby's ``distribution.Pull`` (moby distribution/pull.go, pull_v2.go), on the embedded store.

Endpoints are tried in order (mirrors first, for any registry); a tag is resolved to a
digest and the manifest fetched by digest (so it is verified) through the content store,
which keeps it with its distribution-source label. Indexes pick the platform as moby does
on Linux. Layers stream from the registry straight into the layer store (verify, decompress,
diffID and write in one pass), three at a time, while the config is fetched; their diffIDs
must match the config's ``rootfs``. Then the image is stored and tagged.

Beyond moby: a connection that drops mid-layer resumes with a Range request (and a server
that ignores Range is handled), and zstd layers are accepted.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import urllib3

from .config import Config, common_fields
from .descriptor import Descriptor
from .digest import Digest
from .errors import (
    AIModelNotSupportedError,
    AlreadyExistsError,
    DeprecatedSchema1ImageError,
    DigestMismatchError,
    DistributionError,
    DoNotRetry,
    FallbackError,
    ImageConfigPullError,
    InvalidOptionError,
    ManifestVerificationError,
    MaxDepthExceededError,
    ObjectNotFoundError,
    ReferenceNotFoundError,
    TransportError,
    UnavailableError,
    UnexpectedHTTPStatusError,
    UnsupportedMediaTypeError,
    retry_on_error,
    translate_pull_error,
)
from .fallback import resolve_auth, try_endpoints
from .manifest import (
    ImageIndex,
    ImageManifest,
    Schema1Manifest,
    detect_manifest_blob_media_type,
    parse_manifest,
)
from .mediatype import (
    AI_MODEL_PREFIX,
    DEFAULT_IMAGE_TYPES,
    DOCKER_PLUGIN_CONFIG,
    INDEX_TYPES,
    MANIFEST_TYPES,
    SUPPORTED_MEDIA_TYPE_PREFIXES,
)
from .metadata import V2Metadata, V2MetadataService
from .platform import (
    Platform,
    default_platform,
    filter_manifests,
    format_all,
    matches,
    normalize,
)
from .progress import Progress, ProgressOutput, ProgressReader
from .reference import Reference, as_reference
from .registry.client import Repository, connect, parse_content_range
from .registry.transport import NO_RETRY, RetryPolicy
from .registry.service import APIEndpoint
from .store import Store
from .store.content import ContentStore, ContentWriter
from .store.images import ImageStore, rootfs_diff_ids
from .store.layers import MAX_LAYER_DEPTH, PendingLayer, chain_of
from .store.references import ReferenceStore
from .xfer.download import LayerDownloadManager
from .xfer.transfer import TransferContext, drop_prefix

__all__ = ["ImagePullConfig", "NoMatchesError", "pull", "pull_all_tags", "pull_image"]

log = logging.getLogger(__name__)

DIST_SOURCE_LABEL = "containerd.io/distribution.source"
CONFIG_ATTEMPTS = 5  # moby's config blob retries, 250 ms doubling
CONFIG_BACKOFF = 0.25
#: The one retry budget of a layer blob: this many failed requests for it, counted across its
#: in-place resumes (Range from the bytes already applied), its parallel parts and moby's
#: download attempts, and the blob fails for good. A failure is a request refused, cut or
#: timed out mid-body, or answered 5xx; each is retried at once if it cut a body off, else
#: after the retry policy's backoff. (The transport's own retries are off for blob GETs; stacked
#: with the resumes and moby's five attempts they came to about 90 GETs for one bad blob.)
BLOB_FAILURE_BUDGET = 10
#: indexes nested deeper than this are refused (a hostile registry could nest them without end)
MAX_INDEX_DEPTH = 4
_CHUNK = 1 << 20


class NoMatchesError(DistributionError):
    """``no matching manifest for <platform> in the manifest list entries``."""

    def __init__(self, platform: Platform | None) -> None:
        p = platform if platform is not None and platform.os else default_platform()
        super().__init__(f"no matching manifest for {format_all(p)} in the manifest list entries")


class IndexTooDeepError(DistributionError):
    """Manifest lists nested deeper than :data:`MAX_INDEX_DEPTH`."""


class InvalidManifestClassError(DistributionError):
    def __init__(self, media_type: str, cls: str) -> None:
        super().__init__(f'Encountered remote "{media_type}"({cls}) when fetching')


@dataclass(frozen=True, kw_only=True)
class ImagePullConfig(Config):
    """moby's ``ImagePullConfig``: the stores to pull into, plus pull options."""

    image_store: ImageStore
    reference_store: ReferenceStore | None = None
    metadata: V2MetadataService | None = None
    download_manager: LayerDownloadManager
    schema2_types: Sequence[str] = ()
    platform: Platform | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    #: keep each layer's compressed bytes as a content-store ingest while it downloads, so a pull
    #: that is killed and run again continues where it stopped (beyond moby)
    resumable: bool = True
    #: fetch a blob of at least ``parallel_range_min`` bytes as this many Range requests at once
    #: (beyond moby; 1 = one stream, as moby). Pays where one connection is slower than the link
    parallel_ranges: int = 1
    parallel_range_min: int = 32 << 20

    def __post_init__(self) -> None:
        if self.parallel_ranges < 1:
            raise InvalidOptionError(f"invalid parallel ranges: {self.parallel_ranges}: use 1 (one stream) or more")


def pull(ref: Reference | str, config: ImagePullConfig, local: ContentStore) -> None:
    """moby's ``distribution.Pull``: pull ``ref`` (a tag, a digest, or a name for all its tags)
    into the stores named in ``config``, with manifests through ``local``."""
    _pull(as_reference(ref), config, local)


def _pull(ref: Reference, config: ImagePullConfig, local: ContentStore) -> dict[Reference, Digest]:
    """:func:`pull`, returning each reference pulled with its image ID."""
    auth = resolve_auth(config, ref)

    def attempt(endpoint: APIEndpoint, repo_name: Reference) -> dict[Reference, Digest]:
        repo = connect(repo_name, endpoint, auth_config=auth, actions=("pull",), meta_headers=config.meta_headers,
                       retry=config.retry)
        return _Puller(config, local, repo).pull(ref)

    pulled = try_endpoints(ref, config, "pull", attempt, translate=lambda err: translate_pull_error(err, ref))
    if config.image_event_logger is not None:
        config.image_event_logger(ref.familiar, ref.familiar_name, "pull")
    return pulled


def _pull_into(ref: Reference, store: Store | None, config: Config | None, platform: Platform | None,
               max_concurrent_downloads: int, progress_output: ProgressOutput | None,
               parallel_ranges: int) -> tuple[dict[Reference, Digest], ImagePullConfig, Store]:
    store = store if store is not None else Store()
    base = config or Config()
    cfg = ImagePullConfig(
        **common_fields(base, progress_output=progress_output),
        image_store=store.images, reference_store=store.references, metadata=store.v2_metadata,
        download_manager=LayerDownloadManager(store.layers, max_concurrent_downloads), platform=platform,
        parallel_ranges=parallel_ranges,
    )
    with store.lease():  # a prune elsewhere waits: nothing names the new layers until the tag
        return _pull(ref, cfg, store.content), cfg, store


def pull_image(ref: Reference | str, store: Store | None = None, *, config: Config | None = None,
               platform: Platform | None = None, max_concurrent_downloads: int = 3,
               progress_output: ProgressOutput | None = None, parallel_ranges: int = 1) -> Digest:
    """``docker pull``: pull one image into the embedded store (the default root unless ``store``
    is given) and return its image ID. ``ref`` is a :class:`Reference` or a string as docker reads
    it; a name without a tag or digest means ``:latest``. :func:`pull_all_tags` pulls every tag."""
    r = as_reference(ref).tag_name_only()
    pulled, cfg, store = _pull_into(r, store, config, platform, max_concurrent_downloads, progress_output,
                                    parallel_ranges)
    image_id = pulled[r]
    if platform is not None:
        _warn_platform_mismatch(r, store.images.get(image_id), platform, cfg.progress_output)
    return image_id


def pull_all_tags(ref: Reference | str, store: Store | None = None, *, config: Config | None = None,
                  platform: Platform | None = None, max_concurrent_downloads: int = 3,
                  progress_output: ProgressOutput | None = None,
                  parallel_ranges: int = 1) -> dict[Reference, Digest]:
    """``docker pull --all-tags``: every tag of ``ref``'s repository (``ref`` names a repository,
    without tag or digest); returns each tag's reference with its image ID."""
    r = as_reference(ref)
    if not r.is_name_only:
        raise InvalidOptionError("tag can't be used with --all-tags/-a")
    return _pull_into(r, store, config, platform, max_concurrent_downloads, progress_output, parallel_ranges)[0]


def _warn_platform_mismatch(ref: Reference, config: bytes, wanted: Platform, out: ProgressOutput) -> None:
    """The daemon's warning after a ``--platform`` pull of a single-platform image of another
    platform (pulled anyway, for compatibility, as docker does)."""
    try:
        doc = json.loads(config)
    except ValueError:
        return
    actual = normalize(Platform.from_json(doc if isinstance(doc, dict) else None) or Platform())
    if matches(wanted, actual):
        return
    out.write_progress(Progress(message=f"WARNING: image with reference {ref} was found but does not match the "
                                        f"specified platform: wanted {format_all(normalize(wanted))}, "
                                        f"actual: {format_all(actual)}"))


class _Puller:
    def __init__(self, config: ImagePullConfig, local: ContentStore, repo: Repository) -> None:
        self.config = config
        self.local = local
        self.repo = repo
        self.out = config.progress_output

    def pull(self, ref: Reference) -> dict[Reference, Digest]:
        """Pull ``ref`` (every tag for a name alone); returns each reference pulled with its image ID."""
        pulled: dict[Reference, Digest] = {}
        if ref.tag is not None or ref.digest is not None:
            downloaded = self.pull_tag(ref, pulled)
        else:
            downloaded = False
            for tag in self.repo.tags():
                try:
                    downloaded = self.pull_tag(ref.with_tag(tag), pulled) or downloaded
                except FallbackError as exc:
                    raise exc.err from exc  # no endpoint fallback in the middle of pull-all-tags
        status = "Downloaded newer image" if downloaded else "Image is up to date"
        self.out.write_progress(Progress(message=f"Status: {status} for {ref.familiar}"))
        return pulled

    # --- one tag ---------------------------------------------------------------------------

    def pull_tag(self, ref: Reference, pulled: dict[Reference, Digest]) -> bool:
        """Pull one tag or digest, adding it to ``pulled``; True when it was not already stored
        under ``ref``."""
        if ref.digest is not None:
            desc = Descriptor("", ref.digest, 0)
            tag_or_digest = str(ref)
        else:
            assert ref.tag is not None
            desc = self.repo.resolve(ref.tag)
            tag_or_digest = ref.tag
        manifest = self._get_manifest(desc, ref)
        if isinstance(manifest, ImageManifest) and manifest.media_type == "application/vnd.docker.distribution.manifest.v2+json":
            self._validate_media_type(manifest.config.media_type)
        self.out.write_progress(Progress(tag_or_digest, message=f"Pulling from {self.repo.path}"))
        if isinstance(manifest, Schema1Manifest):
            raise DeprecatedSchema1ImageError(ref)
        if isinstance(manifest, ImageManifest):
            image_id, manifest_digest = self._pull_image_manifest(ref, manifest, self.config.platform)
        elif isinstance(manifest, ImageIndex):
            image_id, manifest_digest = self._pull_index(ref, manifest)
        else:  # pragma: no cover
            raise DistributionError("unsupported manifest format")
        self.out.write_progress(Progress(message=f"Digest: {manifest_digest}"))
        pulled[ref] = image_id
        store = self.config.reference_store
        if store is None:
            return True
        try:
            old = store.get(ref)
        except ReferenceNotFoundError:
            old = None
        if old == image_id:
            self._add_digest_reference(ref, manifest_digest, image_id)
            return False
        if ref.digest is not None:
            store.add_digest(ref, image_id, force=True)
        else:
            self._add_digest_reference(ref, manifest_digest, image_id)
            store.add_tag(ref, image_id, force=True)
        return True

    def _add_digest_reference(self, ref: Reference, manifest_digest: Digest, image_id: Digest) -> None:
        store = self.config.reference_store
        assert store is not None
        digest_ref = ref.trim().with_digest(manifest_digest)
        try:
            existing = store.get(digest_ref)
        except ReferenceNotFoundError:
            store.add_digest(digest_ref, image_id, force=True)
            return
        if existing != image_id:
            # moby writes this to the daemon log: a note for --debug, not an error of the pull
            log.info("Image ID for digest %s changed from %s to %s, cannot update", manifest_digest, existing, image_id)

    def _validate_media_type(self, mt: str) -> None:
        allowed = self.config.schema2_types or DEFAULT_IMAGE_TYPES
        if mt not in allowed:
            cls = "image" if mt in DEFAULT_IMAGE_TYPES else "plugin" if mt == DOCKER_PLUGIN_CONFIG else "unknown"
            raise InvalidManifestClassError(mt, cls)

    # --- manifests through the content store (moby distribution/manifest.go) -----------------------------------

    def _label_key(self) -> str:
        return f"{DIST_SOURCE_LABEL}.{self.repo.named.domain or 'docker.io'}"

    def _get_manifest(self, desc: Descriptor, ref: Reference) -> ImageManifest | ImageIndex | Schema1Manifest:
        mt = desc.media_type
        if not mt:
            try:
                mt = detect_manifest_blob_media_type(self.local.read(desc.digest))
            except ObjectNotFoundError:
                pass
            except DistributionError as exc:
                log.warning("Error looking up media type of content: %s", exc)
        kind = "index" if mt in INDEX_TYPES else "manifest" if mt in MANIFEST_TYPES else "unknown"
        key = f"{kind}-{desc.digest}"
        writer = None
        try:
            writer = self.local.writer(ref=key, descriptor=Descriptor(mt, desc.digest, desc.size))
        except AlreadyExistsError:
            try:
                return self._get_local(desc.digest, mt, ref)
            except (DistributionError, ValueError) as exc:
                log.debug("The stored copy of manifest %s is not usable, fetching it: %s", desc.digest, exc)
        except DistributionError as exc:
            log.debug("local content store unavailable for %s: %s", desc.digest, exc)
        try:
            raw = self.repo.get_manifest(str(desc.digest))
        except BaseException:
            if writer is not None:
                writer.close()
                try:
                    self.local.abort(key)
                except DistributionError as exc:
                    log.warning("Error aborting content ingest: %s", exc)
            raise
        if writer is not None:
            try:
                writer.truncate(0)
                writer.write(raw.payload)
                writer.commit(len(raw.payload), desc.digest, {self._label_key(): self.repo.path})
            except (DistributionError, OSError) as exc:
                log.warning("Error persisting manifest: %s", exc)
                writer.close()
                try:
                    self.local.abort(key)
                except DistributionError as abort_exc:
                    log.debug("Error aborting content ingest %s: %s", key, abort_exc)
        return parse_manifest(raw.media_type, raw.payload, raw.digest)

    def _get_local(self, digest: Digest, mt: str, ref: Reference) -> ImageManifest | ImageIndex | Schema1Manifest:
        data = self.local.read(digest)
        info = self.local.info(digest)
        label = self._label_key()
        sources = [s for s in info.labels.get(label, "").split(",") if s]
        if ref.digest is not None and self.repo.path not in sources:
            if not self.repo.manifest_exists(digest):
                raise ObjectNotFoundError(f"manifest {digest} not found")
        if self.repo.path not in sources:
            new = dict(info.labels)
            new[label] = ",".join(sorted(set(sources) | {self.repo.path}))
            try:
                self.local.update(type(info)(info.digest, info.size, info.created_at, info.updated_at, new),
                                  f"labels.{label}")
            except DistributionError as exc:
                log.warning("Error updating distribution source label: %s", exc)
        digest.verify_bytes(data)
        return parse_manifest(mt or detect_manifest_blob_media_type(data), data, digest)

    # --- images ----------------------------------------------------------------------------

    def _pull_image_manifest(self, ref: Reference, m: ImageManifest, platform: Platform | None) -> tuple[Digest, Digest]:
        if ref.digest is not None:
            want = ref.digest
            if (got := Digest.from_bytes(m.raw, want.algorithm)) != want:
                raise ManifestVerificationError(str(want), str(got))
            manifest_digest = want
        else:
            manifest_digest = Digest.from_bytes(m.raw)
        return self._pull_layers(m.config, m.layers, platform), manifest_digest

    def _pull_index(self, ref: Reference, index: ImageIndex, depth: int = 0) -> tuple[Digest, Digest]:
        if depth >= MAX_INDEX_DEPTH:
            raise IndexTooDeepError(f"manifest lists nested more than {MAX_INDEX_DEPTH} deep")
        if ref.digest is not None:
            want = ref.digest
            if (got := Digest.from_bytes(index.raw, want.algorithm)) != want:
                raise ManifestVerificationError(str(want), str(got))
        list_digest = index.digest
        matches = filter_manifests(index.manifests, self.config.platform)
        for match in matches:
            child = self._get_manifest(match, ref)
            child_ref = ref.trim().with_digest(match.digest)
            if isinstance(child, Schema1Manifest):
                raise DeprecatedSchema1ImageError(ref)
            if isinstance(child, ImageManifest):
                p = Platform.from_json(match.platform)
                image_id, _ = self._pull_image_manifest(child_ref, child, p)
                return image_id, list_digest
            if isinstance(child, ImageIndex):
                try:
                    image_id, _ = self._pull_index(child_ref, child, depth + 1)
                except (NoMatchesError, IndexTooDeepError):
                    raise
                except DistributionError as exc:
                    log.debug("skipping nested index %s: %s", match.digest, exc)
                    continue
                return image_id, list_digest
        raise NoMatchesError(self.config.platform)

    def _pull_layers(self, target: Descriptor, layers: Sequence[Descriptor], platform: Platform | None) -> Digest:
        images = self.config.image_store
        if self._stored_whole(target.digest):
            return target.digest
        _check_supported_media_type(target.media_type)
        for d in layers:
            _check_supported_media_type(d.media_type)
        if len(layers) > MAX_LAYER_DEPTH:  # the layer store would refuse the 126th: refuse before any download
            raise MaxDepthExceededError()
        if platform is not None and platform.os and normalize(platform).os != default_platform().os:
            raise DistributionError("operating system is not supported")
        local = self.local if self.config.resumable else None
        ranges = (self.config.parallel_ranges, self.config.parallel_range_min)
        descriptors = [_LayerDescriptor(d, self.repo, self.config.metadata, self.out, local, ranges, self.config.retry)
                       for d in layers]

        config_result: dict[str, Any] = {}
        cancel = threading.Event()

        def fetch_config() -> None:
            try:
                config_result["bytes"] = _retry(lambda: self._fetch_config(target.digest), cancel)
            except BaseException as exc:  # handed to the pulling thread below
                config_result["error"] = ImageConfigPullError(exc)
                cancel.set()

        fetcher = threading.Thread(target=fetch_config, name="config fetch", daemon=True)
        fetcher.start()
        release = None
        layer_error: BaseException | None = None
        diff_ids: list[Digest] = []
        try:
            diff_ids, release = self.config.download_manager.download([], descriptors, self.out, cancel)
        except BaseException as exc:
            layer_error = exc
        fetcher.join()
        try:
            if "error" in config_result:
                raise config_result["error"]
            config = config_result["bytes"]
            rootfs = _config_rootfs(config)
            if layer_error is not None:
                raise layer_error
            if len(diff_ids) != len(rootfs) or any(a != b for a, b in zip(diff_ids, rootfs)):
                raise DistributionError("layers from manifest don't match image configuration")
            return images.put(config)
        finally:
            if release is not None:
                release()

    def _stored_whole(self, image_id: Digest) -> bool:
        """Whether the image's config and every one of its layer records read back verified. If
        not, the pull goes on as if the image were absent, and verified copies replace what was
        damaged (moby would call the image up to date and leave it unusable)."""
        try:
            cid = chain_of(self.config.image_store.diff_ids(image_id))
            if cid is not None:
                self.config.download_manager.layer_store.chain(cid)
        except DistributionError:  # absent, or damaged
            return False
        return True

    def _fetch_config(self, digest: Digest) -> bytes:
        try:
            return self.repo.get_blob(digest, retry=NO_RETRY)  # moby's five attempts are the retries
        except DigestMismatchError:
            raise DoNotRetry(DistributionError(f"image config verification failed for digest {digest}")) from None


def _config_rootfs(config: bytes) -> list[Digest]:
    """The config's ``rootfs.diff_ids``, after moby's OS check."""
    try:
        doc = json.loads(config)
    except ValueError:
        raise DistributionError("invalid rootfs in image configuration") from None
    os_name = (doc.get("os") if isinstance(doc, dict) else None) or default_platform().os
    if not isinstance(os_name, str):
        raise DistributionError("invalid rootfs in image configuration")
    if os_name.lower() != default_platform().os:
        raise DistributionError(f'image operating system "{os_name}" cannot be used on this platform: '
                                "operating system is not supported")
    return rootfs_diff_ids(doc)


def _check_supported_media_type(mt: str) -> None:
    low = mt.lower()
    if low.startswith(AI_MODEL_PREFIX):
        raise AIModelNotSupportedError()
    for p in SUPPORTED_MEDIA_TYPE_PREFIXES:
        if low == p or low.startswith(p + "."):
            return
    raise UnsupportedMediaTypeError(mt)


def _retry(fn: Any, cancel: threading.Event) -> bytes:
    """moby's ``retry``: 5 attempts, 250 ms doubling, stopping at a DoNotRetry. Only errors about
    the registry, the network or the disk are retried; anything else is raised at once."""
    delay = CONFIG_BACKOFF
    attempt = 0
    while True:
        try:
            return bytes(fn())
        except (DistributionError, OSError) as exc:  # a cancel, Ctrl-C or a bug is not retried
            err = retry_on_error(exc)
            attempt += 1
            if isinstance(err, DoNotRetry):
                raise DistributionError(f"download failed after attempts={attempt}: {err}") from exc
            if attempt >= CONFIG_ATTEMPTS:
                raise DistributionError(f"download failed after attempts={attempt + 1}: {err}") from exc
        if cancel.wait(delay):
            raise DistributionError("context canceled")
        delay *= 2


#: what a blob GET may fail with and still be worth another request: no answer, a body cut off,
#: a 5xx. (429 is not: moby does not retry a rate-limited blob.)
_RETRIED = (TransportError, UnexpectedHTTPStatusError, UnavailableError)


class _FailureBudget:
    """:data:`BLOB_FAILURE_BUDGET` for one blob, shared by the threads that fetch its parts."""

    def __init__(self, digest: Digest, total: int, retry: RetryPolicy) -> None:
        self.digest, self.total, self.retry = digest, total, retry
        self.failures = 0
        self._lock = threading.Lock()

    def spend(self, err: DistributionError, ctx: TransferContext | None, *, progressed: bool) -> None:
        """Count one failed request; :class:`DoNotRetry` once the budget is spent, else wait the
        backoff (not after a body that brought new bytes before it broke off)."""
        with self._lock:
            self.failures += 1
            n = self.failures
        if n > self.total:
            log.info("giving up on %s after %d failed requests: %s", self.digest, n, err)
            raise DoNotRetry(err) from err
        log.info("request %d for %s failed, retrying: %s", n, self.digest, err)
        if not progressed:
            delay = min(self.retry.backoff * 2 ** (n - 1), self.retry.max_backoff)
            if ctx is not None:
                ctx.sleep(delay)
            else:
                time.sleep(delay)


class _LayerDescriptor:
    """One layer of a pull: streams its blob into a pending layer, resuming with Range, within
    the blob's one failure budget."""

    def __init__(self, desc: Descriptor, repo: Repository, metadata: V2MetadataService | None, out: ProgressOutput,
                 local: ContentStore | None = None, ranges: tuple[int, int] = (1, 0),
                 retry: RetryPolicy | None = None) -> None:
        self.desc = desc
        self.repo = repo
        self.metadata = metadata
        self.out = out
        self.local = local
        self.ranges, self.range_min = ranges
        self.budget = _FailureBudget(desc.digest, BLOB_FAILURE_BUDGET, retry or RetryPolicy())

    def key(self) -> str:
        return f"v2:{self.desc.digest}"

    def expected(self) -> tuple[Digest | None, int | None]:
        return self.desc.digest, self.desc.size or None

    def id(self) -> str:
        return self.desc.digest.short_id

    def diff_id(self) -> Digest:
        if self.metadata is None:
            raise ObjectNotFoundError("no metadata")
        return self.metadata.get_diff_id(self.desc.digest)

    def registered(self, diff_id: Digest) -> None:
        if self.metadata is not None:
            try:
                self.metadata.add(diff_id, V2Metadata(self.desc.digest, self.repo.named.name))
                self.metadata.set_compression(self.desc.digest, "zstd" if "zstd" in self.desc.media_type else "gzip")
            except DistributionError as exc:
                # the layer is in; only a later push's existence checks and mounts miss this record
                log.debug("Failed to record the V2 metadata of %s (%s): %s", self.desc.digest, diff_id, exc)

    def _open_ingest(self) -> ContentWriter | None:
        if self.local is None:
            return None
        try:
            return self.local.writer(ref=f"pull-layer-{self.desc.digest}", total=self.desc.size, hashing=False)
        except DistributionError as exc:  # another process is fetching this blob: no resumption record for us
            log.debug("No resumable ingest for %s: %s", self.desc.digest, exc)
            return None

    def download(self, ctx: TransferContext, pending: PendingLayer) -> None:
        size = self.desc.size
        progress = ProgressReader(ctx, self.id(), "Downloading", size)
        ingest = self._open_ingest()
        resumed = 0
        try:
            if ingest is not None and ingest.offset:
                # replay what an earlier attempt, or a killed process, saved; then continue remotely
                resumed = ingest.offset
                with open(ingest.data_path, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        pending.feed(chunk)
                        progress.add(len(chunk))
                log.info("attempting to resume download of %s from %d bytes", self.desc.digest, resumed)
            if self.local is not None and self.ranges > 1 and self.desc.size >= self.range_min:
                if resumed:
                    self._discard_parts()  # a killed run's parts: the replayed prefix is continued in one stream
                else:
                    self._parallel(ctx, pending, progress, ingest)  # reuses and then discards any leftover parts
            self._stream_to_end(ctx, pending, progress, ingest, None)
            ctx.progress(Progress(self.id(), action="Verifying Checksum"))
            try:
                pending.complete()
            except DigestMismatchError as exc:
                if ingest is not None:
                    ingest.discard()
                    ingest = None
                if resumed:  # the saved bytes may be what was wrong: a fresh attempt can succeed
                    raise DistributionError(f"filesystem layer verification failed for digest {self.desc.digest}") from exc
                raise DoNotRetry(exc) from exc
            if ingest is not None:
                ingest.discard()
                ingest = None
        finally:
            if ingest is not None:
                ingest.close()  # keep the bytes: the next attempt (or run) resumes from them
        ctx.progress(Progress(self.id(), action="Download complete"))
        ctx.progress(Progress(self.id(), action="Extracting", current=size, total=size))

    def _stream_to_end(self, ctx: TransferContext, pending: PendingLayer, progress: ProgressReader,
                       ingest: ContentWriter | None, end: int | None) -> None:
        """Feed the blob up to ``end`` (None: its end), resuming a broken stream with Range."""
        target = end if end is not None else (self.desc.size or None)
        while target is None or pending.fed < target:
            ctx.check()
            before = pending.fed
            try:
                self._stream(ctx, pending, progress, ingest, end)
                break
            except _RETRIED as exc:
                if self.desc.size and pending.fed >= self.desc.size:
                    break  # every promised byte arrived before the break: verification decides
                self.budget.spend(exc, ctx, progressed=pending.fed > before)
                log.info("attempting to resume download of %s from %d bytes", self.desc.digest, pending.fed)

    def _parallel(self, ctx: TransferContext, pending: PendingLayer, progress: ProgressReader,
                  ingest: ContentWriter | None) -> None:
        """The first part streams into the layer while the others arrive side by side as
        Range requests into content-store ingests; each is then fed in order. A part that
        fails (a server without Range, say) leaves the rest to the sequential stream."""
        from concurrent.futures import ThreadPoolExecutor

        assert self.local is not None
        size = self.desc.size
        step = -(-size // self.ranges)
        bounds = [(i, min(i + step, size)) for i in range(0, size, step)]
        stop = threading.Event()
        parts: list[ContentWriter] = []
        try:
            for i in range(1, len(bounds)):
                parts.append(self.local.writer(ref=self._part_ref(i), hashing=False))
        except DistributionError as exc:  # another process holds a part: one stream it is
            log.info("parallel ranges of %s: %s", self.desc.digest, exc)
            for w in parts:
                w.discard()
            return
        try:
            with ThreadPoolExecutor(len(parts), thread_name_prefix="dd-range") as pool:
                futures = [pool.submit(self._fetch_part, w, start, end, stop)
                           for w, (start, end) in zip(parts, bounds[1:])]
                try:
                    self._stream_to_end(ctx, pending, progress, ingest, bounds[0][1])
                    for fut, w, (start, end) in zip(futures, parts, bounds[1:]):
                        if not fut.result() or pending.fed != start:
                            break
                        with open(w.data_path, "rb") as f:
                            while chunk := f.read(_CHUNK):
                                ctx.check()
                                _feed(chunk, pending, progress, ingest)
                finally:
                    stop.set()
        finally:
            for w in parts:
                w.discard()

    def _part_ref(self, index: int) -> str:
        return f"pull-layer-{self.desc.digest}-part{index}"

    def _discard_parts(self) -> None:
        assert self.local is not None
        for i in range(1, self.ranges):
            try:
                self.local.writer(ref=self._part_ref(i), hashing=False).discard()
            except DistributionError:
                pass  # in use by another process: its owner discards it

    def _fetch_part(self, w: ContentWriter, start: int, end: int, stop: threading.Event) -> bool:
        """Bytes ``start``..``end`` of the blob into ``w`` (resuming where it stands); False when
        the server will not serve the range or the part cannot be had."""
        while True:
            have = start + w.offset
            if have >= end:
                return True
            try:
                with self.repo.open_blob(self.desc.digest, offset=have, length=end - have, retry=NO_RETRY) as resp:
                    if resp.status_code != 206:
                        return False
                    parse_content_range(resp.headers.get("Content-Range"), have, end)
                    for chunk in _received(resp, self.desc.digest):
                        if stop.is_set():
                            return False
                        w.write(chunk[: end - start - w.offset])  # a disk error here ends the pull
                        if start + w.offset >= end:
                            break
            except _RETRIED as exc:  # refused, or a broken stream: resume the part, within the budget
                log.info("range %d-%d of %s: %s", start, end, self.desc.digest, exc)
                try:
                    self.budget.spend(exc, None, progressed=start + w.offset > have)
                except DoNotRetry:
                    return False  # the sequential stream meets the spent budget and reports it
            except DistributionError as exc:
                log.info("range %d-%d of %s: %s", start, end, self.desc.digest, exc)
                return False
            finally:
                w.flush()  # the feeding thread reads the part from its file

    def _stream(self, ctx: TransferContext, pending: PendingLayer, progress: ProgressReader,
                ingest: ContentWriter | None, end: int | None = None) -> None:
        """Feed the blob from what ``pending`` has on, up to ``end``. A broken stream raises
        :class:`TransportError` after feeding what arrived, so the caller resumes from there."""
        offset = pending.fed
        resp = self.repo.open_blob(self.desc.digest, offset=offset, length=None if end is None else end - offset,
                                   retry=NO_RETRY)  # failures count against the blob's budget instead
        with resp:
            skip = 0
            if offset:
                if resp.status_code == 206:
                    parse_content_range(resp.headers.get("Content-Range"), offset, end)
                else:
                    skip = offset  # the server ignored Range: drop what we already have
            for chunk in _received(resp, self.desc.digest):
                ctx.check()
                if skip:
                    chunk, skip = drop_prefix(chunk, skip)
                    if not chunk:
                        continue
                if end is not None:
                    chunk = chunk[: end - pending.fed]  # a server ignoring the range sends on
                _feed(chunk, pending, progress, ingest)
                if end is not None and pending.fed >= end:
                    break
            offset = pending.fed
            limit = end or self.desc.size
            if limit and offset < limit:
                raise TransportError("GET", str(self.desc.digest), "unexpected EOF")
        progress.finish()


#: what a response body's read raises when the connection breaks: urllib3's errors (a reset, a
#: timeout, a body shorter than announced), http.client's, and the socket's own. Anything else
#: (a TypeError, say) is a bug, not a network fault, and is not resumed with Range.
_BROKEN_STREAM = (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError)


def _received(resp: Any, digest: Digest) -> Iterator[bytes]:
    """A blob response's raw chunks. A failed read is a :class:`TransportError` (the caller resumes
    with Range); an error while the caller handles a chunk (a full disk, a bad layer) stays what it is."""
    chunks = resp.raw.stream(_CHUNK, decode_content=False)
    while True:
        try:
            chunk = next(chunks)
        except StopIteration:
            return
        except _BROKEN_STREAM as exc:
            raise TransportError("GET", str(digest), type(exc).__name__) from exc
        yield chunk


def _feed(chunk: bytes, pending: PendingLayer, progress: ProgressReader, ingest: ContentWriter | None) -> None:
    """Blob bytes in order: to the layer being applied, to the resumable ingest, to the bar."""
    pending.feed(chunk)
    if ingest is not None:
        ingest.write(chunk)
    progress.add(len(chunk))
