"""moby's TestManifestStore (moby distribution/manifest_test.go): manifests through the local content store."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import docker_distribution as dd
import pytest
from docker_distribution import errors as E
from docker_distribution.pull import _Puller
from docker_distribution.reference import parse_normalized_named
from docker_distribution.registry.client import RawManifest
from docker_distribution.store import Store

MANIFEST = json.dumps({"schemaVersion": 2, "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                                       "digest": str(dd.digest_bytes(b"{}")), "size": 2},
                       "layers": []}).encode()
OCI = "application/vnd.oci.image.manifest.v1+json"
DIGEST = dd.digest_bytes(MANIFEST)
LABEL = "containerd.io/distribution.source.docker.io"


class FakeRemote:
    def __init__(self, present: bool = True) -> None:
        self.present = present
        self.gets = 0
        self.named = parse_normalized_named("foo/bar")
        self.path = "foo/bar"

    def get_manifest(self, ref: str) -> RawManifest:
        self.gets += 1
        if not self.present:
            raise E.ManifestUnknownError(detail=ref)
        return RawManifest(OCI, DIGEST, MANIFEST)

    def manifest_exists(self, digest: dd.Digest) -> bool:
        return self.present


def _puller(store: Store, remote: FakeRemote) -> _Puller:
    p = _Puller.__new__(_Puller)
    p.local = store.content  # type: ignore[misc]
    p.repo = remote  # type: ignore[assignment]
    p.config = SimpleNamespace(platform=None)  # type: ignore[assignment]
    p.out = None  # type: ignore[assignment]
    return p


def _desc(mt: str = OCI) -> dd.Descriptor:
    return dd.Descriptor(mt, DIGEST, len(MANIFEST))


def _no_ingest(store: Store) -> None:
    assert list(store.content.list_statuses()) == []


REF = parse_normalized_named("foo/bar")


def test_no_remote_or_local(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with pytest.raises(E.ManifestUnknownError):
        _puller(store, FakeRemote(present=False))._get_manifest(_desc(), REF)
    _no_ingest(store)


def test_no_local_cache_then_served_locally(tmp_path: Path) -> None:
    store, remote = Store(tmp_path), FakeRemote()
    m = _puller(store, remote)._get_manifest(_desc(), REF)
    assert m.digest == DIGEST and remote.gets == 1
    assert store.content.read(DIGEST) == MANIFEST
    assert store.content.info(DIGEST).labels == {LABEL: "foo/bar"}
    _puller(store, remote)._get_manifest(_desc(), REF)
    assert remote.gets == 1
    digested = REF.with_digest(DIGEST)
    _puller(store, remote)._get_manifest(_desc(), digested)
    assert remote.gets == 1
    _no_ingest(store)


def test_with_local_cache_and_media_type_detection(tmp_path: Path) -> None:
    store, remote = Store(tmp_path), FakeRemote()
    with store.content.writer(ref="pre") as w:
        w.write(MANIFEST)
        w.commit(len(MANIFEST), DIGEST, {LABEL: "foo/bar"})
    _puller(store, remote)._get_manifest(_desc(), REF)
    _puller(store, remote)._get_manifest(_desc(""), REF)  # no media type: detected from the content
    assert remote.gets == 0
    _no_ingest(store)


def test_unknown_media_type_without_cache_goes_remote(tmp_path: Path) -> None:
    store, remote = Store(tmp_path), FakeRemote()
    _puller(store, remote)._get_manifest(_desc(""), REF)
    assert remote.gets == 1
    _no_ingest(store)


@pytest.mark.parametrize("where", ["writer", "commit"])
def test_errors_persisting_do_not_fail_the_pull(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    store, remote = Store(tmp_path), FakeRemote()
    if where == "writer":
        monkeypatch.setattr(store.content, "writer", lambda **kw: (_ for _ in ()).throw(E.StoreError("no writer")))
    else:
        from docker_distribution.store.content import ContentWriter

        monkeypatch.setattr(ContentWriter, "commit", lambda self, *a, **k: (_ for _ in ()).throw(E.StoreError("no commit")))
    m = _puller(store, remote)._get_manifest(_desc(), REF)
    assert m.digest == DIGEST and remote.gets == 1
    with pytest.raises(E.ObjectNotFoundError):
        store.content.info(DIGEST)
    _no_ingest(store)
