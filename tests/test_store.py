"""The embedded store: content ingests, images, layers, references, V2 metadata, GC, verify,
crashes and concurrency."""

from __future__ import annotations

import gzip
import io
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import docker_distribution as dd
import pytest
from docker_distribution import errors as E
from docker_distribution.descriptor import Descriptor
from docker_distribution.metadata import (
    FSMetadataStore,
    V2Metadata,
    V2MetadataService,
    check_v2_metadata_hmac,
    compute_v2_metadata_hmac,
    compute_v2_metadata_hmac_key,
)
from docker_distribution.reference import parse_normalized_named
from docker_distribution.registry.auth import AuthConfig
from docker_distribution.store import Store, chain_id
from docker_distribution.store.adapters import (
    EMPTY_LAYER_DIFF_ID,
    new_image_config_store_from_store,
    new_layer_providers_from_store,
)


def tgz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_000
            t.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), mtime=0)


# --- content --------------------------------------------------------------------------------


def test_content_commit_verifies_before_anything_is_visible(tmp_path: Path) -> None:
    s = Store(tmp_path)
    data = b"manifest bytes" * 100
    d = dd.digest_bytes(data)
    with s.content.writer(ref="m1") as w:
        w.write(data[:500])
        w.write(data[500:])
        with pytest.raises(dd.DigestMismatchError):
            w.commit(len(data), dd.digest_bytes(b"other"))
        assert not s.content.exists(d)
        with pytest.raises(E.FailedPreconditionError):
            w.commit(len(data) + 1, d)
        assert w.commit(len(data), d, {"containerd.io/distribution.source.docker.io": "library/x"}) == d
    assert s.content.read(d) == data
    info = s.content.info(d)
    assert info.size == len(data) and info.labels == {"containerd.io/distribution.source.docker.io": "library/x"}
    with pytest.raises(E.AlreadyExistsError):
        s.content.writer(ref="m2", descriptor=Descriptor("application/json", d, len(data)))
    with pytest.raises(E.ObjectNotFoundError):
        s.content.status("m1")  # the ingest is gone


@pytest.mark.parametrize("step", ["mkdir", "open", "flock"])
def test_content_writer_survives_its_ingest_moved_aside_by_a_finishing_writer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    """Another process commits the same ref while this one opens it: the ingest directory it
    found, or whose lock it opened or took, is moved aside (as ``_finish`` does) at that step."""
    import fcntl

    from docker_distribution.store import content as content_mod

    s = Store(tmp_path)
    old = s.content.writer(ref="shared", total=3)  # the finishing writer's ingest
    old.write(b"old")
    old.close()
    ingest = s.content.status("shared")  # it exists, with its lock file
    assert ingest.offset == 3
    moved: list[Path] = []

    def move_aside(directory: Path) -> None:
        if not moved:
            moved.append(tmp_path / "gone")
            os.replace(directory, moved[0])

    real_mkdir, real_open, real_flock = Path.mkdir, os.open, fcntl.flock

    def mkdir(self: Path, *a: object, **k: object) -> None:
        if step == "mkdir" and not moved and self.parent.name == "ingest":
            real_mkdir(self, *a, **k)  # found there...
            move_aside(self)  # ...and gone before pathlib checks it is a directory
            raise FileExistsError(17, "File exists")
        real_mkdir(self, *a, **k)

    def open_(path: object, flags: int, mode: int = 0o777, **k: object) -> int:
        p = Path(os.fspath(path))
        if step == "open" and p.name == "lock" and p.parent.parent.name == "ingest":
            move_aside(p.parent)
        return real_open(path, flags, mode, **k)

    def flock(fd: int, op: int) -> None:
        real_flock(fd, op)
        if step == "flock" and op & fcntl.LOCK_EX:
            lock = Path(os.readlink(f"/proc/self/fd/{fd}"))
            if lock.name == "lock" and lock.parent.parent.name == "ingest":
                move_aside(lock.parent)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.setattr(content_mod.os, "open", open_)
    monkeypatch.setattr(content_mod.fcntl, "flock", flock)
    w = s.content.writer(ref="shared", total=3)
    monkeypatch.undo()
    assert moved, "the race was not staged"
    assert w.offset == 0  # a fresh ingest, not the one moved away
    w.write(b"new")
    assert w.commit(3, dd.digest_bytes(b"new")) == dd.digest_bytes(b"new")
    assert s.content.read(dd.digest_bytes(b"new")) == b"new"


