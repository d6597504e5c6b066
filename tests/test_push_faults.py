"""Push and tag listing through a fault-injecting proxy in front of the real registry.

Recoverable faults (429/503, cut uploads, a cut answer) are survived within the configured
attempts; unrecoverable ones give a typed error and leave no tag behind. Resuming an upload
from the offset the registry reports runs against the proxy's resumable upload front (see
``bed/proxy.py``: Debian's registry 2.8 cancels a session whose PATCH was cut).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import docker_distribution as dd
import pytest
from bed.proxy import Fault, FaultProxy
from bed.registry import Registry
from docker_distribution import errors as E
from docker_distribution.config import common_fields
from docker_distribution.layer import LayerProducer
from docker_distribution.pull import pull_image
from docker_distribution.push import _UPLOAD_NS, ImagePushConfig, push, push_image, upload_key
from docker_distribution.registry.auth import AuthConfig
from docker_distribution.store import Store
from docker_distribution.store.adapters import new_layer_providers_from_store
from docker_distribution.xfer.upload import LayerUploadManager
from helpers import crash_loop

ANON = dd.Config(auth_config=AuthConfig(), retry=dd.RetryPolicy(attempts=3, backoff=0.01))
BIG = 4 << 20  # the big layer: incompressible, so its gzip is about as large


def _local_image(root: Path, tmp: Path, ref: str, seed: int = 1, big: int = BIG) -> tuple[Store, dd.Digest]:
    """A two-layer image in a store at ``root``: a small layer and ``big`` random bytes."""
    rng = random.Random(seed)
    small, big_dir = tmp / f"small{seed}", tmp / f"big{seed}"
    small.mkdir()
    big_dir.mkdir()
    (small / "hello").write_text(f"hello {seed}\n")
    (big_dir / "random.bin").write_bytes(rng.randbytes(big))
    store = Store(root)
    return store, store.image_from_directories([small, big_dir], dd.parse_normalized_named(ref))


def _push(store: Store, ref: str, *, attempts: int = 5) -> None:
    cfg = ImagePushConfig(**common_fields(ANON), layer_stores=new_layer_providers_from_store(store.layers),
                          upload_manager=LayerUploadManager(wait_duration=0.001, max_attempts=attempts),
                          image_store=store.images, reference_store=store.references, metadata=store.v2_metadata)
    push(dd.parse_normalized_named(ref), cfg)


def _big_blob(store: Store, image_id: dd.Digest) -> tuple[dd.Digest, bytes, str]:
    """(diffID, gzip bytes, their digest) of the image's big layer as our push produces it."""
    layer = store.layers.get(store.image_chain_id(image_id))
    producer = LayerProducer(source_diff=(layer.path, layer.split), compression="gzip")
    data = b"".join(producer)
    return layer.diff_id, data, str(producer.result().digest)


def _big_layer(store: Store, image_id: dd.Digest) -> tuple[str, int]:
    """(compressed digest, size) of the image's big layer as our push produces it."""
    _, data, digest = _big_blob(store, image_id)
    return digest, len(data)


def _patched(p: FaultProxy) -> list[int]:
    """Bytes read from each PATCH body, in order."""
    return [int(h.get("Content-Length", 0)) for (m, _, h) in p.requests if m == "PATCH"]


def _pulls_back(reg_host: str, path: str, tmp: Path, image_id: dd.Digest) -> None:
    store = Store(tmp / "back")
    assert pull_image(dd.parse_normalized_named(f"{reg_host}/{path}"), store, config=ANON) == image_id
    assert store.verify() == []


# --- faults survived ----------------------------------------------------------------------


def test_transient_errors_on_every_push_step_are_survived(registry: Registry, proxy: FaultProxy, tmp_path: Path,
                                                          repo_name: str) -> None:
    store, image_id = _local_image(tmp_path / "s", tmp_path, f"{proxy.host}/{repo_name}:v1")
    proxy.add(Fault(match="/blobs/uploads/", method="POST", status=503, times=2))
    proxy.add(Fault(match="/blobs/uploads/", method="PATCH", status=500, times=1))
    proxy.add(Fault(match="/blobs/uploads/", method="PUT", status=502, times=1))
    proxy.add(Fault(match="/blobs/sha256:", method="HEAD", status=429, retry_after="0", times=2))
    proxy.add(Fault(match="/manifests/", method="PUT", status=503, times=1))
    _push(store, f"{proxy.host}/{repo_name}:v1")
    _pulls_back(registry.host, f"{repo_name}:v1", tmp_path, image_id)


