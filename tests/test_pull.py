"""Pull against the real registry: images pushed by skopeo, unpacked and compared with umoci."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import docker_distribution as dd
import pytest
from bed.registry import Registry
from docker_distribution import errors as E
from docker_distribution.platform import Platform
from docker_distribution.progress import CollectingProgress
from docker_distribution.pull import NoMatchesError, pull_image
from docker_distribution.registry.auth import AuthConfig
from docker_distribution.store import Store
from helpers import tree
from oci import image_manifest, skopeo_push, umoci_unpack, write_layout

ANON = dd.Config(auth_config=AuthConfig(), retry=dd.RetryPolicy(attempts=2, backoff=0.01))


def _base(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "os-release").write_text("ID=test\n")
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_bytes(os.urandom(300_000))
    (root / "bin" / "tool").chmod(0o755)
    (root / "bin" / "alias").symlink_to("tool")
    os.link(root / "bin" / "tool", root / "bin" / "hard")
    (root / "gone").write_text("deleted later")
    (root / "dir").mkdir()
    (root / "dir" / "old").write_text("hidden by the opaque dir")
    (root / "data").mkdir()
    (root / "data" / "blob").write_bytes(os.urandom(2_000_000))
    return root


def _top(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / ".wh.gone").write_text("")
    (root / "dir").mkdir()
    (root / "dir" / ".wh..wh..opq").write_text("")
    (root / "dir" / "new").write_text("new content")
    (root / "etc").mkdir()
    (root / "etc" / "motd").write_text("hello\n")
    return root


@pytest.fixture(scope="module")
def layers(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    work = tmp_path_factory.mktemp("layers")
    return [_base(work / "base"), _top(work / "top")]


def _push(tmp: Path, reg: Registry, repo: str, layer_dirs: list[Path], *, compression: str = "gzip") -> str:
    layout = tmp / f"layout-{repo.replace('/', '_')}-{compression}"
    entry = image_manifest(layout, layer_dirs, compression=compression)
    write_layout(layout, "v1", [entry], as_index=False)
    skopeo_push(layout, "v1", f"{reg.host}/{repo}:v1")
    return f"{reg.host}/{repo}:v1"


def test_pull_gzip_image_matches_umoci(registry: Registry, layers: list[Path], tmp_path: Path, repo_name: str) -> None:
    ref_s = _push(tmp_path, registry, repo_name, layers)
    store = Store(tmp_path / "store")
    progress = CollectingProgress()
    image_id = pull_image(dd.parse_normalized_named(ref_s), store, config=ANON, progress_output=progress)
    ours = tmp_path / "ours"
    store.unpack(image_id, ours)
    theirs = umoci_unpack(ref_s, tmp_path)
    assert tree(ours) == tree(theirs)
    assert not (ours / "gone").exists() and sorted(os.listdir(ours / "dir")) == ["new"]
    assert (ours / "bin" / "hard").stat().st_ino == (ours / "bin" / "tool").stat().st_ino
    texts = progress.texts()
    for word in ("Pulling fs layer", "Downloading", "Verifying Checksum", "Download complete", "Extracting",
                 "Pull complete"):
        assert word in texts, word
    assert texts[0] == f"Pulling from {repo_name}"
    assert any(t.startswith("Digest: sha256:") for t in texts)
    assert texts[-1] == f"Status: Downloaded newer image for {ref_s}"
    assert store.verify() == []
    # again: nothing to do
    again = CollectingProgress()
    assert pull_image(dd.parse_normalized_named(ref_s), store, config=ANON, progress_output=again) == image_id
    assert again.texts()[-1] == f"Status: Image is up to date for {ref_s}"


def test_shared_layers_already_exist(registry: Registry, layers: list[Path], tmp_path: Path, repo_name: str) -> None:
    first = _push(tmp_path, registry, repo_name + "-a", layers[:1])
    second = _push(tmp_path, registry, repo_name + "-b", layers)
    store = Store(tmp_path / "store")
    pull_image(dd.parse_normalized_named(first), store, config=ANON)
    progress = CollectingProgress()
    pull_image(dd.parse_normalized_named(second), store, config=ANON, progress_output=progress)
    assert "Already exists" in progress.texts()
    assert len(store.layers.list()) == 2


def test_pull_zstd_image(registry: Registry, layers: list[Path], tmp_path: Path, repo_name: str) -> None:
    ref_s = _push(tmp_path, registry, repo_name, layers, compression="zstd")
    store = Store(tmp_path / "store")
    image_id = pull_image(dd.parse_normalized_named(ref_s), store, config=ANON)
    ours = tmp_path / "ours"
    store.unpack(image_id, ours)
    gz = _push(tmp_path, registry, repo_name + "-gz", layers)
    gz_store = Store(tmp_path / "gz-store")
    gz_id = pull_image(dd.parse_normalized_named(gz), gz_store, config=ANON)
    gz_tree = tmp_path / "gz"
    gz_store.unpack(gz_id, gz_tree)
    assert tree(ours) == tree(gz_tree)
    assert gz_id == image_id  # same diffIDs, same config: the same image whatever the compression


def _multi(tmp: Path, reg: Registry, repo: str, layer_dirs: list[Path], fmt: str | None) -> str:
    layout = tmp / f"multi-{fmt or 'oci'}"
    arm_dir = tmp / "arm-layer"
    if not arm_dir.exists():
        arm_dir.mkdir()
        (arm_dir / "arch").write_text("arm64\n")
    amd_dir = tmp / "amd-layer"
    if not amd_dir.exists():
        amd_dir.mkdir()
        (amd_dir / "arch").write_text("amd64\n")
    entries = [image_manifest(layout, [arm_dir], arch="arm64", variant="v8"),
               image_manifest(layout, [amd_dir], arch="amd64")]
    write_layout(layout, "v1", entries, as_index=True)
    skopeo_push(layout, "v1", f"{reg.host}/{repo}:v1", all_images=True, fmt=fmt)
    return f"{reg.host}/{repo}:v1"


@pytest.mark.parametrize("fmt", [None, "v2s2"], ids=["oci-index", "docker-manifest-list"])
def test_multi_arch_selects_the_platform(registry: Registry, layers: list[Path], tmp_path: Path, repo_name: str,
                                         fmt: str | None) -> None:
    ref_s = _multi(tmp_path, registry, repo_name, layers, fmt)
    ref = dd.parse_normalized_named(ref_s)
    store = Store(tmp_path / "store")
    host = pull_image(ref, store, config=ANON)
    out = tmp_path / "host"
    store.unpack(host, out)
    assert (out / "arch").read_text() == "amd64\n"
    arm_store = Store(tmp_path / "arm")
    chosen = CollectingProgress()
    arm = pull_image(ref, arm_store, config=ANON, platform=Platform("linux", "arm64"), progress_output=chosen)
    assert not any(t.startswith("WARNING") for t in chosen.texts())  # the index had it
    out_arm = tmp_path / "arm-out"
    arm_store.unpack(arm, out_arm)
    assert (out_arm / "arch").read_text() == "arm64\n"
    with pytest.raises(NoMatchesError, match="no matching manifest for linux/s390x in the manifest list entries"):
        pull_image(ref, Store(tmp_path / "s390x"), config=ANON, platform=Platform("linux", "s390x"))
    manifest = store.content.read(dd.Digest.parse(next(
        k.split("@")[1] for k in store.references.all()[ref.familiar_name] if "@" in k)))
    assert (b"manifest.list" in manifest) == (fmt == "v2s2")


def test_a_platform_a_single_image_does_not_have_pulls_it_with_docker_s_warning(
        registry: Registry, layers: list[Path], tmp_path: Path, repo_name: str) -> None:
    ref_s = _push(tmp_path, registry, repo_name, layers)  # amd64 only, no index
    out = CollectingProgress()
    image_id = pull_image(dd.parse_normalized_named(ref_s), Store(tmp_path / "s"), config=ANON,
                          platform=Platform("linux", "arm64"), progress_output=out)
    assert image_id is not None and out.texts()[-1] == (
        f"WARNING: image with reference {ref_s} was found but does not match the specified platform: "
        "wanted linux/arm64, actual: linux/amd64")
    fine = CollectingProgress()
    pull_image(dd.parse_normalized_named(ref_s), Store(tmp_path / "s2"), config=ANON,
               platform=Platform("linux", "amd64"), progress_output=fine)
    assert fine.texts()[-1].startswith("Status: Downloaded newer image")


def test_pull_by_digest_and_all_tags(registry: Registry, layers: list[Path], tmp_path: Path, repo_name: str) -> None:
    ref_s = _push(tmp_path, registry, repo_name, layers[:1])
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--quiet",
                    f"docker://{ref_s}", f"docker://{registry.host}/{repo_name}:v2"], check=True)
    store = Store(tmp_path / "store")
    pulled = dd.pull_all_tags(f"{registry.host}/{repo_name}", store, config=ANON)
    image_id = store.references.get(dd.parse_normalized_named(ref_s))
    assert pulled == {dd.parse_normalized_named(f"{registry.host}/{repo_name}:{t}"): image_id for t in ("v1", "v2")}
    tags = {k for k in store.references.all()[f"{registry.host}/{repo_name}"]}
    assert {f"{registry.host}/{repo_name}:v1", f"{registry.host}/{repo_name}:v2"} <= tags
    digest_key = next(k for k in tags if "@" in k)
    by_digest = Store(tmp_path / "by-digest")
    assert pull_image(dd.parse_normalized_named(digest_key), by_digest, config=ANON) == image_id


def test_corrupted_blob_on_the_registry_is_refused(registry: Registry, layers: list[Path], tmp_path: Path,
                                                   repo_name: str) -> None:
    layout = tmp_path / "layout"
    entry = image_manifest(layout, layers[:1])
    write_layout(layout, "v1", [entry], as_index=False)
    skopeo_push(layout, "v1", f"{registry.host}/{repo_name}:v1")
    import json

    manifest = json.loads((layout / "blobs" / "sha256" / str(entry["digest"]).split(":")[1]).read_bytes())
    blob = registry.blob_path(manifest["layers"][0]["digest"])
    original = blob.read_bytes()
    corrupt = bytearray(original)
    corrupt[len(corrupt) // 2] ^= 0xFF
    blob.write_bytes(bytes(corrupt))
    try:
        store = Store(tmp_path / "store")
        with pytest.raises(E.DigestMismatchError):
            pull_image(dd.parse_normalized_named(f"{registry.host}/{repo_name}:v1"), store, config=ANON)
        assert store.layers.list() == [] and store.images.list() == [] and store.references.all() == {}
        assert store.leftovers() == []
    finally:
        blob.write_bytes(original)


def test_cli_pull_images_unpack_rmi(registry: Registry, layers: list[Path], tmp_path: Path, repo_name: str) -> None:
    ref_s = _push(tmp_path, registry, repo_name, layers)
    exe = str(Path(sys.executable).parent / "docker-distribution")
    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path / "cfg"), "DOCKER_DISTRIBUTION_ROOT": str(tmp_path / "root")}

    def run(*args: str) -> str:
        proc = subprocess.run([exe, *args], capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    out = run("pull", ref_s)
    assert "Pull complete" in out and out.strip().splitlines()[-1] == ref_s
    assert "Downloading" not in out and "Extracting" not in out and "[" not in out  # no bars off a TTY, as docker
    assert "Status: Downloaded newer image for" in out
    assert run("pull", "-q", ref_s) == f"{ref_s}\n"  # as docker pull -q: the reference, nothing else
    # a tag and a digest: the docker CLI asks for the digest alone
    digest = next(line.split()[1] for line in out.splitlines() if line.startswith("Digest: "))
    both = run("pull", f"{ref_s}@{digest}")
    assert both.splitlines()[0] == f"{ref_s.rsplit(':', 1)[0]}@{digest}: Pulling from {repo_name}"
    # docker's REF rules: a bare name means :latest (announced), and -a takes no tag
    bare = subprocess.run([exe, "pull", ref_s.rsplit(":", 1)[0]], capture_output=True, text=True, env=env)
    assert bare.returncode == 1 and bare.stdout.startswith("Using default tag: latest\n")
    assert "manifest unknown" in bare.stderr  # the image has no :latest
    for command in ("pull", "push"):
        both = subprocess.run([exe, command, "-a", ref_s], capture_output=True, text=True, env=env)
        assert (both.returncode, both.stderr) == (1, "Error: tag can't be used with --all-tags/-a\n")
    json_out = run("pull", "--json", ref_s)
    assert '{"status":"Status: Image is up to date for ' + ref_s + '"}' in json_out
    listing = run("images")
    assert f"{registry.host}/{repo_name}" in listing and "v1" in listing
    short_id = listing.splitlines()[1].split()[2]
    repo_s = ref_s.rsplit(":", 1)[0]
    # docker images [REPOSITORY[:TAG]], -q, --no-trunc
    assert run("images", ref_s) == run("images", repo_s) == run("images", repo_s.rsplit("/", 1)[0] + "/*") == listing
    assert run("images", f"{repo_s}:nope").split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert run("images", "-q", repo_s) == f"{short_id}\n"
    full_id = run("images", "-q", "--no-trunc")
    with_digests = run("images", "--digests").splitlines()
    assert with_digests[0].split() == ["REPOSITORY", "TAG", "DIGEST", "IMAGE", "ID", "CREATED", "SIZE"]
    assert with_digests[1].split()[:4] == [repo_s, "v1", digest, short_id]  # pulled by tag, then by digest
    assert full_id.startswith(f"sha256:{short_id}") and len(full_id) == len("sha256:") + 64 + 1
    run("unpack", ref_s, str(tmp_path / "rootfs"))
    assert (tmp_path / "rootfs" / "etc" / "motd").read_text() == "hello\n"
    assert "store is consistent" in run("system", "verify")
    layer_dirs = [p.name for p in (tmp_path / "root" / "layers" / "sha256").iterdir()]
    image_id = short_id  # the IMAGE ID column: a 12-digit prefix, as docker's
    # as docker rmi: each REF in turn (here an unknown name, then the image by ID), errors reported
    rmi = subprocess.run([exe, "rmi", "no/such", image_id], capture_output=True, text=True, env=env)
    assert (rmi.returncode, rmi.stderr) == (1, "Error: No such image: no/such:latest\n")
    removed = rmi.stdout
    assert removed.startswith(f"Untagged: {ref_s}\nUntagged: {ref_s.rsplit(':', 1)[0]}@sha256:")
    assert f"Deleted: sha256:{image_id}" in removed
    assert {f"sha256:{h}" for h in layer_dirs} <= {line.split(" ")[1] for line in removed.splitlines()}
    assert not any((tmp_path / "root" / "layers" / "sha256").iterdir())


def test_a_failed_v2_metadata_write_is_logged_with_its_reason_and_the_pull_completes(
        registry: Registry, layers: list[Path], tmp_path: Path, repo_name: str,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    ref_s = _push(tmp_path, registry, repo_name, layers)
    store = Store(tmp_path / "store")

    def refuse(*args: object, **kwargs: object) -> None:
        raise E.StoreError("metadata directory is read-only")

    monkeypatch.setattr(store.v2_metadata, "add", refuse)
    with caplog.at_level("DEBUG", logger="docker_distribution"):
        image_id = pull_image(dd.parse_normalized_named(ref_s), store, config=ANON)
    assert store.images.get(image_id)
    records = [r for r in caplog.records if "V2 metadata" in r.getMessage()]
    assert len(records) == len(layers) and all("metadata directory is read-only" in r.getMessage() for r in records)
    assert all(r.levelname == "DEBUG" for r in records)