def test_content_writer_resumes_and_is_exclusive(tmp_path: Path) -> None:
    s = Store(tmp_path)
    data = os.urandom(300_000)
    w = s.content.writer(ref="layer-x", total=len(data))
    w.write(data[:100_000])
    with pytest.raises(E.LockedError):
        s.content.writer(ref="layer-x")
    w.close()
    assert s.content.status("layer-x").offset == 100_000
    w2 = s.content.writer(ref="layer-x")
    assert w2.offset == 100_000
    w2.write(data[100_000:])
    assert w2.commit(len(data), dd.digest_bytes(data)) == dd.digest_bytes(data)


def test_content_writer_large_blob_truncate_and_resumption_only(tmp_path: Path) -> None:
    """A blob past the write-back step (the native file hands pages to the disk while it grows)
    commits intact; truncate rewinds the digest; a resumption-only ingest cannot be digested."""
    s = Store(tmp_path)
    data = os.urandom(40 << 20)
    with s.content.writer(ref="big") as w:
        w.write(b"junk")
        w.truncate(0)
        for i in range(0, len(data), 1 << 20):
            w.write(data[i:i + (1 << 20)])
        assert w.digest() == dd.digest_bytes(data)
        assert w.commit(len(data), dd.digest_bytes(data)) == dd.digest_bytes(data)
    assert s.content.read(dd.digest_bytes(data)) == data
    with s.content.writer(ref="keep-only", hashing=False) as w:
        w.write(b"abc")
        with pytest.raises(E.FailedPreconditionError):
            w.digest()
        with pytest.raises(E.FailedPreconditionError):
            w.commit(3, None)


@pytest.mark.parametrize("durable", [True, False])
def test_content_commit_fsyncs_only_in_a_durable_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       durable: bool) -> None:
    """The default store fsyncs each committed blob and its directory; ``durable_blobs=False``
    does neither, and still verifies before anything is visible."""
    from docker_distribution.store import content as content_module

    synced: list[str] = []
    monkeypatch.setattr(content_module, "fsync_dir", lambda d: synced.append(f"dir {d.name}"))
    s = Store(tmp_path, durable_blobs=durable)
    data = os.urandom(20 << 20)
    w = s.content.writer(ref="x")
    native = w._file

    class Spy:
        def __getattr__(self, name: str) -> object:
            return getattr(native, name)

        def sync(self) -> None:
            synced.append("file")
            native.sync()

    w._file = Spy()  # type: ignore[assignment]
    w.write(data)
    with pytest.raises(dd.DigestMismatchError):
        w.commit(len(data), dd.digest_bytes(b"other"))
    assert not s.content.exists(dd.digest_bytes(data)) and synced == []
    assert w.commit(len(data), dd.digest_bytes(data)) == dd.digest_bytes(data)
    assert s.content.read(dd.digest_bytes(data)) == data
    assert synced == (["file", "dir sha256"] if durable else [])


def test_content_labels_update_and_walk_and_delete(tmp_path: Path) -> None:
    s = Store(tmp_path)
    digests = []
    for i in range(3):
        with s.content.writer(ref=f"r{i}") as w:
            w.write(b"x" * (i + 1))
            digests.append(w.commit(0, None))
    info = s.content.info(digests[0])
    updated = s.content.update(type(info)(info.digest, info.size, 0, 0, {"a": "1", "b": "2"}), "labels")
    assert updated.labels == {"a": "1", "b": "2"}
    s.content.update(type(info)(info.digest, info.size, 0, 0, {"a": "9"}), "labels.a", "labels.b")
    assert s.content.info(digests[0]).labels == {"a": "9"}
    seen: list[dd.Digest] = []
    s.content.walk(lambda i: seen.append(i.digest))
    assert sorted(map(str, seen)) == sorted(map(str, digests))
    s.content.delete(digests[1])
    with pytest.raises(E.ObjectNotFoundError):
        s.content.info(digests[1])
    s.content.writer(ref="abort-me").close()
    s.content.abort("abort-me")
    with pytest.raises(E.ObjectNotFoundError):
        s.content.abort("abort-me")


