"""Pull through a fault-injecting proxy in front of the real registry."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import docker_distribution as dd
import pytest
from bed.proxy import Fault, FaultProxy
from bed.registry import Registry
from docker_distribution.progress import CollectingProgress
from docker_distribution.config import common_fields
from docker_distribution.pull import ImagePullConfig, pull, pull_image
from docker_distribution.xfer.download import LayerDownloadManager
from docker_distribution.registry.auth import AuthConfig
from docker_distribution import errors as E
from docker_distribution.store import Store
from oci import image_manifest, skopeo_push, write_layout

ANON = dd.Config(auth_config=AuthConfig(), retry=dd.RetryPolicy(attempts=3, backoff=0.01))


def _image(tmp: Path, reg: Registry, repo: str) -> tuple[str, str, int]:
    """Push a one-layer image of ~4 MB random data; returns (tag ref path, layer digest, layer size)."""
    src = tmp / "src"
    src.mkdir()
    (src / "random.bin").write_bytes(os.urandom(4 << 20))
    layout = tmp / "layout"
    entry = image_manifest(layout, [src])
    write_layout(layout, "v1", [entry], as_index=False)
    skopeo_push(layout, "v1", f"{reg.host}/{repo}:v1")
    manifest = json.loads((layout / "blobs" / "sha256" / str(entry["digest"]).split(":")[1]).read_bytes())
    layer = manifest["layers"][0]
    return f"{repo}:v1", layer["digest"], layer["size"]


def _fast_pull(proxy: FaultProxy, path: str, store: Store, ranges: int = 1) -> dd.Digest | None:
    """A pull with 2 download attempts and no countdown between them (and ``ranges`` parts per blob)."""
    cfg = ImagePullConfig(**common_fields(ANON), image_store=store.images, reference_store=store.references,
                          metadata=store.v2_metadata, parallel_ranges=ranges, parallel_range_min=1 << 20,
                          download_manager=LayerDownloadManager(store.layers, max_attempts=2, wait_duration=0.001))
    ref = dd.parse_normalized_named(f"{proxy.host}/{path}")
    pull(ref, cfg, store.content)
    return store.references.get(ref)


def test_connection_cut_mid_blob_resumes_with_range(registry: Registry, proxy: FaultProxy, tmp_path: Path,
                                                    repo_name: str) -> None:
    path, digest, size = _image(tmp_path, registry, repo_name)
    proxy.add(Fault(match=f"/blobs/{digest}", method="GET", cut_after=size // 3))
    store = Store(tmp_path / "store")
    image_id = pull_image(dd.parse_normalized_named(f"{proxy.host}/{path}"), store, config=ANON)
    assert image_id is not None and store.verify() == []
    ranged = [h for (m, p, h) in proxy.requests if m == "GET" and digest in p and "Range" in h]
    assert ranged and ranged[0]["Range"] == f"bytes={size // 3}-"
    # the bytes before the cut were not fetched again
    assert proxy.total_sent(digest) == size


def test_a_server_ignoring_range_still_yields_a_correct_image(registry: Registry, proxy: FaultProxy, tmp_path: Path,
                                                              repo_name: str) -> None:
    path, digest, size = _image(tmp_path, registry, repo_name)
    proxy.add(Fault(match=f"/blobs/{digest}", method="GET", cut_after=size // 2))
    proxy.add(Fault(match=f"/blobs/{digest}", method="GET", ignore_range=True))
    store = Store(tmp_path / "store")
    image_id = pull_image(dd.parse_normalized_named(f"{proxy.host}/{path}"), store, config=ANON)
    out = tmp_path / "rootfs"
    assert image_id is not None
    store.unpack(image_id, out)
    assert (out / "random.bin").stat().st_size == 4 << 20
    assert store.verify() == []


def test_429_with_retry_after_on_the_manifest_is_survived(registry: Registry, proxy: FaultProxy, tmp_path: Path,
                                                          repo_name: str) -> None:
    path, _, _ = _image(tmp_path, registry, repo_name)
    proxy.add(Fault(match="/manifests/", method="GET", status=429, retry_after="0", times=1))
    proxy.add(Fault(match="/manifests/", method="HEAD", status=503, times=1))
    progress = CollectingProgress()
    assert pull_image(dd.parse_normalized_named(f"{proxy.host}/{path}"), Store(tmp_path / "s"), config=ANON,
                      progress_output=progress) is not None
    assert progress.texts()[-1].startswith("Status: Downloaded newer image")


def test_a_flipped_byte_in_transit_is_never_accepted(registry: Registry, proxy: FaultProxy, tmp_path: Path,
                                                     repo_name: str) -> None:
    path, digest, size = _image(tmp_path, registry, repo_name)
    proxy.add(Fault(match=f"/blobs/{digest}", method="GET", flip_byte=size // 2, times=10))
    store = Store(tmp_path / "store")
    with pytest.raises(dd.DigestMismatchError):
        pull_image(dd.parse_normalized_named(f"{proxy.host}/{path}"), store, config=ANON)
    assert store.layers.list() == [] and store.references.all() == {} and store.leftovers() == []


def test_a_killed_pull_continues_where_it_stopped(registry: Registry, proxy: FaultProxy, tmp_path: Path,
                                                  repo_name: str) -> None:
    import signal
    import subprocess
    import sys
    import time

    path, digest, size = _image(tmp_path, registry, repo_name)
    proxy.add(Fault(match=f"/blobs/{digest}", method="GET", throttle=2 << 20))  # 2 MiB/s: a 4 MiB layer takes 2 s
    root = tmp_path / "root"
    exe = str(Path(sys.executable).parent / "docker-distribution")
    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path / "cfg")}
    proc = subprocess.Popen([exe, "--root", str(root), "pull", "-q", f"{proxy.host}/{path}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while proxy.total_sent(digest) < size // 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = proxy.total_sent(digest)
    assert size // 2 <= first < size
    store = Store(root)
    assert store.verify() == [] and store.references.all() == {}
    image_id = pull_image(dd.parse_normalized_named(f"{proxy.host}/{path}"), store, config=ANON)
    second = proxy.total_sent(digest) - first
    assert second < size  # the second run fetched only what the first did not keep
    assert second <= size - first + 64 * 1024 * 2  # at most a little was lost in buffers at the kill
    assert image_id is not None and store.verify() == [] and store.leftovers() == []
    assert list(store.content.list_statuses()) == []  # the partial blob was dropped once used


def test_a_short_blob_answer_that_looks_complete_is_continued_or_refused(registry: Registry, proxy: FaultProxy,
                                                                          tmp_path: Path, repo_name: str) -> None:
    """A 200 whose Content-Length agrees with a truncated body: the size check catches it, and
    the rest is fetched with Range; served short every time, the pull fails typed and clean."""
    path, digest, size = _image(tmp_path, registry, repo_name)
    proxy.add(Fault(match=f"/blobs/{digest}", method="GET", truncate_to=size // 2))
    store = Store(tmp_path / "store")
    assert pull_image(dd.parse_normalized_named(f"{proxy.host}/{path}"), store, config=ANON) is not None
    assert store.verify() == [] and proxy.total_sent(digest) == size
    proxy.add(Fault(match=f"/blobs/{digest}", method="GET", truncate_to=0, times=1000))
    other = Store(tmp_path / "other")
    with pytest.raises(dd.DistributionError):
        _fast_pull(proxy, path, other)
    assert other.layers.list() == [] and other.references.all() == {} and other.leftovers() == []


@pytest.mark.parametrize("delta", [+1000, -1000])
def test_a_wrong_content_length_on_a_blob_never_corrupts(registry: Registry, proxy: FaultProxy, tmp_path: Path,
                                                         repo_name: str, delta: int) -> None:
    """Announced longer than sent (the body breaks off) or shorter (the body is cut at the
    announced length): either way the layer comes out whole or not at all."""
    path, digest, size = _image(tmp_path, registry, repo_name)
    proxy.add(Fault(match=f"/blobs/{digest}", method="GET", length_delta=delta, times=1))
    store = Store(tmp_path / "store")
    image_id = pull_image(dd.parse_normalized_named(f"{proxy.host}/{path}"), store, config=ANON)
    assert image_id is not None and store.verify() == [] and store.leftovers() == []
    out = tmp_path / "rootfs"
    store.unpack(image_id, out)
    assert (out / "random.bin").stat().st_size == 4 << 20


def test_a_wrong_content_length_on_the_manifest_is_retried_or_refused(registry: Registry, proxy: FaultProxy,
                                                                     tmp_path: Path, repo_name: str) -> None:
    """Announced longer than sent: the read breaks off and is retried. Announced shorter: HTTP
    sees a complete, truncated manifest, which fails its digest: refused, nothing stored."""
    path, _, _ = _image(tmp_path, registry, repo_name)
    proxy.add(Fault(match="/manifests/", method="GET", length_delta=+40, times=1))
    store = Store(tmp_path / "store")
    assert pull_image(dd.parse_normalized_named(f"{proxy.host}/{path}"), store, config=ANON) is not None
    assert store.verify() == []
    proxy.add(Fault(match="/manifests/", method="GET", length_delta=-40, times=1))
    other = Store(tmp_path / "other")
    with pytest.raises(dd.DigestMismatchError):
        pull_image(dd.parse_normalized_named(f"{proxy.host}/{path}"), other, config=ANON)
    assert other.layers.list() == [] and other.references.all() == {} and other.leftovers() == []


# --- parallel Range requests within one blob (beyond moby) ------------------------------------


def test_a_large_blob_comes_as_parallel_ranges(registry: Registry, proxy: FaultProxy, tmp_path: Path,
                                               repo_name: str) -> None:
    path, digest, size = _image(tmp_path, registry, repo_name)
    proxy.add(Fault(match=f"/blobs/{digest}", method="GET", cut_after=100_000))  # one part is cut: it resumes
    store = Store(tmp_path / "store")
    image_id = _fast_pull(proxy, path, store, 4)
    ranges = sorted(h.get("Range", "") for (m, p, h) in proxy.requests if m == "GET" and digest in p)
    step = -(-size // 4)
    for i in range(4):  # every part was asked for, each from its own start
        assert any(r.startswith(f"bytes={i * step}-") for r in ranges), ranges
    assert proxy.total_sent(digest) == size  # nothing fetched twice, the cut part included
    assert image_id is not None and store.verify() == [] and store.leftovers() == []
    assert list(store.content.list_statuses()) == []
    out = tmp_path / "rootfs"
    store.unpack(image_id, out)
    assert (out / "random.bin").stat().st_size == 4 << 20


def test_parallel_ranges_against_a_server_ignoring_range(registry: Registry, proxy: FaultProxy, tmp_path: Path,
                                                         repo_name: str) -> None:
    path, digest, size = _image(tmp_path, registry, repo_name)
    proxy.add(Fault(match=f"/blobs/{digest}", method="GET", ignore_range=True, times=1000))
    store = Store(tmp_path / "store")
    image_id = _fast_pull(proxy, path, store, 4)
    assert image_id is not None and store.verify() == [] and store.leftovers() == []
    assert list(store.content.list_statuses()) == []


def test_a_stalled_answer_times_out_and_is_retried(registry: Registry, proxy: FaultProxy, tmp_path: Path,
                                                   repo_name: str) -> None:
    """A registry that accepts the request and then says nothing: the read timeout
    (``RetryPolicy.timeout``) ends the wait and the request is sent again."""
    path, digest, _ = _image(tmp_path, registry, repo_name)
    proxy.add(Fault(match=f"/blobs/{digest}", method="GET", stall=3.0))
    proxy.add(Fault(match="/manifests/", method="GET", stall=3.0))
    quick = dd.Config(auth_config=AuthConfig(), retry=dd.RetryPolicy(attempts=3, backoff=0.01, timeout=(5.0, 0.5)))
    store = Store(tmp_path / "store")
    assert pull_image(dd.parse_normalized_named(f"{proxy.host}/{path}"), store, config=quick) is not None
    assert len([1 for (m, p, _) in proxy.requests if m == "GET" and digest in p]) == 2
    assert store.verify() == [] and store.leftovers() == []


# --- a prune beside a pull -----------------------------------------------------------------------

def test_a_prune_from_another_process_during_a_pull_loses_nothing(registry: Registry, proxy: FaultProxy,
                                                                   tmp_path: Path, repo_name: str) -> None:
    """Between registering its layers and writing the image and tag, a pull's layers belong to no
    image. A `system prune` (or `rmi`) run then by another process on the same store must not take
    them: it waits for the pull, and the pulled image is whole afterwards."""
    import subprocess
    import sys
    import threading
    import time

    path, digest, _ = _image(tmp_path, registry, repo_name)
    manifest = json.loads(_manifest_bytes(registry, path))
    config = manifest["config"]["digest"]
    proxy.add(Fault(match=f"/blobs/{config}", method="GET", stall=3.0))  # the config comes late
    root = tmp_path / "root"
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["id"] = pull_image(dd.parse_normalized_named(f"{proxy.host}/{path}"), Store(root), config=ANON)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            result["error"] = exc

    puller = threading.Thread(target=run)
    puller.start()
    deadline = time.monotonic() + 30
    while not Store(root).layers.list() and time.monotonic() < deadline:
        time.sleep(0.02)  # the layer is registered; the config is still on its way
    assert Store(root).layers.list() and puller.is_alive()
    exe = str(Path(sys.executable).parent / "docker-distribution")
    prune = subprocess.Popen([exe, "--root", str(root), "system", "prune"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "DOCKER_CONFIG": str(tmp_path / "cfg")})
    puller.join(30)
    out, err = prune.communicate(timeout=30)
    assert prune.returncode == 0, err
    assert "error" not in result, result.get("error")
    store = Store(root)
    assert result["id"] in store.images.list()
    assert store.verify() == [] and store.leftovers() == []
    store.unpack(result["id"], tmp_path / "rootfs")  # type: ignore[arg-type]
    assert (tmp_path / "rootfs" / "random.bin").stat().st_size == 4 << 20


def _manifest_bytes(registry: Registry, path: str) -> bytes:
    import urllib.request

    name, tag = path.rsplit(":", 1)
    req = urllib.request.Request(f"{registry.url}/v2/{name}/manifests/{tag}",
                                 headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(req) as resp:
        return resp.read()  # type: ignore[no-any-return]


def test_ctrl_c_on_a_cli_pull_is_one_line_and_the_pull_continues_later(registry: Registry, proxy: FaultProxy,
                                                                       tmp_path: Path, repo_name: str) -> None:
    """SIGINT (Ctrl-C) mid-blob: no Python traceback, moby's ``context canceled``, exit status 130;
    the store verifies, and the next pull fetches only what the first did not keep."""
    import signal
    import subprocess
    import sys
    import time

    path, digest, size = _image(tmp_path, registry, repo_name)
    proxy.add(Fault(match=f"/blobs/{digest}", method="GET", throttle=2 << 20))  # 2 MiB/s: a 4 MiB layer takes 2 s
    root = tmp_path / "root"
    exe = str(Path(sys.executable).parent / "docker-distribution")
    proc = subprocess.Popen([exe, "--root", str(root), "pull", f"{proxy.host}/{path}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "DOCKER_CONFIG": str(tmp_path / "cfg")})
    deadline = time.monotonic() + 30
    while proxy.total_sent(digest) < size // 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert (proc.returncode, err) == (130, "Error: context canceled (what was downloaded is kept: the same pull continues from there)\n")
    first = proxy.total_sent(digest)
    store = Store(root)
    assert store.verify() == [] and store.references.all() == {}
    assert pull_image(dd.parse_normalized_named(f"{proxy.host}/{path}"), store, config=ANON) is not None
    assert proxy.total_sent(digest) - first < size  # continued, not started again


def _config_digest(registry: Registry, path: str) -> str:
    from docker_distribution.registry.client import connect
    from docker_distribution.registry.service import APIEndpoint

    name, tag = path.split(":")
    repo = connect(dd.parse_normalized_named(f"{registry.host}/{name}"), APIEndpoint(url=registry.url),
                   auth_config=AuthConfig())
    return str(json.loads(repo.get_manifest(tag).payload)["config"]["digest"])


def test_a_corrupted_config_fails_the_pull_with_moby_s_text_and_stores_nothing(
        registry: Registry, proxy: FaultProxy, tmp_path: Path, repo_name: str) -> None:
    from docker_distribution.fsutil import file_lock

    path, layer, _ = _image(tmp_path, registry, repo_name)
    config = _config_digest(registry, path)
    proxy.add(Fault(match=f"/blobs/{config}", method="GET", flip_byte=3, times=10))
    proxy.add(Fault(match=f"/blobs/{layer}", method="GET", throttle=1 << 20))  # the layer is mid-way then
    store = Store(tmp_path / "store")
    with pytest.raises(dd.DistributionError) as e:
        _fast_pull(proxy, path, store)
    # a mismatch is not retried (moby's DoNotRetry): one attempt, and moby's wording around it
    assert str(e.value) == (f"error pulling image configuration: download failed after attempts=1: "
                            f"image config verification failed for digest {config}")
    assert [p for (m, p, _) in proxy.requests if m == "GET" and config in p] == [f"/v2/{repo_name}/blobs/{config}"]
    assert store.images.list() == [] and store.references.all() == {}
    assert (store.verify(), store.leftovers()) == ([], [])
    # the cancelled layer download has stopped: no writer holds its ingest any more
    held = []
    for lock in (store.root / "content" / "ingest").glob("*/lock"):
        with file_lock(lock, blocking=False) as free:
            held += [] if free else [lock]
    assert held == []


def test_a_config_whose_diff_ids_do_not_match_the_layers_is_refused(registry: Registry, tmp_path: Path,
                                                                   repo_name: str) -> None:
    from docker_distribution.layer import produce_layer
    from docker_distribution.mediatype import DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST
    from docker_distribution.registry.client import connect
    from docker_distribution.registry.service import APIEndpoint

    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("real content\n")
    layer = produce_layer(tmp_path / "layer.tgz", source_dir=src, compression="gzip")
    blob = (tmp_path / "layer.tgz").read_bytes()
    wrong = dd.digest_bytes(b"some other tar")
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [str(wrong)]}}).encode()
    repo = connect(dd.parse_normalized_named(f"{registry.host}/{repo_name}"), APIEndpoint(url=registry.url),
                   auth_config=AuthConfig(), actions=("push", "pull"))
    repo.upload_monolithic(blob, layer.digest)
    repo.upload_monolithic(config, dd.digest_bytes(config))
    manifest = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                           "config": {"mediaType": DOCKER_CONFIG, "size": len(config),
                                      "digest": str(dd.digest_bytes(config))},
                           "layers": [{"mediaType": DOCKER_LAYER_GZIP, "size": layer.size,
                                       "digest": str(layer.digest)}]}).encode()
    repo.put_manifest("v1", manifest, DOCKER_MANIFEST)
    store = Store(tmp_path / "store")
    with pytest.raises(dd.DistributionError, match="^layers from manifest don't match image configuration$"):
        pull_image(dd.parse_normalized_named(f"{registry.host}/{repo_name}:v1"), store, config=ANON)
    assert store.images.list() == [] and store.references.all() == {}
    assert (store.verify(), store.leftovers()) == ([], [])


def test_a_tampered_manifest_fetched_by_digest_is_refused_and_not_kept(registry: Registry, proxy: FaultProxy,
                                                                      tmp_path: Path, repo_name: str) -> None:
    path, _, _ = _image(tmp_path, registry, repo_name)
    from docker_distribution.registry.client import connect
    from docker_distribution.registry.service import APIEndpoint

    repo = connect(dd.parse_normalized_named(f"{registry.host}/{repo_name}"), APIEndpoint(url=registry.url),
                   auth_config=AuthConfig())
    digest = repo.resolve("v1").digest
    proxy.add(Fault(match=f"/manifests/{digest}", method="GET", flip_byte=40, times=10))
    store = Store(tmp_path / "store")
    for ref in (f"{repo_name}@{digest}", path):  # by tag, the manifest is fetched by its digest too
        with pytest.raises(dd.ManifestVerificationError, match=f"^manifest verification failed for digest {digest}$"):
            _fast_pull(proxy, ref, store)
    infos: list[object] = []
    store.content.walk(infos.append)
    assert infos == [] and store.images.list() == [] and store.references.all() == {}
    assert (store.verify(), store.leftovers()) == ([], [])


def test_a_manifest_of_more_than_125_layers_is_refused_before_any_download(
        registry: Registry, proxy: FaultProxy, tmp_path: Path, repo_name: str) -> None:
    """moby's layer store stops at 125 layers (``max depth exceeded``); a hostile manifest of
    thousands would otherwise start a download for each. The same small blob, 126 times."""
    from docker_distribution.layer import produce_layer
    from docker_distribution.mediatype import DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST
    from docker_distribution.registry.client import connect
    from docker_distribution.registry.service import APIEndpoint

    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    layer = produce_layer(tmp_path / "l.tgz", source_dir=src, compression="gzip")
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [str(layer.diff_id)] * 126}}).encode()
    repo = connect(dd.parse_normalized_named(f"{registry.host}/{repo_name}"), APIEndpoint(url=registry.url),
                   auth_config=AuthConfig(), actions=("push", "pull"))
    repo.upload_monolithic((tmp_path / "l.tgz").read_bytes(), layer.digest)
    repo.upload_monolithic(config, dd.digest_bytes(config))
    entry = {"mediaType": DOCKER_LAYER_GZIP, "size": layer.size, "digest": str(layer.digest)}
    manifest = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                           "config": {"mediaType": DOCKER_CONFIG, "size": len(config),
                                      "digest": str(dd.digest_bytes(config))},
                           "layers": [entry] * 126}).encode()
    repo.put_manifest("v1", manifest, DOCKER_MANIFEST)
    store = Store(tmp_path / "store")
    with pytest.raises(E.MaxDepthExceededError, match="^max depth exceeded$"):
        _fast_pull(proxy, f"{repo_name}:v1", store)
    assert not [p for (_, p, _) in proxy.requests if "/blobs/" in p]
    assert store.layers.list() == [] and store.references.all() == {}


def test_the_proxy_tells_which_faults_never_fired(registry: Registry) -> None:
    p = FaultProxy(registry.url)
    try:
        fired, idle = Fault(match="/v2/"), Fault(match="/no/such/path/")
        p.add(fired)
        p.add(idle)
        p.add(Fault(match="/also/never/", optional=True))
        import requests

        requests.get(f"{p.url}/v2/", timeout=10)
        assert fired.fired == 1 and p.unfired() == [idle]
    finally:
        p.stop()


@pytest.mark.parametrize("fault", ["cut", "503"])
def test_one_bad_blob_costs_at_most_its_failure_budget_in_requests(registry: Registry, proxy: FaultProxy,
                                                                   tmp_path: Path, repo_name: str, fault: str) -> None:
    """Every GET of the layer breaks (cut mid-body, or answered 503): the resumes, moby's five
    download attempts and the transport's retries share one budget, so the registry sees at
    most BLOB_FAILURE_BUDGET + 1 GETs of that blob (it was up to 90), and the pull fails typed."""
    from docker_distribution.pull import BLOB_FAILURE_BUDGET

    path, digest, size = _image(tmp_path, registry, repo_name)
    if fault == "cut":
        proxy.add(Fault(match=f"/blobs/{digest}", method="GET", cut_after=4096, times=1000, optional=True))
    else:
        proxy.add(Fault(match=f"/blobs/{digest}", method="GET", status=503, times=1000, optional=True))
    store = Store(tmp_path / "store")
    cfg = ImagePullConfig(**common_fields(ANON), image_store=store.images, reference_store=store.references,
                          metadata=store.v2_metadata,
                          download_manager=LayerDownloadManager(store.layers, max_attempts=5, wait_duration=0.001))
    with pytest.raises(E.DistributionError) as info:
        pull(dd.parse_normalized_named(f"{proxy.host}/{path}"), cfg, store.content)
    assert isinstance(info.value, (E.TransportError, E.UnexpectedHTTPStatusError)), repr(info.value)
    gets = [p for (m, p, _) in proxy.requests if m == "GET" and digest in p]
    assert 1 < len(gets) <= BLOB_FAILURE_BUDGET + 1
    assert store.layers.list() == [] and store.verify() == []
