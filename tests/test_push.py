"""Push against the real registry: round trips with skopeo and umoci, mounts, zstd, auth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import docker_distribution as dd
import pytest
from bed.proxy import FaultProxy
from bed.registry import Registry
from conftest import TokenBed
from docker_distribution import errors as E
from docker_distribution.progress import CollectingProgress
from docker_distribution.pull import pull_image
from docker_distribution.layer import produce_layer
from docker_distribution.push import ImagePushConfig, push_image
from docker_distribution.registry.auth import AuthConfig
from docker_distribution.store import Store
from helpers import tree
from oci import image_manifest, skopeo_push, umoci_unpack, write_layout

ANON = dd.Config(auth_config=AuthConfig(), retry=dd.RetryPolicy(attempts=2, backoff=0.01))


def _source_image(tmp: Path, reg: Registry, repo: str) -> str:
    base = tmp / "src-base"
    (base / "etc").mkdir(parents=True)
    (base / "etc" / "os-release").write_text("ID=pushed\n")
    (base / "big.bin").write_bytes(os.urandom(3 << 20))
    (base / "link").symlink_to("etc/os-release")
    top = tmp / "src-top"
    top.mkdir()
    (top / ".wh.big.bin").write_text("")
    (top / "app").write_text("app\n")
    layout = tmp / "src-layout"
    write_layout(layout, "v1", [image_manifest(layout, [base, top])], as_index=False)
    skopeo_push(layout, "v1", f"{reg.host}/{repo}:v1")
    return f"{reg.host}/{repo}:v1"


@pytest.fixture
def pulled(registry: Registry, tmp_path: Path, repo_name: str) -> tuple[Store, dd.Reference, dd.Digest]:
    src = _source_image(tmp_path, registry, repo_name)
    store = Store(tmp_path / "store")
    ref = dd.parse_normalized_named(src)
    image_id = pull_image(ref, store, config=ANON)
    assert image_id is not None
    return store, ref, image_id


def test_push_to_another_repo_mounts_every_layer(registry: Registry, pulled: tuple[Store, dd.Reference, dd.Digest],
                                                 tmp_path: Path) -> None:
    store, ref, image_id = pulled
    proxy = FaultProxy(registry.url)
    try:
        # pull through the proxy host so the V2 metadata names the proxy's registry
        pstore = Store(tmp_path / "pstore")
        pref = dd.parse_normalized_named(f"{proxy.host}/{ref.path}:v1")
        pull_image(pref, pstore, config=ANON)
        target = dd.parse_normalized_named(f"{proxy.host}/{ref.path}-copy:v1")
        pstore.references.add_tag(target, image_id)
        out = CollectingProgress()
        push_image(target, pstore, config=ANON, progress_output=out)
        mounted = [p for p in out.items if p.action.startswith("Mounted from")]
        assert len(mounted) == 2 and all(p.action == f"Mounted from {ref.path}" for p in mounted)
        patched = [r for r in proxy.requests if r[0] in ("PATCH", "PUT") and "/blobs/uploads/" in r[1]]
        assert [r for r in patched if r[0] == "PATCH"] == []  # zero layer bytes uploaded
        assert any(t.startswith("v1: digest: sha256:") for t in out.texts())
        assert out.items[-1].aux is not None and out.items[-1].aux["Tag"] == "v1"
    finally:
        proxy.stop()


def test_a_name_only_push_pushes_every_local_tag_in_order_and_records_digests(
        registry: Registry, pulled: tuple[Store, dd.Reference, dd.Digest], repo_name: str) -> None:
    """moby's pushRepository: a name without tag or digest pushes each local tag of the repository,
    in the reference store's order (by the full reference string), skipping digest references."""
    store, _, image_id = pulled
    name = dd.parse_normalized_named(f"{registry.host}/{repo_name}-all")
    for tag in ("b", "10", "a"):
        store.references.add_tag(name.with_tag(tag), image_id)
    store.references.add_digest(name.with_digest(image_id), image_id)  # not a tag: not pushed by itself
    out = CollectingProgress()
    push_image(name, store, config=ANON, progress_output=out)
    done = [t.split(":")[0] for t in out.texts() if ": digest: sha256:" in t]
    assert done == ["10", "a", "b"]
    assert [p.aux["Tag"] for p in out.items if p.aux] == ["10", "a", "b"]
    assert sorted(dd.tags(name, ANON)) == ["10", "a", "b"]
    # each tag's manifest digest is now a digest reference of the image
    manifest = [t.split()[2] for t in out.texts() if t.startswith("10: digest: ")][0]
    assert store.references.get(name.with_digest(dd.Digest.parse(manifest))) == image_id