_INGEST_CHILD = """
import os, sys, time
from docker_distribution.store import Store
s = Store(sys.argv[1])
w = s.content.writer(ref="big-ingest", total=200 * 1024 * 1024)
chunk = bytes(range(256)) * 4096  # 1 MiB, deterministic
print("ready", flush=True)
for i in range(200):
    w.write(chunk)
    w.flush()
    time.sleep(0.01)
"""


def test_sigkill_mid_ingest_leaves_a_consistent_store_that_resumes(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _INGEST_CHILD, str(tmp_path)], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    s = Store(tmp_path)
    deadline = time.monotonic() + 30
    while s.content.status("big-ingest").offset < 100 * 1024 * 1024 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    reopened = Store(tmp_path)
    assert reopened.verify() == []
    status = reopened.content.status("big-ingest")
    assert status.total == 200 * 1024 * 1024
    saved = status.offset
    assert 100 * 1024 * 1024 <= saved < 200 * 1024 * 1024
    w = reopened.content.writer(ref="big-ingest")  # the dead writer's lock died with it
    assert w.offset == saved
    full = (bytes(range(256)) * 4096) * 200
    w.write(full[saved:])
    assert w.commit(len(full), dd.digest_bytes(full)) == dd.digest_bytes(full)
    assert reopened.verify() == []


