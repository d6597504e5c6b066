"""Hostile registries, secrets, concurrency and crash loops (issue #9)."""

from __future__ import annotations

import errno
import gzip
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import docker_distribution as dd
import pytest
from bed.proxy import Fault, FaultProxy
from bed.registry import Registry
from bed.scripted import Reply, Request, ScriptedServer
from conftest import BASIC_USERS, TokenBed
from docker_distribution import errors as E
from docker_distribution.pull import pull_image
from docker_distribution.push import push_image
from docker_distribution.registry.auth import AuthConfig
from docker_distribution.store import Store
from helpers import crash_loop
from oci import image_manifest, skopeo_push, write_layout

ANON = dd.Config(auth_config=AuthConfig(), retry=dd.RetryPolicy(attempts=2, backoff=0.01))
OCI_M = "application/vnd.oci.image.manifest.v1+json"
OCI_I = "application/vnd.oci.image.index.v1+json"


def _layer_tgz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for n, d in files.items():
            info = tarfile.TarInfo(n)
            info.size = len(d)
            t.addfile(info, io.BytesIO(d))
    return gzip.compress(buf.getvalue(), mtime=0)


class Hostile:
    """A scripted registry serving one synthetic image, which each test bends."""

    def __init__(self, server: ScriptedServer) -> None:
        self.server = server
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, tuple[str, bytes]] = {}
        layer = _layer_tgz({"hello": b"world"})
        self.layer_digest = self.add_blob(layer)
        self.diff_id = str(dd.digest_bytes(gzip.decompress(layer)))
        self.config_media_type = "application/vnd.oci.image.config.v1+json"
        self.layer_media_type = "application/vnd.oci.image.layer.v1.tar+gzip"
        server.route("/v2/x/manifests/", self._manifest)
        server.route("/v2/x/blobs/", self._blob)
        server.route("/v2/", lambda r: Reply(200, {}))

    def add_blob(self, data: bytes) -> str:
        d = str(dd.digest_bytes(data))
        self.blobs[d] = data
        return d

    def image(self, diff_ids: list[str] | None = None) -> tuple[str, bytes]:
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": diff_ids or [self.diff_id]}}).encode()
        cd = self.add_blob(config)
        m = json.dumps({"schemaVersion": 2, "mediaType": OCI_M,
                        "config": {"mediaType": self.config_media_type, "digest": cd, "size": len(config)},
                        "layers": [{"mediaType": self.layer_media_type, "digest": self.layer_digest,
                                    "size": len(self.blobs[self.layer_digest])}]}).encode()
        return OCI_M, m

    def serve(self, tag: str, content_type: str, body: bytes, *, digest_header: str | None = None) -> None:
        self.manifests[tag] = (content_type, body)
        self.manifests[str(dd.digest_bytes(body))] = (content_type, body)
        if digest_header:
            self.manifests[tag + "#digest"] = ("", digest_header.encode())
            self.manifests[digest_header] = (content_type, body)  # and serves the bytes under the lie

    def _manifest(self, req: Request) -> Reply:
        key = req.path.rsplit("/", 1)[1]
        if key not in self.manifests:
            return Reply(404, {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": key}]})
        ct, body = self.manifests[key]
        digest = self.manifests.get(key + "#digest", ("", str(dd.digest_bytes(body)).encode()))[1].decode()
        return Reply(200, body, {"Content-Type": ct, "Docker-Content-Digest": digest})

    def _blob(self, req: Request) -> Reply:
        d = req.path.rsplit("/", 1)[1]
        if d not in self.blobs:
            return Reply(404, {"errors": [{"code": "BLOB_UNKNOWN", "message": "blob unknown", "detail": d}]})
        return Reply(200, self.blobs[d], {"Content-Type": "application/octet-stream"})


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    s = ScriptedServer()
    yield Hostile(s)
    s.stop()


def _pull(h: Hostile, tag: str, tmp: Path) -> Store:
    store = Store(tmp / "store")
    pull_image(dd.parse_normalized_named(f"{h.server.host}/x:{tag}"), store, config=ANON)
    return store


def _assert_clean(tmp: Path) -> None:
    store = Store(tmp / "store")
    assert store.references.all() == {} and store.images.list() == [] and store.leftovers() == []


def test_the_synthetic_image_pulls(hostile: Hostile, tmp_path: Path) -> None:
    hostile.serve("ok", *hostile.image())
    store = _pull(hostile, "ok", tmp_path)
    assert len(store.images.list()) == 1


CASES = {
    "manifest over the size cap": (lambda h: h.serve("t", OCI_M, b'{"a":"' + b"x" * (5 << 20) + b'"}'), E.ManifestTooLargeError),
    "invalid JSON": (lambda h: h.serve("t", OCI_M, b"{not json"), E.DistributionError),
    "digest mismatching the tag's": (lambda h: h.serve("t", *h.image(), digest_header=str(dd.digest_bytes(b"lie"))),
                                     E.DigestMismatchError),
    "diffIDs that do not match the layers": (lambda h: h.serve("t", *h.image([str(dd.digest_bytes(b"other"))])),
                                             E.DistributionError),
    "unknown manifest media type": (lambda h: h.serve("t", "application/x-weird", b'{"x":1}'), E.DistributionError),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_registry_answers_give_typed_errors(hostile: Hostile, tmp_path: Path, case: str) -> None:
    setup, expected = CASES[case]
    setup(hostile)
    with pytest.raises(expected):
        _pull(hostile, "t", tmp_path)
    _assert_clean(tmp_path)


def test_layer_media_type_lying_about_compression_is_detected_safely(hostile: Hostile, tmp_path: Path) -> None:
    hostile.layer_media_type = "application/vnd.oci.image.layer.v1.tar+zstd"  # it is gzip: magic bytes decide
    hostile.serve("t", *hostile.image())
    store = _pull(hostile, "t", tmp_path)
    assert store.verify() == []


def test_unknown_layer_media_type_and_ai_models(hostile: Hostile, tmp_path: Path) -> None:
    hostile.layer_media_type = "application/x-unknown-layer"
    hostile.serve("t", *hostile.image())
    with pytest.raises(E.UnsupportedMediaTypeError, match="unsupported media type application/x-unknown-layer"):
        _pull(hostile, "t", tmp_path)
    hostile.layer_media_type = "application/vnd.oci.image.layer.v1.tar+gzip"
    hostile.config_media_type = "application/vnd.docker.ai.model.config.v0.1+json"
    hostile.serve("ai", *hostile.image())
    with pytest.raises(E.AIModelNotSupportedError):
        _pull(hostile, "ai", tmp_path)
    _assert_clean(tmp_path)


def test_deeply_nested_indexes_are_refused(hostile: Hostile, tmp_path: Path) -> None:
    ct, m = hostile.image()
    hostile.serve("leaf", ct, m)
    child = {"mediaType": OCI_M, "digest": str(dd.digest_bytes(m)), "size": len(m),
             "platform": {"os": "linux", "architecture": "amd64"}}
    for level in range(10):
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_I, "manifests": [child]}).encode()
        hostile.serve(f"l{level}", OCI_I, body)
        child = {"mediaType": OCI_I, "digest": str(dd.digest_bytes(body)), "size": len(body),
                 "platform": {"os": "linux", "architecture": "amd64"}}
    with pytest.raises(E.DistributionError, match="nested more than"):
        _pull(hostile, "l9", tmp_path)
    _assert_clean(tmp_path)


def test_a_huge_content_length_on_a_blob_is_refused(hostile: Hostile, tmp_path: Path) -> None:
    ct, m = hostile.image()
    doc = json.loads(m)
    doc["layers"][0]["size"] = 10  # the registry's blob is larger than the manifest says
    hostile.serve("t", ct, json.dumps(doc).encode())
    with pytest.raises((E.SizeMismatchError, E.DigestMismatchError)):
        _pull(hostile, "t", tmp_path)
    _assert_clean(tmp_path)


# --- secrets --------------------------------------------------------------------------------


def test_credentials_never_reach_logs_errors_or_progress(tls_registry: Registry, token_registry: TokenBed,
                                                         caplog: pytest.LogCaptureFixture, repo_name: str,
                                                         tmp_path: Path) -> None:
    from docker_distribution.progress import CollectingProgress
    from docker_distribution.registry import connect
    from docker_distribution.registry.service import APIEndpoint, TLSConfig

    caplog.set_level(logging.DEBUG)
    secrets = [BASIC_USERS["alice"], "alice-token-pw", "wrong-secret-pw"]
    texts: list[str] = []
    ep = APIEndpoint(url=tls_registry.url, tls=TLSConfig(verify=True, ca_bundle=str(tls_registry.ca_path)))
    repo = connect(dd.parse_normalized_named(f"{tls_registry.host}/{repo_name}"), ep,
                   auth_config=AuthConfig(username="alice", password=BASIC_USERS["alice"]))
    texts.append(repr(repo.transport.authorizer) + repr(AuthConfig(username="alice", password=BASIC_USERS["alice"])))
    with pytest.raises(E.DistributionError) as bad:
        connect(dd.parse_normalized_named(f"{tls_registry.host}/{repo_name}"), ep,
                auth_config=AuthConfig(username="alice", password="wrong-secret-pw")).tags()
    texts += [str(bad.value), repr(bad.value)]
    reg = token_registry.registry
    with pytest.raises(E.DistributionError) as tok:
        dd.tags(dd.parse_normalized_named(f"{reg.host}/{repo_name}"),
                dd.Config(auth_config=AuthConfig(username="alice", password="wrong-secret-pw")))
    texts += [str(tok.value), repr(tok.value)]
    out = CollectingProgress()
    with pytest.raises(E.DistributionError) as missing:
        pull_image(dd.parse_normalized_named(f"{reg.host}/{repo_name}:v1"), Store(tmp_path / "s"),
                   config=dd.Config(auth_config=AuthConfig(username="alice", password="alice-token-pw")),
                   progress_output=out)
    texts += [str(missing.value), repr(missing.value)] + [repr(p) for p in out.items]
    texts += [r.getMessage() for r in caplog.records]
    blob = "\n".join(texts)
    for s in secrets:
        assert s not in blob
    import base64

    assert base64.b64encode(f"alice:{BASIC_USERS['alice']}".encode()).decode() not in blob
    assert "Authorization" not in blob


# --- concurrency and crashes ----------------------------------------------------------------


@pytest.fixture(scope="module")
def three_images(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Three images sharing a base layer (overlapping chains)."""
    work = tmp_path_factory.mktemp("imgs")
    base = work / "base"
    base.mkdir()
    (base / "data").write_bytes(os.urandom(2 << 20))
    refs = []
    for i in range(3):
        top = work / f"top{i}"
        top.mkdir()
        (top / f"f{i}").write_bytes(os.urandom(1 << 20))
        layout = work / f"layout{i}"
        write_layout(layout, "v1", [image_manifest(layout, [base, top])], as_index=False)
        skopeo_push(layout, "v1", f"{registry.host}/harden/img{i}:v1")
        refs.append(f"{registry.host}/harden/img{i}:v1")
    return refs


_PULL_CHILD = """
import sys, threading
import docker_distribution as dd
from docker_distribution.registry.auth import AuthConfig
from docker_distribution.store import Store
store = Store(sys.argv[1])
refs = sys.argv[2:]
errors = []
def work(i):
    try:
        dd.pull_image(dd.parse_normalized_named(refs[i % len(refs)]), store, config=dd.Config(auth_config=AuthConfig()))
    except Exception as e:
        errors.append(repr(e))
threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
print(errors)
sys.exit(1 if errors else 0)
"""


def test_16_concurrent_pulls_from_threads_and_two_processes(three_images: list[str], tmp_path: Path) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", _PULL_CHILD, str(tmp_path), *three_images]) for _ in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    store = Store(tmp_path)
    assert len(store.images.list()) == 3
    assert len(store.layers.list()) == 4  # the shared base once, three tops
    assert store.verify() == [] and store.leftovers() == []
    for ref in three_images:
        out = tmp_path / "u" / ref.rsplit("/", 1)[1]
        store.unpack(store.references.get(dd.parse_normalized_named(ref)), out)
        assert (out / "data").stat().st_size == 2 << 20


def test_crash_loop_of_killed_pulls(three_images: list[str], registry: Registry, tmp_path: Path) -> None:
    proxy = FaultProxy(registry.url)
    try:
        proxy.add(Fault(match="/blobs/", method="GET", throttle=4 << 20, times=10_000))
        refs = [r.replace(registry.host, proxy.host) for r in three_images]
        root = tmp_path / "root"
        crash_loop("pull", root, refs, tmp_path, seed=9)
        assert len(Store(root).images.list()) == 3
        assert proxy.unfired() == []  # the pulls were throttled, so the kills met them mid-blob
    finally:
        proxy.stop()


# --- the store's own files, damaged ---------------------------------------------------------------

@pytest.fixture(scope="module")
def pulled_root(three_images: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding one pulled image, and an interrupted download's ingest (as a killed pull leaves)."""
    root = tmp_path_factory.mktemp("pulled") / "root"
    store = Store(root)
    pull_image(dd.parse_normalized_named(three_images[0]), store, config=ANON)
    w = store.content.writer(ref="pull-layer-sha256:" + "0" * 64, total=10, hashing=False)
    w.write(b"abc")
    w.close()
    return root


def _store_file(root: Path, role: str) -> Path:
    store = Store(root)
    [image_id] = store.images.list()
    top = store.image_chain_id(image_id)
    assert top is not None
    return {
        "references": lambda: root / "repositories.json",
        "image config": lambda: root / "image" / image_id.algorithm / image_id.encoded,
        "layer record": lambda: store.layers.layer_dir(top) / "meta.json",
        "tar-split record": lambda: store.layers.layer_dir(top) / "tar-split.zst",
        "V2 metadata": lambda: next(p for p in (root / "distribution" / "v2metadata-by-diffid").rglob("*") if p.is_file()),
        "diffID by digest": lambda: next(p for p in (root / "distribution" / "diffid-by-digest").rglob("*") if p.is_file()),
        "content labels": lambda: next((root / "content" / "labels").rglob("*.json")),
        "ingest record": lambda: next((root / "content" / "ingest").rglob("meta.json")),
    }[role]()


_DAMAGE = {"garbage": b"\x00\xff{not json", "JSON of the wrong shape": b'{"Repositories": [1], "diff_id": 5, "ref": 3}'}


@pytest.mark.parametrize("damage", sorted(_DAMAGE))
@pytest.mark.parametrize("role", ["references", "tar-split record", "image config", "layer record",
                                  "V2 metadata", "diffID by digest", "content labels", "ingest record"])
def test_a_damaged_store_file_is_a_typed_error_or_is_replaced_never_written_over(
        pulled_root: Path, three_images: list[str], tmp_path: Path, role: str, damage: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Each of the store's own files, damaged: what needs it fails with a CorruptStoreError
    naming it (and nothing writes over it), a pull of the image replaces a damaged config or
    layer record with a verified copy, and a damaged cache entry is taken as absent."""
    from docker_distribution.cli import main

    root = tmp_path / "root"
    shutil.copytree(pulled_root, root, symlinks=True)
    path = _store_file(root, role)
    path.write_bytes(_DAMAGE[damage])
    ref = dd.parse_normalized_named(three_images[0])
    store = Store(root)
    unpack = lambda: store.unpack(store.resolve(ref), tmp_path / f"rootfs{len(list(tmp_path.iterdir()))}")  # noqa: E731

    if role in ("references", "tar-split record"):  # the truth: typed errors, the file kept as it is
        ops = [unpack, lambda: store.save([ref], tmp_path / "saved.tar")]
        if role == "references":
            ops += [lambda: pull_image(ref, store, config=ANON), lambda: store.remove_image(ref), store.prune]
        for op in ops:
            with pytest.raises(E.CorruptStoreError, match=path.name):
                op()
        assert any(str(path) in problem for problem in store.verify())
        assert path.read_bytes() == _DAMAGE[damage]
        if role == "references":
            assert main(["--root", str(root), "images"]) == 1
            assert f"Error: corrupt store file {path}" in capsys.readouterr().err
        else:  # removing the image and pulling it again mends it
            store.remove_image(ref)
            pull_image(ref, store, config=ANON)
            assert store.verify() == []
            unpack()
    elif role in ("image config", "layer record"):  # replaced by a pull's verified copy
        with pytest.raises(E.CorruptStoreError, match=path.name):
            unpack()
        assert any(path.name in problem for problem in store.verify())
        pull_image(ref, store, config=ANON)
        assert store.verify() == []
        unpack()
    else:  # caches: taken as absent where consulted, and written afresh
        image_id = store.resolve(ref)
        store.remove_image(ref, prune=False)
        store.images.delete(image_id)  # the layers stay: the pull asks the metadata about them
        pull_image(ref, store, config=ANON)
        copy = dd.parse_normalized_named(f"{ref.domain}/harden/again-{tmp_path.name.lower()}:v1")
        store.references.add_tag(copy, image_id)
        push_image(copy, store, config=ANON)  # consults the metadata for mounts
        assert store.verify() == []
        unpack()
        for diff_id in store.images.diff_ids(image_id):
            metas = store.v2_metadata.get_metadata(diff_id)
            assert {m.source_repository for m in metas} >= {ref.name}
            assert all(store.v2_metadata.get_diff_id(m.digest) == diff_id for m in metas)


def test_pulls_racing_to_repair_a_damaged_layer_all_succeed(pulled_root: Path, three_images: list[str],
                                                             tmp_path: Path) -> None:
    """Two processes of eight threads pull an image whose top layer record is damaged: each
    fetches the layer again, the repairs take turns, and one verified copy ends up in place."""
    root = tmp_path / "root"
    shutil.copytree(pulled_root, root, symlinks=True)
    _store_file(root, "layer record").write_bytes(b"{}")
    procs = [subprocess.Popen([sys.executable, "-c", _PULL_CHILD, str(root), three_images[0]]) for _ in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    store = Store(root)
    assert store.verify() == [] and store.leftovers() == []
    store.unpack(store.resolve(dd.parse_normalized_named(three_images[0])), tmp_path / "rootfs")
    assert (tmp_path / "rootfs" / "data").stat().st_size == 2 << 20


# --- a full disk -----------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs (root only: CI runs as root)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small filesystem needs root")
def test_a_full_disk_fails_the_pull_at_once_shows_nothing_and_the_pull_resumes_once_there_is_room(
        small_disk: Path, registry: Registry, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """ENOSPC is moby's one store error that is never retried: the first layer to meet it ends the
    pull with the OSError itself, naming the file; no layer, image or tag shows; what did arrive
    stays as resumable ingests, so the pull, run again once there is room, continues from it."""
    layers = []
    for i in range(3):
        d = tmp_path / f"big{i}"
        d.mkdir()
        for j in range(3):
            (d / f"f{j}").write_bytes(os.urandom(4 << 20))  # incompressible: 12 MiB a layer
        layers.append(d)
    layout = tmp_path / "layout"
    write_layout(layout, "v1", [image_manifest(layout, layers)], as_index=False)
    ref = dd.parse_normalized_named(f"{registry.host}/harden/full-disk:v1")
    skopeo_push(layout, "v1", str(ref))
    root = small_disk / "root"
    caplog.set_level(logging.INFO)
    with pytest.raises(OSError) as info:
        pull_image(ref, Store(root), config=ANON)
    assert info.value.errno == errno.ENOSPC
    assert str(root) in str(info.value)  # which disk is full
    texts = [r.getMessage() for r in caplog.records]
    assert not [t for t in texts if "retrying" in t], texts
    store = Store(root)
    assert store.images.list() == [] and store.verify() == []
    assert not list(store.layers.root.glob("sha256/*"))
    assert [s for s in store.content.list_statuses() if s.offset]  # what arrived, kept
    caplog.clear()
    subprocess.run(["mount", "-o", "remount,size=200m", str(small_disk)], check=True)
    image_id = pull_image(ref, store, config=ANON)
    assert any("attempting to resume download" in r.getMessage() for r in caplog.records)
    assert store.resolve(ref) == image_id and store.verify() == [] and store.leftovers() == []
    store.unpack(image_id, tmp_path / "rootfs")
    for j in range(3):  # the top layer's files, over the same names below
        assert (tmp_path / "rootfs" / f"f{j}").read_bytes() == (layers[-1] / f"f{j}").read_bytes()