def test_push_to_a_second_registry_round_trips_through_skopeo_and_umoci(
        registry_factory: object, pulled: tuple[Store, dd.Reference, dd.Digest], tmp_path: Path) -> None:
    store, ref, image_id = pulled
    second: Registry = registry_factory()  # type: ignore[operator]
    target = dd.parse_normalized_named(f"{second.host}/copied/app:v1")
    store.references.add_tag(target, image_id)
    out = CollectingProgress()
    push_image(target, store, config=ANON, progress_output=out)
    assert out.texts()[0] == f"The push refers to repository [{second.host}/copied/app]"
    assert out.texts().count("Pushed") == 2
    # moby's Pushing bar: the diff's tar bytes read, against the diff's size, ending full
    chain = store.image_chain_id(image_id)
    sizes = {}
    while chain is not None:
        info = store.layers.info(chain)
        sizes[info.diff_id.short_id] = info.size
        chain = info.parent
    for layer_id, size in sizes.items():
        bars = [(p.current, p.total) for p in out.items if p.id == layer_id and p.action == "Pushing"]
        assert bars and {t for _, t in bars} == {size} and bars[-1] == (size, size), layer_id
        assert [c for c, _ in bars] == sorted(c for c, _ in bars)
    theirs = umoci_unpack(f"{second.host}/copied/app:v1", tmp_path / "u")
    ours = tmp_path / "ours"
    store.unpack(image_id, ours)
    assert tree(ours) == tree(theirs)
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{second.host}/copied/app:v1"],
                         capture_output=True, check=True).stdout
    assert b'\n   "schemaVersion": 2,\n   "mediaType": "application/vnd.docker.distribution.manifest.v2+json"' in raw
    assert json.loads(raw)["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
    # pushing again finds every layer already there
    again = CollectingProgress()
    push_image(target, store, config=ANON, progress_output=again)
    assert again.texts().count("Layer already exists") == 2


def test_cli_tag_and_push_at_a_chosen_zstd_level(registry_factory: object, pulled: tuple[Store, dd.Reference, dd.Digest],
                                                tmp_path: Path) -> None:
    store, ref, image_id = pulled
    reg: Registry = registry_factory()  # type: ignore[operator]
    exe = str(Path(sys.executable).parent / "docker-distribution")
    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path / "cfg")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([exe, "--root", str(tmp_path / "store"), *args], capture_output=True, text=True, env=env)

    dst = f"{reg.host}/cli/app:v2"
    assert run("tag", str(ref), dst).returncode == 0
    # a level the codec does not have is refused before anything is sent
    bad = run("push", "--compression", "gzip", "--compression-level", "13", dst)
    assert bad.returncode == 1 and bad.stderr == "Error: invalid gzip compression level 13: use 1-12\n"
    assert not (reg.storage / "docker/registry/v2/repositories/cli").exists()
    done = run("push", "--json", "--compression", "zstd", "--compression-level", "19", dst)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[0] == {"status": f"The push refers to repository [{reg.host}/cli/app]"}
    assert lines[-2]["status"].startswith("v2: digest: sha256:") and lines[-1]["aux"]["Tag"] == "v2"
    raw = json.loads(subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{dst}"],
                                    capture_output=True, check=True).stdout)
    # the layers are exactly what the producer makes at level 19 from the stored diffs
    top = store.image_chain_id(image_id)
    assert top is not None
    expected = []
    for info in store.layers.chain(top):
        with store.layers.get(info.chain_id) as layer:
            made = produce_layer(tmp_path / "made", source_diff=(layer.path, layer.split), compression="zstd", level=19)
        expected.append(str(made.digest))
    assert [layer["digest"] for layer in raw["layers"]] == expected
    assert {layer["mediaType"] for layer in raw["layers"]} == {"application/vnd.oci.image.layer.v1.tar+zstd"}
    # quiet, as docker push -q: no progress, only the reference pushed
    quiet = run("push", "-q", "--compression", "zstd", "--compression-level", "19", dst)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, f"{dst}\n", "")


def test_push_config_refuses_a_codec_or_level_it_cannot_make() -> None:
    for compression, level in (("gzip", 0), ("gzip", 13), ("zstd", 23), ("zstd", -1), ("xz", None), ("none", None)):
        with pytest.raises(E.InvalidOptionError):  # a DistributionError and a ValueError
            ImagePushConfig(layer_stores=None, upload_manager=None, image_store=None,  # type: ignore[arg-type]
                            reference_store=None, compression=compression, compression_level=level)  # type: ignore[arg-type]