def test_temporary_files_of_a_killed_writer_go_when_the_store_opens(tmp_path: Path) -> None:
    """An atomic write killed between its temp file and the rename leaves a young temp file; the
    next opening of the store removes it because its writer is gone, and keeps a live writer's."""
    from docker_distribution.fsutil import TMP_PREFIX

    Store(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    live = subprocess.Popen(["sleep", "60"])
    try:
        dead_tmp = tmp_path / f"{TMP_PREFIX}{dead.stdout.strip()}-0123456789ab"  # as unique_tmp names them
        live_tmp = tmp_path / "content" / f"{TMP_PREFIX}{live.pid}-0123456789ab"
        dead_tmp.write_bytes(b"torn")
        live_tmp.mkdir()
        assert sorted(Store(tmp_path).leftovers()) == sorted([live_tmp])  # the dead one is gone, live kept
        assert not dead_tmp.exists() and live_tmp.is_dir()
    finally:
        live.kill()
        live.wait()
    Store(tmp_path)
    assert not live_tmp.exists()


# --- images and references ------------------------------------------------------------------


def test_image_store(tmp_path: Path) -> None:
    s = Store(tmp_path)
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    image_id = s.images.put(config)
    assert image_id == dd.digest_bytes(config)
    assert s.images.get(image_id) == config and s.images.list() == [image_id]
    adapter = new_image_config_store_from_store(s.images)
    assert adapter.put(config) == image_id and adapter.get(image_id) == config
    with pytest.raises(E.StoreError):
        s.images.put(b"[1, 2]")
    s.images.delete(image_id)
    with pytest.raises(E.ObjectNotFoundError):
        s.images.get(image_id)


def test_reference_store_semantics(tmp_path: Path) -> None:
    s = Store(tmp_path)
    a, b = dd.digest_bytes(b"a"), dd.digest_bytes(b"b")
    busybox = parse_normalized_named("busybox")
    s.references.add_tag(busybox, a)
    assert s.references.get(parse_normalized_named("busybox:latest")) == a
    s.references.add_tag(busybox, a)  # same id: no conflict
    with pytest.raises(E.ReferenceConflictError) as info:
        s.references.add_tag(busybox.with_tag("latest"), b)
    assert str(info.value) == (f"Conflict: Tag busybox:latest is already set to image {a}, if you want to replace it, "
                               "please use the force option")
    s.references.add_tag(busybox.with_tag("latest"), b, force=True)
    digest_ref = busybox.with_digest(dd.digest_bytes(b"manifest"))
    s.references.add_digest(digest_ref, b)
    with pytest.raises(E.ReferenceConflictError, match="Cannot overwrite digest"):
        s.references.add_digest(digest_ref, a, force=True)
    s.references.add_tag(parse_normalized_named("busybox:1.36"), b)
    names = [str(x.ref) for x in s.references.references_by_name(busybox)]
    assert names == sorted(names) and len(names) == 3
    assert {str(r) for r in s.references.references(b)} == set(names)
    assert json.loads((tmp_path / "repositories.json").read_text())["Repositories"]["busybox"]["busybox:latest"] == str(b)
    assert s.references.delete(busybox)
    with pytest.raises(E.ReferenceNotFoundError, match="reference does not exist"):
        s.references.get(busybox)


def _add_tags(root: str, worker: int) -> None:
    s = Store(root)
    for i in range(40):
        s.references.add_tag(parse_normalized_named(f"repo{worker}:t{i}"), dd.digest_bytes(f"{worker}-{i}".encode()))


def test_reference_store_is_safe_across_processes(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_add_tags, args=(str(tmp_path), w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    repos = Store(tmp_path).references.all()
    assert {k: len(v) for k, v in repos.items()} == {f"repo{w}": 40 for w in range(4)}


# --- layers ---------------------------------------------------------------------------------


def test_layers_register_chain_unpack_and_rebuild(tmp_path: Path) -> None:
    s = Store(tmp_path / "store")
    base = tgz({"etc/os": b"base", "etc/gone": b"x", "opt/keep": b"k"})
    top = tgz({"etc/.wh.gone": b"", "etc/new": b"n"})
    (tmp_path / "base.tgz").write_bytes(base)
    l1 = s.layers.register_file(tmp_path / "base.tgz", None, digest=dd.digest_bytes(base), size=len(base))
    l2 = s.layers.register(io.BytesIO(top), l1.chain_id)
    assert l1.chain_id == l1.diff_id == dd.digest_bytes(gzip.decompress(base))
    assert l2.chain_id == chain_id(l1.chain_id, l2.diff_id)
    assert str(l2.chain_id) == "sha256:" + __import__("hashlib").sha256(f"{l1.chain_id} {l2.diff_id}".encode()).hexdigest()
    assert dd.digest_bytes(l2.tar_stream().read()) == l2.diff_id == dd.digest_bytes(gzip.decompress(top))
    out = tmp_path / "rootfs"
    s.layers.unpack(l2.chain_id, out)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == ["etc/new", "etc/os", "opt/keep"]
    assert s.layers.references(l2.chain_id) == 1
    l2.release()
    assert s.layers.references(l2.chain_id) == 0
    provider = new_layer_providers_from_store(s.layers)
    pushed = provider.get(l2.chain_id)
    assert pushed.diff_id() == l2.diff_id and pushed.media_type() == "application/vnd.docker.image.rootfs.diff.tar"
    parent = pushed.parent()
    assert parent is not None and parent.diff_id() == l1.diff_id
    empty = provider.get(None)
    assert empty.diff_id() == EMPTY_LAYER_DIFF_ID and dd.digest_bytes(empty.open().read()) == EMPTY_LAYER_DIFF_ID
    assert s.verify() == []


def test_a_bad_layer_registers_nothing(tmp_path: Path) -> None:
    s = Store(tmp_path)
    data = tgz({"f": b"x"})
    with pytest.raises(dd.DigestMismatchError):
        s.layers.register_file(_write(tmp_path / "l.tgz", data), None, digest=dd.digest_bytes(b"nope"))
    assert s.layers.list() == [] and s.leftovers() == []


def _write(p: Path, data: bytes) -> Path:
    p.write_bytes(data)
    return p


_CHAIN_CHILD = """
import io, sys, threading
sys.path.insert(0, sys.argv[2])
from test_store import tgz
from docker_distribution.store import Store
s = Store(sys.argv[1])
layers = [tgz({f"l{i}/f{j}": bytes([i]) * 5000 for j in range(30)}) for i in range(6)]
errors = []
def work(t):
    try:
        parent = None
        # threads register overlapping chains: all share the first layers, then diverge
        for i in range(3 + t % 4):
            l = s.layers.register(io.BytesIO(layers[i]), parent)
            parent = l.chain_id
    except Exception as e:
        errors.append(repr(e))
threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
print("errors", errors)
sys.exit(1 if errors else 0)
"""


def test_concurrent_layer_registration_from_threads_and_processes(tmp_path: Path) -> None:
    here = str(Path(__file__).parent)
    procs = [subprocess.Popen([sys.executable, "-c", _CHAIN_CHILD, str(tmp_path), here]) for _ in range(2)]
    assert [p.wait() for p in procs] == [0, 0]
    s = Store(tmp_path)
    infos = s.layers.list()
    assert len(infos) == 6  # one chain, registered by 16 writers, stored once each
    assert all(s.layers.references(i.chain_id) == 0 for i in infos)
    assert s.verify() == [] and s.leftovers() == []


# --- V2 metadata ----------------------------------------------------------------------------


def test_v2_metadata_service(tmp_path: Path) -> None:
    svc = V2MetadataService(FSMetadataStore(tmp_path))
    diff_ids = [dd.digest_bytes(f"diff{i}".encode()) for i in range(3)]
    counts = [1, 2, 100]
    added: list[list[V2Metadata]] = []
    for diff_id, n in zip(diff_ids, counts):
        metas = [V2Metadata(dd.digest_bytes(f"{diff_id}-{j}".encode()), f"docker.io/library/r{j}") for j in range(n)]
        for m in metas:
            svc.add(diff_id, m)
        added.append(metas)
    for diff_id, metas in zip(diff_ids, added):
        assert svc.get_metadata(diff_id) == metas[-50:]
        for m in metas:
            assert svc.get_diff_id(m.digest) == diff_id
    with pytest.raises(E.ObjectNotFoundError):
        svc.get_metadata(dd.digest_bytes(b"unknown"))
    with pytest.raises(E.ObjectNotFoundError):
        svc.get_diff_id(dd.digest_bytes(b"unknown"))
    svc.add(diff_ids[1], added[0][0])
    assert svc.get_diff_id(added[0][0].digest) == diff_ids[1]
    svc.remove(added[0][0])
    with pytest.raises(E.ObjectNotFoundError):
        svc.get_diff_id(added[0][0].digest)
    # the no-op service
    none = V2MetadataService(None)
    none.add(diff_ids[0], added[0][0])
    with pytest.raises(E.StoreError, match="no metadata storage"):
        none.get_metadata(diff_ids[0])


def test_v2_metadata_hmac() -> None:
    assert compute_v2_metadata_hmac_key(AuthConfig()) == b"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    assert compute_v2_metadata_hmac_key(None) is None
    key = compute_v2_metadata_hmac_key(AuthConfig(username="u", password="p"))
    meta = V2Metadata(dd.digest_bytes(b"x"), "docker.io/library/busybox")
    tag = compute_v2_metadata_hmac(key, meta)
    tagged = V2Metadata(meta.digest, meta.source_repository, tag)
    assert check_v2_metadata_hmac(tagged, key)
    assert not check_v2_metadata_hmac(tagged, b"other")
    assert check_v2_metadata_hmac(meta, None) and not check_v2_metadata_hmac(meta, key)
    assert compute_v2_metadata_hmac(None, meta) == ""


# --- GC and verify --------------------------------------------------------------------------


def test_prune_removes_what_nothing_references_and_verify_finds_corruption(tmp_path: Path) -> None:
    s = Store(tmp_path / "s")
    layer = s.layers.register(io.BytesIO(tgz({"f": b"data"})), None)
    layer.release()
    config = json.dumps({"os": "linux", "rootfs": {"type": "layers", "diff_ids": [str(layer.diff_id)]}}).encode()
    image_id = s.images.put(config)
    ref = parse_normalized_named("example.com/app:1")
    s.references.add_tag(ref, image_id)
    with s.content.writer(ref="manifest") as w:
        w.write(b'{"schemaVersion":2,"config":{"digest":"%s"},"layers":[]}' % str(image_id).encode())
        manifest = w.commit(0, None)
    s.references.add_digest(ref.with_digest(manifest), image_id)
    assert s.prune().images == [] and s.verify() == []
    blob = s.content.blob_path(manifest)
    blob.chmod(0o644)
    original = blob.read_bytes()
    blob.write_bytes(original.replace(b"2", b"3", 1))
    assert any("content" in p for p in s.verify())
    blob.write_bytes(original)
    (s.layers.layer_dir(layer.chain_id) / "diff" / "f").write_bytes(b"DATA")
    assert any("layer" in p for p in s.verify())
    (s.layers.layer_dir(layer.chain_id) / "diff" / "f").write_bytes(b"data")
    out = s.remove_image(ref.with_digest(manifest))
    assert s.images.list() == [image_id]  # still tagged example.com/app:1
    out = s.remove_image(ref)
    assert out[0] == "Untagged: example.com/app:1" and f"Deleted: {image_id}" in out
    assert s.images.list() == [] and s.layers.list() == []
    blobs: list[dd.Digest] = []
    s.content.walk(lambda i: blobs.append(i.digest))
    assert blobs == []
    assert s.verify() == []


def test_rmi_deletes_only_what_the_image_alone_needed(tmp_path: Path) -> None:
    """docker rmi: the image, the layers of its chain no other image (or child layer) needs, and
    its manifests; an unreferenced image, a blob fetched on its own and shared layers all stay."""
    s = Store(tmp_path / "s")

    def layer(parent: dd.Digest | None, name: str) -> dd.Digest:
        with s.layers.register(io.BytesIO(tgz({name: name.encode()})), parent) as lay:
            return lay.chain_id

    def image(*cids: dd.Digest) -> dd.Digest:
        diff_ids = [str(s.layers.info(c).diff_id) for c in cids]
        return s.images.put(json.dumps({"os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode())

    def blob(data: bytes) -> dd.Digest:
        with s.content.writer(ref=dd.digest_bytes(data).encoded) as w:
            w.write(data)
            return w.commit(len(data), dd.digest_bytes(data))

    base = layer(None, "base")
    mine, other = layer(base, "mine"), layer(base, "other")
    top = layer(mine, "top")
    doomed, kept = image(base, mine, top), image(base, other)
    unnamed = image(base, mine)  # no reference: only `system prune` removes it (docker's dangling image)
    orphan = layer(top, "orphan")  # a layer no image names yet (a pull still going, in docker's terms)
    loose = blob(b"a blob fetched through the Repository API")
    manifest = blob(b'{"schemaVersion":2,"config":{"digest":"%s"},"layers":[]}' % str(doomed).encode())
    app, keep = parse_normalized_named("example.com/app:1"), parse_normalized_named("example.com/keep:1")
    s.references.add_tag(app, doomed)
    s.references.add_digest(app.with_digest(manifest), doomed)
    s.references.add_tag(keep, kept)
    out = s.remove_image(app)
    assert out == [f"Untagged: {app.familiar}", f"Untagged: {app.familiar.split(':')[0]}@{manifest}",
                   f"Deleted: {doomed}"]  # `top` still has a child: it stays, and so does all below it
    assert set(s.images.list()) == {kept, unnamed}
    assert {i.chain_id for i in s.layers.list()} == {base, mine, other, top, orphan}
    assert not s.content.exists(manifest) and s.content.exists(loose)
    s.layers.delete(orphan)
    s.references.add_tag(app, unnamed)
    assert s.remove_image(app) == [f"Untagged: {app.familiar}", f"Deleted: {unnamed}"]  # `mine` holds up `top`
    assert s.content.exists(loose)
    report = s.prune()  # prune's job: everything nothing names
    assert report.layers == [top, mine] and report.content == [loose] and report.images == []
    s.references.add_tag(app, kept)
    assert s.remove_image(app) == [f"Untagged: {app.familiar}"]  # still tagged as keep:1
    assert s.remove_image(keep) == [f"Untagged: {keep.familiar}", f"Deleted: {kept}", f"Deleted: {other}",
                                    f"Deleted: {base}"]
    assert s.layers.list() == [] and s.images.list() == [] and s.verify() == []


def test_rmi_by_image_id_follows_docker_s_rules(tmp_path: Path) -> None:
    """`docker rmi <ID>`: every reference goes when they are one tag plus digest references of one
    repository; two tags, or two repositories, are a conflict unless forced (moby's isSingleReference)."""
    s = Store(tmp_path / "s")
    with s.layers.register(io.BytesIO(tgz({"f": b"data"})), None) as lay:
        diff_id = str(lay.diff_id)
    image_id = s.images.put(json.dumps({"os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode())
    short = image_id.encoded[:12]
    a1, a2 = parse_normalized_named("example.com/a:1"), parse_normalized_named("example.com/a:2")
    b1 = parse_normalized_named("example.com/b:1")
    digest_ref = a1.trim().with_digest(dd.digest_bytes(b"a manifest"))
    for ref in (a1, a2, b1):
        s.references.add_tag(ref, image_id)
    for asked in (short, image_id.encoded[:4], str(image_id)):
        with pytest.raises(E.ImageDeleteConflictError) as info:
            s.remove_image(asked)
        assert str(info.value) == (f"conflict: unable to delete {short} (must be forced) - "
                                    "image is referenced in multiple repositories")
    assert len(s.references.references(image_id)) == 3  # nothing untagged by a refusal
    s.references.delete(b1)
    with pytest.raises(E.ImageDeleteConflictError):
        s.remove_image(short)  # two tags of one repository: still more than a single reference
    s.references.delete(a2)
    s.references.add_digest(digest_ref, image_id)
    layer = s.image_chain_id(image_id)
    assert s.remove_image(short) == ["Untagged: example.com/a:1", f"Untagged: {digest_ref.familiar}",
                                     f"Deleted: {image_id}", f"Deleted: {layer}"]  # moby's lexical order
    assert s.images.list() == [] and s.layers.list() == [] and s.references.all() == {}
    with pytest.raises(E.NoSuchImageError, match=f"^No such image: {short}:latest$"):  # as docker words it
        s.remove_image(short)
    with pytest.raises(E.NoSuchImageError, match="^No such image: example.com/a:1$"):
        s.remove_image("example.com/a:1")
    # forced: every reference, whichever repositories
    image_id = s.images.put(json.dumps({"os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode())
    for ref in (a1, b1):
        s.references.add_tag(ref, image_id)
    assert s.remove_image(image_id.encoded[:12], force=True) == [
        "Untagged: example.com/a:1", "Untagged: example.com/b:1", f"Deleted: {image_id}"]
    assert s.images.list() == [] and s.verify() == []


def test_a_ref_argument_is_read_as_docker_reads_it(tmp_path: Path) -> None:
    """docker's GetImage: a reference first (a bare name is :latest), then an image ID or unique
    ID prefix; so a name that happens to be an ID prefix of another image means the named one."""
    s = Store(tmp_path / "s")
    ids = [s.images.put(json.dumps({"os": "linux", "n": i, "rootfs": {"type": "layers", "diff_ids": []}}).encode())
           for i in range(2)]
    named, other = ids
    prefix = other.encoded[:6]
    s.references.add_tag(parse_normalized_named(prefix), named)  # docker.io/library/<prefix>:latest
    assert s.lookup(prefix) == (parse_normalized_named(f"{prefix}:latest"), named)
    assert s.resolve(prefix) == named
    assert s.lookup(other.encoded[:7]) == (None, other) and s.lookup(str(other)) == (None, other)
    with pytest.raises(E.NoSuchImageError, match=f"^No such image: {prefix}@{other}$"):
        s.lookup(f"{prefix}@{other}")  # a digest reference that does not exist is not read as an ID
    with pytest.raises(E.NoSuchImageError, match="^No such image: sha256:abc$"):
        s.lookup("sha256:abc")  # read as the name sha256, tag abc (as docker does); too short an ID prefix


def test_a_layer_published_while_another_repair_has_moved_the_damaged_copy_aside(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The interleaving that failed one CI run of the racing-repairs test: a writer's rename into
    place fails because a damaged copy is there; before it looks again, another process's repair
    has moved that copy aside (and holds the repair lock while it puts its own in). The writer
    must wait for that repair, not report ``could not publish layer``."""
    import errno
    import shutil

    from docker_distribution.fsutil import file_lock

    s = Store(tmp_path / "s")
    data = tgz({"f": b"data"})
    with s.layers.register(io.BytesIO(data), None) as lay:
        cid = lay.chain_id
    final = s.layers.layer_dir(cid)
    shutil.copytree(final, tmp_path / "verified")
    (final / "meta.json").write_text("{}")  # damaged
    moved = threading.Event()

    def other_repair() -> None:
        with file_lock(s.layers.root / "tmp" / f"repair-{cid.encoded}.lock"):
            os.rename(final, tmp_path / "aside")
            moved.set()
            time.sleep(0.3)
            shutil.copytree(tmp_path / "verified", final)

    repairer = threading.Thread(target=other_repair)
    real_rename = os.rename

    def rename(src: object, dst: object) -> None:
        if Path(str(dst)) == final and not moved.is_set():
            repairer.start()
            moved.wait()
            raise OSError(errno.ENOTEMPTY, "Directory not empty")  # what the damaged copy made it
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with s.layers.register(io.BytesIO(data), None) as again:
        assert again.chain_id == cid
    repairer.join()
    assert s.layers.info(cid).chain_id == cid and (s.layers.layer_dir(cid) / "diff" / "f").read_bytes() == b"data"


def test_default_root_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from docker_distribution.store import default_root

    monkeypatch.setenv("DOCKER_DISTRIBUTION_ROOT", str(tmp_path / "x"))
    assert default_root() == tmp_path / "x"
    monkeypatch.delenv("DOCKER_DISTRIBUTION_ROOT")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_root() == tmp_path / "data" / "docker-distribution"


def test_threads_share_one_content_store(tmp_path: Path) -> None:
    s = Store(tmp_path)
    results: list[dd.Digest] = []

    def work(i: int) -> None:
        data = f"blob {i % 4}".encode() * 1000
        try:
            with s.content.writer(ref=f"t{i}") as w:
                w.write(data)
                results.append(w.commit(len(data), dd.digest_bytes(data)))
        except E.AlreadyExistsError:
            results.append(dd.digest_bytes(data))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 16 and len(set(results)) == 4
    assert s.verify() == [] and s.leftovers() == []


def test_a_prune_waits_for_a_lease_held_elsewhere_and_says_so(tmp_path: Path) -> None:
    """`system prune` while another process's pull (here: a lease held by another Store object)
    is under way: the CLI says it waits, does not prune until the lease ends, then prunes."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    root = tmp_path / "root"
    untagged = Store(root).image_from_directories([src])  # named by nothing: prunable
    exe = str(Path(sys.executable).parent / "docker-distribution")
    with Store(root).lease():
        proc = subprocess.Popen([exe, "--root", str(root), "system", "prune"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        line = proc.stderr.readline()  # printed once it found the lease held
        assert line == "Waiting for the pulls, pushes and loads in progress on this store to finish...\n"
        time.sleep(0.3)
        assert proc.poll() is None and untagged in Store(root).images.list()  # still waiting
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, err) == (0, "")
    assert f"deleted image {untagged}" in out and Store(root).images.list() == []


def _blocked_on_a_lock(pid: int) -> bool:
    """Whether process ``pid`` waits for an flock (a ``->`` line of /proc/locks)."""
    return any("->" in line and f" {pid} " in line for line in Path("/proc/locks").read_text().splitlines())


def test_tag_waits_for_a_prune_in_progress(tmp_path: Path) -> None:
    """A tag names an image a prune in progress could be deleting: `tag` holds a lease, so it waits
    for the prune (here: the exclusive gc lock held, as prune holds it), then tags."""
    from docker_distribution.fsutil import file_lock

    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    root = tmp_path / "root"
    image_id = Store(root).image_from_directories([src], parse_normalized_named("app:v1"))
    exe = str(Path(sys.executable).parent / "docker-distribution")
    with file_lock(root / "gc.lock"):
        proc = subprocess.Popen([exe, "--root", str(root), "tag", "app:v1", "app:v2"], stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while not _blocked_on_a_lock(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None and _blocked_on_a_lock(proc.pid)
        assert [r.tag for r in Store(root).references.references(image_id)] == ["v1"]
    _, err = proc.communicate(timeout=30)
    assert (proc.returncode, err) == (0, "")
    assert sorted(str(r.tag) for r in Store(root).references.references(image_id)) == ["v1", "v2"]


@pytest.mark.parametrize("argv", [["tag", "nothing:v1", "other:v2"], ["rmi", "nothing:v1"],
                                  ["unpack", "nothing:v1", "DIR"], ["save", "nothing:v1", "-o", "DIR"]])
def test_store_commands_name_a_missing_image_as_docker_does(tmp_path: Path, argv: list[str]) -> None:
    exe = str(Path(sys.executable).parent / "docker-distribution")
    argv = [str(tmp_path / "out") if a == "DIR" else a for a in argv]
    proc = subprocess.run([exe, "--root", str(tmp_path / "root"), *argv], capture_output=True, text=True)
    assert (proc.returncode, proc.stderr) == (1, "Error: No such image: nothing:v1\n")
    assert not (tmp_path / "out").exists()  # nothing written for a failed tag, unpack or save
    with pytest.raises(E.ReferenceNotFoundError):  # still the store's not-found class for API callers
        Store(tmp_path / "root").resolve("nothing:v1")


def test_a_chain_deeper_than_moby_s_125_layers_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path)
    parent = None
    for i in range(125):
        parent = store.layers.register(io.BytesIO(tgz({f"f{i}": b"x"})), parent).chain_id
    assert parent is not None and len(store.layers.chain(parent)) == 125
    with pytest.raises(E.MaxDepthExceededError, match="^max depth exceeded$"):
        store.layers.register(io.BytesIO(tgz({"one-too-many": b"x"})), parent)
    assert len(store.layers.list()) == 125 and store.leftovers() == []
