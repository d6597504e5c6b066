"""OCI image layouts: our save read by skopeo and umoci, skopeo's layouts loaded by us."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import docker_distribution as dd
import pytest
from bed.registry import Registry
from docker_distribution import errors as E
from docker_distribution.registry.auth import AuthConfig
from docker_distribution.store import Store
from helpers import tree

ANON = dd.Config(auth_config=AuthConfig())


def _image(store: Store, tmp: Path, name: str) -> tuple[dd.Reference, dd.Digest]:
    base, top = tmp / "base", tmp / "top"
    (base / "etc").mkdir(parents=True)
    (base / "etc" / "os-release").write_text("ID=layout\n")
    (base / "bin").mkdir()
    (base / "bin" / "x").write_bytes(os.urandom(100_000))
    (base / "bin" / "y").symlink_to("x")
    top.mkdir()
    (top / "etc").mkdir()
    (top / "etc" / ".wh.os-release").write_text("")
    (top / "app").write_text("app\n")
    ref = dd.parse_normalized_named(name)
    return ref, store.image_from_directories([base, top], ref)


@pytest.mark.parametrize("as_tar", [False, True], ids=["dir", "tar"])
def test_save_is_read_by_skopeo_and_umoci(tmp_path: Path, registry: Registry, repo_name: str, as_tar: bool) -> None:
    store = Store(tmp_path / "store")
    ref, image_id = _image(store, tmp_path, "example.com/team/app:1.0")
    out = tmp_path / ("saved.tar" if as_tar else "saved")
    store.save([ref], out)
    layout = out
    if as_tar:
        layout = tmp_path / "extracted"
        layout.mkdir()
        subprocess.run(["tar", "-xf", str(out), "-C", str(layout)], check=True)
    subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:1.0",
                    f"docker://{registry.host}/{repo_name}:1.0"], check=True)
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:1.0", str(bundle)], check=True, capture_output=True)
    ours = tmp_path / "ours"
    store.unpack(image_id, ours)
    assert tree(ours) == tree(bundle / "rootfs")
    pulled = Store(tmp_path / "pulled")
    assert dd.pull_image(dd.parse_normalized_named(f"{registry.host}/{repo_name}:1.0"), pulled, config=ANON) == image_id


def test_load_of_a_skopeo_layout_gives_skopeos_config_digest(tmp_path: Path, registry: Registry, repo_name: str) -> None:
    src = Store(tmp_path / "src")
    ref, _ = _image(src, tmp_path, f"{registry.host}/{repo_name}:v1")
    dd.push_image(ref, src, config=ANON)
    layout = tmp_path / "skopeo-layout"
    subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}", f"oci:{layout}:v1"],
                   check=True)
    raw = json.loads(subprocess.run(["skopeo", "inspect", "--raw", f"oci:{layout}:v1"], capture_output=True,
                                    check=True).stdout)
    store = Store(tmp_path / "dst")
    [(image_id, name)] = store.load(layout)
    assert str(image_id) == raw["config"]["digest"]
    assert name is None  # skopeo names only the tag
    rootfs = tmp_path / "rootfs"
    store.unpack(image_id, rootfs)
    assert (rootfs / "app").read_text() == "app\n" and not (rootfs / "etc" / "os-release").exists()
    assert store.verify() == []


def test_load_refuses_a_tampered_layout(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    ref, _ = _image(store, tmp_path, "example.com/a:1")
    store.save([ref], tmp_path / "saved")
    index = json.loads((tmp_path / "saved" / "index.json").read_text())
    manifest_path = tmp_path / "saved" / "blobs" / "sha256" / index["manifests"][0]["digest"].split(":")[1]
    layer = json.loads(manifest_path.read_text())["layers"][0]["digest"].split(":")[1]
    blob = tmp_path / "saved" / "blobs" / "sha256" / layer
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 1
    blob.write_bytes(bytes(data))
    fresh = Store(tmp_path / "fresh")
    with pytest.raises((E.DigestMismatchError, E.CorruptLayerError)):
        fresh.load(tmp_path / "saved")
    assert fresh.layers.list() == [] and fresh.images.list() == []


def test_save_and_load_cli(tmp_path: Path) -> None:
    root = tmp_path / "root"
    store = Store(root)
    ref, image_id = _image(store, tmp_path, "example.com/cli/app:2")
    exe = str(Path(sys.executable).parent / "docker-distribution")
    subprocess.run([exe, "--root", str(root), "save", str(ref), "-o", str(tmp_path / "img.tar")], check=True)
    out = subprocess.run([exe, "--root", str(tmp_path / "other"), "load", "-i", str(tmp_path / "img.tar")],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "Loaded image: example.com/cli/app:2"
    assert Store(tmp_path / "other").references.get(ref) == image_id

    def save_load(what: str, name: str) -> str:
        subprocess.run([exe, "--root", str(root), "save", what, "-o", str(tmp_path / name)], check=True)
        return subprocess.run([exe, "--root", str(tmp_path / f"{name}-store"), "load", "-i", str(tmp_path / name)],
                              capture_output=True, text=True, check=True).stdout

    # by an image ID prefix, as docker save takes it: the layout names no reference, and the load
    # says "Loaded image ID", as docker's does
    assert save_load(image_id.encoded[:12], "by-id") == f"Loaded image ID: {image_id}\n"
    by_id = Store(tmp_path / "by-id-store")
    assert by_id.images.list() == [image_id] and by_id.references.all() == {}
    store.tag(str(image_id), dd.parse_normalized_named("busybox:cli"))
    assert save_load("busybox:cli", "hub") == "Loaded image: busybox:cli\n"  # familiar, as docker prints it


def test_save_to_stdout_and_load_from_stdin_as_docker_does(tmp_path: Path) -> None:
    """``save`` without -o streams a tar to stdout (refusing a terminal, in docker's words);
    ``load`` without -i reads one from stdin, compressed or not."""
    import gzip
    import pty

    root = tmp_path / "root"
    ref, image_id = _image(Store(root), tmp_path, "example.com/pipe/app:1")
    exe = str(Path(sys.executable).parent / "docker-distribution")
    saved = subprocess.run([exe, "--root", str(root), "save", str(ref)], capture_output=True, check=True).stdout
    for name, data in [("plain", saved), ("gzip", gzip.compress(saved)), ("docker", DOCKER_ARCHIVE.read_bytes())]:
        out = subprocess.run([exe, "--root", str(tmp_path / name), "load"], input=data, capture_output=True,
                             check=True).stdout.decode()
        assert out == {"docker": "Loaded image: 127.0.0.1:5000/fixture/app:v1\nLoaded image: dd-fixture/base:1\n"
                       }.get(name, "Loaded image: example.com/pipe/app:1\n")
    assert Store(tmp_path / "gzip").references.get(ref) == image_id
    leader, follower = pty.openpty()
    with subprocess.Popen([exe, "--root", str(root), "save", str(ref)], stdout=follower, stderr=subprocess.PIPE) as p:
        os.close(follower)
        err = p.stderr.read().decode() if p.stderr else ""
    os.close(leader)
    assert p.returncode == 1
    assert err == "Error: cowardly refusing to save to a terminal. Use the -o flag or redirect\n"
    leader, follower = pty.openpty()
    r = subprocess.run([exe, "--root", str(root), "load"], stdin=follower, capture_output=True, text=True)
    os.close(follower)
    os.close(leader)
    assert (r.returncode, r.stderr) == (1, "Error: requested load from stdin, but stdin is empty\n")


def test_a_killed_load_leaves_only_what_prune_removes(tmp_path: Path) -> None:
    """A load SIGKILLed while it unpacks leaves its scratch directory named as the store's
    temporary files are, so the next opening of the store removes it (``tempfile``'s names were
    never found)."""
    import signal
    import time

    exe = str(Path(sys.executable).parent / "docker-distribution")
    data = (Path(__file__).parent / "corpus" / "docker-20.10-whiteouts.tar.xz").read_bytes()
    root = tmp_path / "root"
    Store(root)
    p = subprocess.Popen([exe, "--root", str(root), "load"], stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert p.stdin is not None
    p.stdin.write(data[: len(data) // 2])
    p.stdin.flush()
    deadline = time.monotonic() + 30
    while not list(root.glob(".tmp-load-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    p.stdin.close()
    [left] = root.glob(".tmp-load-*")  # what the killed load had unpacked
    assert any(left.rglob("*"))
    store = Store(root)  # opening the store removes temporary files whose writer is gone
    assert not left.exists() and store.leftovers() == [] and not list(root.rglob(".tmp-*"))


def test_a_save_to_tar_that_fails_midway_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tarfile

    store = Store(tmp_path / "root")
    ref, _ = _image(store, tmp_path, "example.com/cli/app:3")
    out = tmp_path / "out"
    out.mkdir()
    real_add = tarfile.TarFile.add
    calls = 0

    def add(self: tarfile.TarFile, *args: object, **kwargs: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:  # the archive is half written: the disk fills, say
            raise OSError(28, "No space left on device")
        real_add(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tarfile.TarFile, "add", add)
    with pytest.raises(OSError):
        store.save([ref], out / "img.tar")
    assert list(out.iterdir()) == []  # no partial img.tar, no temporary directory


def _digest_blob(layout: Path, data: bytes) -> dict[str, object]:
    d = dd.digest_bytes(data)
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / d.encoded).write_bytes(data)
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": str(d), "size": len(data)}


def _hostile_dir(layout: Path, case: str) -> None:
    layout.mkdir()
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    config = _digest_blob(layout, b'{"os":"linux","rootfs":{"type":"layers","diff_ids":[]}}')
    missing = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + "0" * 64, "size": 1}
    index: object = {
        "not-json": "{",
        "index-huge": '{"schemaVersion": 2, "manifests": []}' + " " * (17 << 20),  # valid, but over the 16 MiB cap
        "index-not-an-object": [],
        "manifests-not-a-list": {"manifests": 3},
        "descriptor-of-wrong-types": {"manifests": [{"digest": 5, "size": "1"}]},
        "manifest-blob-missing": {"manifests": [missing]},
        "manifest-without-config": {"manifests": [_digest_blob(layout, b'{"layers":[]}')]},
        "manifest-not-json": {"manifests": [_digest_blob(layout, b"\x80 not json")]},
        "layer-blob-missing": {"manifests": [_digest_blob(layout, json.dumps(
            {"config": config, "layers": [missing]}).encode())]},
    }[case]
    (layout / "index.json").write_text(index if isinstance(index, str) else json.dumps(index))


def _hostile_tar(path: Path, case: str) -> None:
    import io
    import tarfile
    if case == "not-a-tar":
        path.write_bytes(b"\x00garbage" * 100)
        return
    with tarfile.open(path, "w") as t:
        info = tarfile.TarInfo({"tar-traversal": "../escaped", "tar-absolute": "/tmp/escaped-abs",
                                "tar-device": "dev", "tar-symlink-out": "blobs"}[case])
        if case == "tar-device":
            info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
        elif case == "tar-symlink-out":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc"
        else:
            info.size = 1
        t.addfile(info, io.BytesIO(b"x") if info.type == tarfile.REGTYPE else None)


@pytest.mark.parametrize("case", ["not-json", "index-huge", "index-not-an-object", "manifests-not-a-list", "descriptor-of-wrong-types",
                                  "manifest-blob-missing", "manifest-without-config", "manifest-not-json",
                                  "layer-blob-missing", "not-a-tar", "tar-traversal", "tar-absolute", "tar-device",
                                  "tar-symlink-out"])
def test_load_of_a_hostile_layout_is_a_typed_error_and_loads_nothing(tmp_path: Path, case: str) -> None:
    """Each bad layout (directory or archive) raises InvalidLayoutError: no TypeError or KeyError, no
    file written outside the unpacking directory, no image, layer or tag in the store."""
    source = tmp_path / "in" / "layout"
    source.parent.mkdir()
    if case.startswith("tar") or case == "not-a-tar":
        source = source.with_suffix(".tar")
        _hostile_tar(source, case)
    else:
        _hostile_dir(source, case)
    store = Store(tmp_path / "store")
    with pytest.raises(E.InvalidLayoutError):
        store.load(source)
    assert store.images.list() == [] and store.layers.list() == [] and store.references.all() == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "store"] and not Path("/tmp/escaped-abs").exists()
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == [source.name]


# --- docker's own archive format (manifest.json) ---------------------------------------------------

#: made here with Debian's dockerd 20.10.24: ``docker import`` of a small tree (a symlink and a
#: hardlink in it), ``docker build`` of two COPY layers on it, ``docker save`` of both tags; docker
#: before 25.0 writes only this format (``<id>/layer.tar``, a shared layer as a symlink, no index.json)
DOCKER_ARCHIVE = Path(__file__).parent / "corpus" / "docker-20.10-save.tar"
DOCKER_APP = "sha256:1d5b5e2e5ef7c1074015e6448dd85ee254c947a16e89413fce024849e4756855"
DOCKER_BASE = "sha256:350629720e5953aa32dae16566d675955096a2c809ac0a9c720d46fb1ec44d74"
DOCKER_BASE_DIFF_ID = "sha256:30fdf7c8f2766a97313db11fd7a9968599f62ac5bbe5c6d651d8b4de01e17a6b"


def test_load_of_a_docker_save_archive_gives_dockers_image_ids(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    loaded = store.load(DOCKER_ARCHIVE)
    assert [(str(i), r.familiar if r else None) for i, r in loaded] == [
        (DOCKER_APP, "127.0.0.1:5000/fixture/app:v1"), (DOCKER_BASE, "dd-fixture/base:1")]
    assert str(store.resolve(dd.parse_normalized_named("dd-fixture/base:1"))) == DOCKER_BASE
    assert len(store.layers.list()) == 3  # the base layer, saved twice (once as a symlink), stored once
    store.unpack(dd.Digest.parse(DOCKER_APP), tmp_path / "rootfs")
    t = tree(tmp_path / "rootfs")
    assert t["usr/bin/alias"] == ("link", "tool") and t["usr/bin/hard"] == t["usr/bin/tool"]
    assert (tmp_path / "rootfs" / "a.txt").read_text() == "layer two\n"
    assert (tmp_path / "rootfs" / "etc" / "b" / "c").read_text() == "three\n"
    assert os.stat(tmp_path / "rootfs" / "usr/bin/hard").st_ino == os.stat(tmp_path / "rootfs" / "usr/bin/tool").st_ino
    assert store.load(DOCKER_ARCHIVE) == loaded and store.verify() == []  # again: nothing new
    # docker images shows 28B and 12B for these (its overlay2 DiffSize); a layer record written
    # before the content size was kept is measured as moby measures the diff
    sizes = (store.image_size(dd.Digest.parse(DOCKER_APP)), store.image_size(dd.Digest.parse(DOCKER_BASE)))
    assert sizes == (28, 12)
    for meta in (tmp_path / "store" / "layers" / "sha256").glob("*/meta.json"):
        record = json.loads(meta.read_text())
        del record["content_size"]
        meta.write_text(json.dumps(record))
    old = Store(tmp_path / "store")
    assert (old.image_size(dd.Digest.parse(DOCKER_APP)), old.image_size(dd.Digest.parse(DOCKER_BASE))) == sizes


def _full_tree(root: Path) -> dict[str, tuple[object, ...]]:
    """Kind and mode, owner, contents or link target, link count and mtime of every path (a
    directory's mtime aside: docker's export stamps its own)."""
    import hashlib
    import stat

    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            what = os.readlink(p) if stat.S_ISLNK(st.st_mode) else \
                hashlib.sha256(p.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else ""
            out[str(p.relative_to(root))] = (oct(st.st_mode), st.st_uid, st.st_gid, what,
                                             st.st_nlink if stat.S_ISREG(st.st_mode) else 0,
                                             0 if stat.S_ISDIR(st.st_mode) else int(st.st_mtime))
    return out


@pytest.mark.skipif(os.geteuid() != 0, reason="owners, setuid and a fifo as docker made them need root")
def test_a_docker_built_image_unpacks_to_what_docker_exports(tmp_path: Path) -> None:
    """An image dockerd 20.10 built here (Dockerfile below), saved and xz-compressed; beside it
    ``docker export`` of a container made from it (less the container's own files and the
    busybox that ran the steps): our unpack of the loaded image must be that tree, to the owner,
    mode bit, link count and mtime. The steps delete files (whiteouts), replace a directory
    (an opaque whiteout), and add a hardlink across layers, a symlink, a fifo, setuid and a chown::

        FROM dd-fixture/base:1      # the docker-20.10-save.tar base
        COPY busybox /busybox
        COPY a /opt/a               # one, two
        COPY b /opt/b               # three
        RUN ["/busybox", "rm", "/opt/a/one", "/etc/os-release"]
        RUN ["/busybox", "sh", "-c", "rm -rf /opt/b && mkdir /opt/b && echo new > /opt/b/x &&
             ln -s /opt/b/x /opt/link && ln /opt/a/two /opt/hard && mkfifo /opt/fifo &&
             chmod 4755 /opt/a/two && chown 1000:1000 /opt/b/x"]
    """
    corpus = Path(__file__).parent / "corpus"
    store = Store(tmp_path / "store")
    [(image_id, ref)] = store.load(corpus / "docker-20.10-whiteouts.tar.xz")
    assert ref is not None and ref.familiar == "wh:1"
    assert str(image_id) == "sha256:c1a8ed381152aa39e4da297ec1109050f517541b9f1e746001c7b5e752881d38"
    assert store.image_size(image_id) == 1982288  # docker image inspect -f {{.Size}}: the same
    store.unpack(image_id, tmp_path / "ours")
    (tmp_path / "ours" / "busybox").unlink()
    (tmp_path / "docker").mkdir()
    subprocess.run(["tar", "-C", str(tmp_path / "docker"), "-xJpf", str(corpus / "docker-20.10-whiteouts-export.tar.xz")],
                   check=True)
    assert _full_tree(tmp_path / "ours") == _full_tree(tmp_path / "docker")


def test_save_writes_dockers_manifest_json_too(tmp_path: Path) -> None:
    """docker load reads manifest.json (docker before 25.0 reads nothing else): ours names the same
    blobs as index.json, and a load through it alone gives the same image and tags."""
    store = Store(tmp_path / "root")
    ref, image_id = _image(store, tmp_path, "example.com/team/app:1.0")
    store.tag(str(image_id), dd.parse_normalized_named("busybox:also"))
    out = tmp_path / "out"
    store.save([ref, "busybox:also", image_id.encoded[:12]], out)
    [item] = json.loads((out / "manifest.json").read_text())
    assert item["RepoTags"] == ["example.com/team/app:1.0", "busybox:also"]  # familiar, once per image
    assert item["Config"] == f"blobs/sha256/{image_id.encoded}"
    [m] = {json.dumps(d, sort_keys=True) for d in json.loads((out / "index.json").read_text())["manifests"]
           for d in [{"digest": d["digest"]}]}
    manifest = json.loads((out / "blobs" / "sha256" / json.loads(m)["digest"].split(":")[1]).read_text())
    assert item["Layers"] == [f"blobs/sha256/{layer['digest'].split(':')[1]}" for layer in manifest["layers"]]
    (out / "index.json").unlink()
    other = Store(tmp_path / "other")
    assert [(i, r.familiar if r else None) for i, r in other.load(out)] == [
        (image_id, "example.com/team/app:1.0"), (image_id, "busybox:also")]
    other.unpack(image_id, tmp_path / "a")
    store.unpack(image_id, tmp_path / "b")
    assert tree(tmp_path / "a") == tree(tmp_path / "b")


def _docker_archive(tmp_path: Path, case: str) -> Path:
    """The corpus archive, unpacked and bent."""
    import tarfile
    d = tmp_path / "in" / "archive"
    d.mkdir(parents=True)
    with tarfile.open(DOCKER_ARCHIVE) as t:
        t.extractall(d, filter="data")
    items = json.loads((d / "manifest.json").read_text())
    app = items[0]
    if case == "config-outside":
        app["Config"] = "../../../../../../etc/hostname"
    elif case == "layer-symlink-outside":
        (d / "evil").symlink_to("/etc/hostname")
        app["Layers"][1] = "evil"
    elif case == "layer-missing":
        app["Layers"][1] = "nope/layer.tar"
    elif case == "layer-count":
        app["Layers"] = app["Layers"][:2]
    elif case == "layers-swapped":  # each a real layer, neither the one the config names
        app["Layers"][1], app["Layers"][2] = app["Layers"][2], app["Layers"][1]
    elif case == "tag-by-digest":
        app["RepoTags"] = ["example.com/x@sha256:" + "a" * 64]
    elif case == "not-a-list":
        items = {"Config": app["Config"]}
    elif case == "entry-of-wrong-types":
        app["Layers"] = "a/layer.tar"
    elif case == "config-not-json":
        (d / app["Config"]).write_bytes(b"\x80{")
    (d / "manifest.json").write_text(json.dumps(items))
    if case == "manifest-huge":  # over the 16 MiB cap: never read
        (d / "manifest.json").write_text(json.dumps(items) + " " * (17 << 20))
    return d


@pytest.mark.parametrize("case", ["config-outside", "layer-symlink-outside", "layer-missing", "layer-count",
                                  "layers-swapped", "tag-by-digest", "not-a-list", "entry-of-wrong-types",
                                  "config-not-json", "manifest-huge"])
def test_load_of_a_bent_docker_archive_is_a_typed_error_and_tags_nothing(tmp_path: Path, case: str) -> None:
    source = _docker_archive(tmp_path, case)
    store = Store(tmp_path / "store")
    with pytest.raises(E.InvalidLayoutError) as info:
        store.load(source)
    expected = {"layer-count": "^invalid manifest, layers length mismatch: expected 2, got 3$",
                "layers-swapped": '^invalid diffID for layer 1: expected "sha256:',
                "tag-by-digest": '^invalid tag "example.com/x@sha256:'}.get(case)
    if expected:
        assert re.search(expected, str(info.value)), str(info.value)
    assert store.references.all() == {} and store.images.list() == []
    # at most the bottom layer, the config's own, stays (as after a failed pull); never a wrong one
    assert {str(i.diff_id) for i in store.layers.list()} <= {DOCKER_BASE_DIFF_ID}