def test_zstd_push_is_pulled_back_by_skopeo(registry_factory: object, pulled: tuple[Store, dd.Reference, dd.Digest],
                                            tmp_path: Path) -> None:
    store, ref, image_id = pulled
    reg: Registry = registry_factory()  # type: ignore[operator]
    target = dd.parse_normalized_named(f"{reg.host}/z/app:v1")
    store.references.add_tag(target, image_id)
    push_image(target, store, config=ANON, compression="zstd")
    raw = json.loads(subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{reg.host}/z/app:v1"],
                                    capture_output=True, check=True).stdout)
    assert raw["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert {layer["mediaType"] for layer in raw["layers"]} == {"application/vnd.oci.image.layer.v1.tar+zstd"}
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false", "--quiet", f"docker://{reg.host}/z/app:v1",
                    f"oci:{tmp_path / 'z-layout'}:t"], check=True)
    fresh = Store(tmp_path / "fresh")
    assert pull_image(target, fresh, config=ANON) == image_id


def test_a_zstd_push_never_mounts_gzip_blobs_but_mounts_zstd_ones(
        registry: Registry, pulled: tuple[Store, dd.Reference, dd.Digest]) -> None:
    """The pulled gzip layers live in the same registry: a zstd push must upload zstd blobs
    (moby has no zstd, so its metadata cannot tell); a second zstd push then mounts those."""
    store, ref, image_id = pulled

    def layers(target: dd.Reference) -> set[str]:
        raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{target}"],
                             capture_output=True, check=True).stdout
        return {layer["mediaType"] for layer in json.loads(raw)["layers"]}

    first = dd.parse_normalized_named(f"{registry.host}/{ref.path}-zstd:v1")
    store.references.add_tag(first, image_id)
    out = CollectingProgress()
    push_image(first, store, config=ANON, progress_output=out, compression="zstd")
    assert out.texts().count("Pushed") == 2 and not any(t.startswith("Mounted") for t in out.texts())
    assert layers(first) == {"application/vnd.oci.image.layer.v1.tar+zstd"}
    second = dd.parse_normalized_named(f"{registry.host}/{ref.path}-zstd2:v1")
    store.references.add_tag(second, image_id)
    out = CollectingProgress()
    push_image(second, store, config=ANON, progress_output=out, compression="zstd")
    assert [t for t in out.texts() if t.startswith("Mounted")] == [f"Mounted from {first.path}"] * 2
    assert layers(second) == {"application/vnd.oci.image.layer.v1.tar+zstd"}
    assert pull_image(second, Store(store.root.parent / "zback"), config=ANON) == image_id
    # and gzip pushes still mount the gzip originals
    third = dd.parse_normalized_named(f"{registry.host}/{ref.path}-gz:v1")
    store.references.add_tag(third, image_id)
    out = CollectingProgress()
    push_image(third, store, config=ANON, progress_output=out)
    assert [t for t in out.texts() if t.startswith("Mounted")] == [f"Mounted from {ref.path}"] * 2
    assert layers(third) == {"application/vnd.docker.image.rootfs.diff.tar.gzip"}


def test_push_with_a_pull_only_token_fails_typed_and_leaves_nothing(
        token_registry: TokenBed, pulled: tuple[Store, dd.Reference, dd.Digest], repo_name: str) -> None:
    store, _, image_id = pulled
    reg = token_registry.registry
    target = dd.parse_normalized_named(f"{reg.host}/{repo_name}:v1")
    store.references.add_tag(target, image_id)
    cfg = dd.Config(auth_config=AuthConfig(username="reader", password="reader-token-pw"))
    with pytest.raises(E.DistributionError) as info:
        push_image(target, store, config=cfg)
    assert isinstance(info.value, (E.DeniedError, E.UnauthorizedError))
    alice = AuthConfig(username="alice", password="alice-token-pw")
    with pytest.raises(E.DistributionError):  # no tag, no manifest was written
        dd.tags(target, dd.Config(auth_config=alice))


def test_a_mount_through_a_token_registry_asks_for_the_source_repositorys_pull_scope(
        token_registry: TokenBed, pulled: tuple[Store, dd.Reference, dd.Digest], repo_name: str) -> None:
    """docker/distribution registry/client/auth/session.go, scopes: a request with ``from=<repo>`` adds ``repository:<repo>:pull`` to the token it
    needs; without it the registry would not mount and every layer would be uploaded again."""
    store, _, image_id = pulled
    reg, issuer = token_registry.registry, token_registry.issuer
    cfg = dd.Config(auth_config=AuthConfig(username="alice", password="alice-token-pw"))
    first = dd.parse_normalized_named(f"{reg.host}/{repo_name}-a:v1")
    second = dd.parse_normalized_named(f"{reg.host}/{repo_name}-b:v1")
    for ref in (first, second):
        store.references.add_tag(ref, image_id)
    push_image(first, store, config=cfg)
    seen = len(issuer.requests)
    out = CollectingProgress()
    push_image(second, store, config=cfg, progress_output=out)
    assert [t for t in out.texts() if t.startswith("Mounted")] == [f"Mounted from {first.path}"] * 2
    assert not any(t == "Pushed" for t in out.texts())
    scopes = [sorted(r.params.get("scope", [])) for r in issuer.requests[seen:]]
    assert sorted([f"repository:{first.path}:pull", f"repository:{second.path}:push,pull"]) in scopes
    assert pull_image(second, Store(store.root.parent / "back"), config=cfg) == image_id