def test_429_on_an_upload_is_not_hammered(registry: Registry, proxy: FaultProxy, tmp_path: Path,
                                          repo_name: str) -> None:
    """moby's retryOnError: TOOMANYREQUESTS from an upload ends the push (DoNotRetry), typed."""
    store, _ = _local_image(tmp_path / "s", tmp_path, f"{proxy.host}/{repo_name}:v1")
    proxy.add(Fault(match="/blobs/uploads/", method="PATCH", status=429, retry_after="0", times=100))
    with pytest.raises(E.TooManyRequestsError):
        _push(store, f"{proxy.host}/{repo_name}:v1")
    assert len([m for (m, _, _) in proxy.requests if m == "PATCH"]) == 1
    with pytest.raises(E.DistributionError):
        dd.tags(dd.parse_normalized_named(f"{registry.host}/{repo_name}"), ANON)


def test_an_upload_cut_mid_body_is_restarted_in_the_same_session(registry: Registry, proxy: FaultProxy,
                                                                  tmp_path: Path, repo_name: str) -> None:
    store, image_id = _local_image(tmp_path / "s", tmp_path, f"{proxy.host}/{repo_name}:v1")
    proxy.add(Fault(match="/blobs/uploads/", method="PATCH", cut_request_after=BIG // 3))
    _push(store, f"{proxy.host}/{repo_name}:v1")
    # the registry never saw the cut PATCH, reported an empty session ("0-0"), and got it all again
    statuses = [p for (m, p, _) in proxy.requests if m == "GET" and "/blobs/uploads/" in p]
    assert len(statuses) == 1
    assert len(_patched(proxy)) == 2 and _patched(proxy)[0] == BIG // 3
    _pulls_back(registry.host, f"{repo_name}:v1", tmp_path, image_id)


def test_a_corrupted_upload_is_refused_and_leaves_no_tag(registry: Registry, proxy: FaultProxy, tmp_path: Path,
                                                         repo_name: str) -> None:
    """The registry checks the digest we send: bytes flipped on the way up are refused, every attempt."""
    store, _ = _local_image(tmp_path / "s", tmp_path, f"{proxy.host}/{repo_name}:v1")
    proxy.add(Fault(match="/blobs/uploads/", method="PATCH", flip_request_byte=1000, times=100))
    with pytest.raises(E.DigestInvalidError):
        _push(store, f"{proxy.host}/{repo_name}:v1", attempts=2)
    with pytest.raises(E.DistributionError):
        dd.tags(dd.parse_normalized_named(f"{registry.host}/{repo_name}"), ANON)
    assert store.verify() == []


def test_a_manifest_put_failing_for_good_is_a_typed_error_and_a_rerun_completes(
        registry: Registry, proxy: FaultProxy, tmp_path: Path, repo_name: str) -> None:
    store, image_id = _local_image(tmp_path / "s", tmp_path, f"{proxy.host}/{repo_name}:v1")
    proxy.add(Fault(match="/manifests/", method="PUT", status=500, times=3))  # every retry of it
    with pytest.raises(E.DistributionError):
        _push(store, f"{proxy.host}/{repo_name}:v1")
    with pytest.raises(E.DistributionError):  # no tag was written
        dd.tags(dd.parse_normalized_named(f"{registry.host}/{repo_name}"), ANON)
    before = sum(_patched(proxy))
    _push(store, f"{proxy.host}/{repo_name}:v1")
    assert sum(_patched(proxy)) == before  # the layers were already there: nothing uploaded again
    _pulls_back(registry.host, f"{repo_name}:v1", tmp_path, image_id)


# --- resume from the registry's offset ----------------------------------------------------


def test_oci_chunk_min_length_switches_the_upload_to_chunks_of_that_size(registry: Registry, proxy: FaultProxy,
                                                                         tmp_path: Path, repo_name: str) -> None:
    """A registry that asks for chunks (``OCI-Chunk-Min-Length`` on the session's POST) gets PATCHes
    with contiguous ``Content-Range``s, each but the last exactly that long; the blob arrives whole."""
    min_len = 20 << 20  # above our 16 MiB default chunk, so the registry's value is what decides
    store, image_id = _local_image(tmp_path / "s", tmp_path, f"{proxy.host}/{repo_name}:v1", big=44 << 20)
    proxy.add(Fault(match="/blobs/uploads/", method="POST", headers={"OCI-Chunk-Min-Length": str(min_len)}, times=10))
    _push(store, f"{proxy.host}/{repo_name}:v1")
    patches = [h for (m, _, h) in proxy.requests if m == "PATCH"]
    lengths = [int(h["Content-Length"]) for h in patches]
    assert len(patches) == 3 and lengths[:2] == [min_len, min_len] and 0 < lengths[2] <= min_len, lengths
    offset = 0
    for h, n in zip(patches, lengths):
        assert h["Content-Range"] == f"{offset}-{offset + n - 1}"
        offset += n
    _pulls_back(registry.host, f"{repo_name}:v1", tmp_path, image_id)


def test_an_upload_cut_mid_layer_resumes_from_the_reported_offset(registry: Registry, front: FaultProxy,
                                                                  tmp_path: Path, repo_name: str) -> None:
    store, image_id = _local_image(tmp_path / "s", tmp_path, f"{front.host}/{repo_name}:v1")
    _, size = _big_layer(store, image_id)
    cut = size // 3
    front.add(Fault(match="/blobs/uploads/", method="PATCH", cut_request_after=cut))
    _push(store, f"{front.host}/{repo_name}:v1")
    patches = _patched(front)
    assert patches == [cut, size - cut]  # the second PATCH carried only what the first did not deliver
    assert sum(patches) - size < size
    _pulls_back(registry.host, f"{repo_name}:v1", tmp_path, image_id)


def test_a_killed_push_continues_where_it_stopped(registry: Registry, front: FaultProxy, tmp_path: Path,
                                                  repo_name: str) -> None:
    root = tmp_path / "root"
    ref = f"{front.host}/{repo_name}:v1"
    store, image_id = _local_image(root, tmp_path, ref, big=16 << 20)
    digest, size = _big_layer(store, image_id)
    del store
    # 8 MiB/s: ~2 s for the layer; a killed client's socket buffers (a few MiB) still arrive after it
    front.add(Fault(match="/blobs/uploads/", method="PATCH", throttle=8 << 20))
    exe = str(Path(sys.executable).parent / "docker-distribution")
    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path / "cfg")}
    proc = subprocess.Popen([exe, "--root", str(root), "push", "-q", ref], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while front.total_received("/blobs/uploads/") < size // 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    front.settled()  # the front keeps all that reached it
    first = front.total_received("/blobs/uploads/")
    assert size // 2 <= first < size
    done = subprocess.run([exe, "--root", str(root), "push", ref], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    resent = front.total_received("/blobs/uploads/") - first
    # only the rest of the layer went up (plus the config and the small layer, a few hundred bytes)
    assert size - first <= resent <= size - first + 1024 and resent < size
    assert Store(root).verify() == [] and Store(root).leftovers() == []
    _pulls_back(registry.host, f"{repo_name}:v1", tmp_path, image_id)
    assert (registry.storage / "docker/registry/v2/blobs/sha256" / digest[7:9] / digest[7:]).is_dir()


def test_a_resumed_upload_whose_held_bytes_are_damaged_fails_its_attempt_and_the_next_starts_afresh(
        registry: Registry, front: FaultProxy, tmp_path: Path, repo_name: str) -> None:
    # A session an earlier run left behind holds the first half of the layer, one byte of it
    # damaged. The producer is deterministic, so the resume sends only the second half; the
    # registry refuses the digest; that attempt fails and forgets the session, and the next
    # attempt sends the whole layer in a new one.
    ref = f"{front.host}/{repo_name}:v1"
    store, image_id = _local_image(tmp_path / "s", tmp_path, ref)
    diff_id, blob, _ = _big_blob(store, image_id)
    held = bytearray(blob[: len(blob) // 2])
    held[len(held) // 2] ^= 0xFF
    front.sessions["front-earlier"] = bytearray(held)  # the front appends to it
    key = upload_key(dd.parse_normalized_named(ref).name, "gzip", None, diff_id)
    store.v2_metadata.store.set(_UPLOAD_NS, key,
                                f"{front.url}/v2/{repo_name}/blobs/uploads/front-earlier".encode())
    with pytest.raises(E.DigestInvalidError):
        _push(store, ref, attempts=1)
    assert _patched(front) == [len(blob) - len(held)]  # the resume sent the second half only
    with pytest.raises(E.ObjectNotFoundError):
        store.v2_metadata.store.get(_UPLOAD_NS, key)
    with pytest.raises(E.DistributionError):  # no tag was written
        dd.tags(dd.parse_normalized_named(f"{registry.host}/{repo_name}"), ANON)
    _push(store, ref, attempts=1)
    assert _patched(front) == [len(blob) - len(held), len(blob)]
    _pulls_back(registry.host, f"{repo_name}:v1", tmp_path, image_id)


# --- crash loop ------------------------------------------------------------------------------


def test_crash_loop_of_killed_pushes(registry: Registry, tmp_path: Path) -> None:
    front = FaultProxy(registry.url, resumable_uploads=True)
    try:
        front.add(Fault(match="/blobs/uploads/", method="PATCH", throttle=6 << 20, times=10_000))
        root = tmp_path / "root"
        refs = [f"{front.host}/crash/push{i}:v1" for i in range(3)]
        images = [_local_image(root, tmp_path, ref, seed=i)[1] for i, ref in enumerate(refs)]
        crash_loop("push", root, refs, tmp_path, seed=7, longest=0.9)
        for i, ref in enumerate(refs):
            _pulls_back(registry.host, f"crash/push{i}:v1", tmp_path / f"p{i}", images[i])
    finally:
        front.stop()


# --- tag listing -----------------------------------------------------------------------------


@pytest.fixture
def tagged(registry: Registry, repo_name: str) -> list[str]:
    from docker_distribution.registry import connect
    from docker_distribution.registry.service import APIEndpoint
    from helpers import push_empty_image

    names = [f"t{i}" for i in range(5)]
    repo = connect(dd.parse_normalized_named(f"{registry.host}/{repo_name}"), APIEndpoint(url=registry.url),
                   auth_config=AuthConfig(), actions=("push", "pull"))
    push_empty_image(repo, *names)
    return names


def test_tag_listing_survives_429_and_5xx(proxy: FaultProxy, tagged: list[str], repo_name: str) -> None:
    proxy.add(Fault(match="/tags/list", status=429, retry_after="0", times=1))
    proxy.add(Fault(match="/tags/list", status=503, times=1))
    assert sorted(dd.tags(dd.parse_normalized_named(f"{proxy.host}/{repo_name}"), ANON)) == tagged


def test_tag_listing_with_a_short_or_lying_body_is_a_typed_error(proxy: FaultProxy, tagged: list[str],
                                                                 repo_name: str) -> None:
    ref = dd.parse_normalized_named(f"{proxy.host}/{repo_name}")
    proxy.add(Fault(match="/tags/list", truncate_to=20, times=100))
    with pytest.raises(E.DistributionError):
        dd.tags(ref, ANON)
    proxy.faults.clear()
    proxy.add(Fault(match="/tags/list", length_delta=-5, times=100))
    with pytest.raises(E.DistributionError):
        dd.tags(ref, ANON)
    proxy.faults.clear()
    proxy.add(Fault(match="/tags/list", length_delta=+40, times=1))  # announced more than sent: retried
    assert sorted(dd.tags(ref, ANON)) == tagged


def test_rmi_from_another_process_during_a_push_waits_for_it(registry: Registry, proxy: FaultProxy, tmp_path: Path,
                                                             repo_name: str) -> None:
    """moby keeps a pushed image's layers referenced until the push ends, so an `rmi` meanwhile
    only untags. Here the push holds a lease: `rmi` from another process untags, says it waits,
    and prunes only after the push, which completes and pulls back whole; the image is then kept
    by the digest reference the push records (as moby's addDigestReference leaves it)."""
    import subprocess
    import sys
    import threading
    import time

    ref = f"{proxy.host}/{repo_name}:v1"
    store, image_id = _local_image(tmp_path / "s", tmp_path, ref, big=8 << 20)
    proxy.add(Fault(match="/blobs/uploads/", method="PATCH", throttle=4 << 20, times=10))  # 8 MiB: about 2 s
    result: dict[str, BaseException] = {}

    def run() -> None:
        try:
            push_image(dd.parse_normalized_named(ref), Store(tmp_path / "s"), config=ANON)  # as the CLI pushes
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            result["error"] = exc

    pusher = threading.Thread(target=run)
    pusher.start()
    deadline = time.monotonic() + 30
    while proxy.total_received("/blobs/uploads/") < 1 << 20 and time.monotonic() < deadline:
        time.sleep(0.02)  # the big layer is on its way up
    exe = str(Path(sys.executable).parent / "docker-distribution")
    rmi = subprocess.run([exe, "--root", str(tmp_path / "s"), "rmi", ref], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "DOCKER_CONFIG": str(tmp_path / "cfg")})
    pusher.join(30)
    assert "error" not in result, result.get("error")
    assert rmi.returncode == 0, rmi.stderr
    assert rmi.stderr == "Waiting for the pulls, pushes and loads in progress on this store to finish...\n"
    assert rmi.stdout == f"Untagged: {ref}\n"
    after = Store(tmp_path / "s")
    assert [r.digest is not None for r in after.references.references(image_id)] == [True]
    assert after.verify() == [] and after.leftovers() == []
    _pulls_back(registry.host, f"{repo_name}:v1", tmp_path, image_id)


def test_a_failed_push_returns_with_none_of_its_uploads_still_sending(registry: Registry, proxy: FaultProxy,
                                                                      tmp_path: Path, repo_name: str) -> None:
    """The top layer's upload fails for good while the bottom one is mid-body: the push raises only
    once that one has stopped too, so nothing of a failed push still talks to the registry after it."""
    rng = random.Random(7)
    dirs = [tmp_path / "bottom", tmp_path / "top"]
    for d, size in zip(dirs, (2 * BIG, BIG)):
        d.mkdir()
        (d / "random.bin").write_bytes(rng.randbytes(size))
    store = Store(tmp_path / "s")
    image_id = store.image_from_directories(dirs, dd.parse_normalized_named(f"{proxy.host}/{repo_name}:v1"))
    top, _ = _big_layer(store, image_id)
    proxy.add(Fault(match=top.split(":")[1], method="PUT", status=500, times=10))
    proxy.add(Fault(match="/blobs/uploads/", method="PATCH", throttle=2 << 20, times=10))  # 2 s and 4 s
    with pytest.raises(E.DistributionError, match="500"):
        _push(store, f"{proxy.host}/{repo_name}:v1", attempts=1)
    # The bottom layer's client has shut its connection: at once, allowing for the proxy's 10 ms
    # polls between throttled reads (the old code went on sending for about two more seconds).
    # The proxy may still be draining what the sockets had buffered; that is not the client.
    assert proxy.senders_gone(timeout=0.2)


def test_a_bare_tag_invalid_on_the_manifest_put_gets_mobys_schema1_hint(
        registry: Registry, proxy: FaultProxy, tmp_path: Path, repo_name: str) -> None:
    # what a registry that takes only schema1 answers; distribution 2.8 takes schema2, so the
    # proxy answers in its place
    store, _ = _local_image(tmp_path / "s", tmp_path, f"{proxy.host}/{repo_name}:v1")
    proxy.add(Fault(match="/manifests/", method="PUT", status=400, times=10,
                    body=b'{"errors":[{"code":"TAG_INVALID"}]}'))
    with pytest.raises(E.DistributionError) as info:
        _push(store, f"{proxy.host}/{repo_name}:v1")
    assert str(info.value) == (
        "[DEPRECATED] support for pushing manifest v2 schema1 images has been removed. More information at "
        "https://docs.docker.com/registry/spec/deprecated-schema-v1/: tag invalid")
    assert isinstance(info.value.__cause__, E.TagInvalidError)


def test_a_tag_invalid_with_the_registrys_own_message_is_passed_on_as_it_is(
        registry: Registry, proxy: FaultProxy, tmp_path: Path, repo_name: str) -> None:
    store, _ = _local_image(tmp_path / "s", tmp_path, f"{proxy.host}/{repo_name}:v1")
    proxy.add(Fault(match="/manifests/", method="PUT", status=400, times=10,
                    body=b'{"errors":[{"code":"TAG_INVALID","message":"tags must be lower case"}]}'))
    with pytest.raises(E.TagInvalidError, match="tag invalid: tags must be lower case"):
        _push(store, f"{proxy.host}/{repo_name}:v1")