def test_push_errors_keep_mobys_messages(tmp_path: Path, registry: Registry) -> None:
    store = Store(tmp_path)
    with pytest.raises(E.DistributionError, match="An image does not exist locally with the tag: .*/nothing"):
        push_image(dd.parse_normalized_named(f"{registry.host}/nothing:v1"), store, config=ANON)
    store.references.add_tag(dd.parse_normalized_named(f"{registry.host}/x:v1"), dd.digest_bytes(b"i"))
    with pytest.raises(E.DistributionError, match="cannot push a digest reference"):
        push_image(dd.parse_normalized_named(f"{registry.host}/x@{dd.digest_bytes(b'm')}"), store, config=ANON)
    with pytest.raises(E.DistributionError, match="tag does not exist: .*/x:v2"):
        push_image(dd.parse_normalized_named(f"{registry.host}/x:v2"), store, config=ANON)
    with pytest.raises(E.DistributionError, match=f"^could not find image from tag {registry.host}/x:v1: "):
        push_image(dd.parse_normalized_named(f"{registry.host}/x:v1"), store, config=ANON)
    # a name whose only references are digests has nothing to push
    store.references.add_digest(dd.parse_normalized_named(f"{registry.host}/y@{dd.digest_bytes(b'm')}"), dd.digest_bytes(b"i"))
    with pytest.raises(E.DistributionError, match=f"^no tags to push for {registry.host}/y$"):
        push_image(dd.parse_normalized_named(f"{registry.host}/y"), store, config=ANON)
    # an image whose layers are not in the store
    missing = json.dumps({"os": "linux", "rootfs": {"type": "layers", "diff_ids": [str(dd.digest_bytes(b"tar"))]}})
    store.references.add_tag(dd.parse_normalized_named(f"{registry.host}/z:v1"), store.images.put(missing.encode()))
    with pytest.raises(E.DistributionError, match="^failed to get top layer from image: "):
        push_image(dd.parse_normalized_named(f"{registry.host}/z:v1"), store, config=ANON)
    for name in ("x", "y", "z"):  # nothing reached the registry
        with pytest.raises(E.DistributionError, match="name unknown"):
            dd.tags(dd.parse_normalized_named(f"{registry.host}/{name}"), ANON)


def _proxy_push(registry: Registry, store: Store, image_id: dd.Digest, proxy: FaultProxy, name: str) -> CollectingProgress:
    target = dd.parse_normalized_named(f"{proxy.host}/{name}:v1")
    store.references.add_tag(target, image_id, force=True)
    out = CollectingProgress()
    push_image(target, store, config=ANON, progress_output=out)
    return out


def test_a_413_switches_the_upload_to_chunks(registry_factory: object, pulled: tuple[Store, dd.Reference, dd.Digest],
                                             tmp_path: Path) -> None:
    from bed.proxy import Fault

    store, _, image_id = pulled
    reg: Registry = registry_factory()  # type: ignore[operator]
    proxy = FaultProxy(reg.url)
    try:
        proxy.add(Fault(match="/blobs/uploads/", method="PATCH", status=413, times=1))
        out = _proxy_push(reg, store, image_id, proxy, "chunked/app")
        patches = [h for (m, p, h) in proxy.requests if m == "PATCH"]
        assert any("Content-Range" in h for h in patches), "the retried upload used Content-Range chunks"
        assert out.texts().count("Pushed") == 2
        fresh = Store(tmp_path / "fresh")
        assert pull_image(dd.parse_normalized_named(f"{reg.host}/chunked/app:v1"), fresh, config=ANON) == image_id
        assert proxy.unfired() == []
    finally:
        proxy.stop()


def test_small_layers_go_up_in_one_put(registry_factory: object, tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    small = tmp_path / "small"
    small.mkdir()
    (small / "f").write_text("tiny")
    reg: Registry = registry_factory()  # type: ignore[operator]
    proxy = FaultProxy(reg.url)
    try:
        image_id = store.image_from_directories([small])
        _proxy_push(reg, store, image_id, proxy, "small/app")
        methods = [m for (m, p, _) in proxy.requests if "/blobs/uploads/" in p]
        assert "PATCH" not in methods and methods.count("PUT") == 2  # the layer and the config
    finally:
        proxy.stop()
