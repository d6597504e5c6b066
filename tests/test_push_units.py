"""moby's push unit tests (moby distribution/push_v2_test.go): mount candidates, existence checks, auth-info rules."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import docker_distribution as dd
import pytest
from docker_distribution import errors as E
from docker_distribution.descriptor import Descriptor
from docker_distribution.metadata import V2Metadata, compute_v2_metadata_hmac
from docker_distribution.push import (
    _PushDescriptor,
    get_repository_mount_candidates,
    layer_already_exists,
)
from docker_distribution.reference import parse_normalized_named
from docker_distribution.registry.auth import AuthConfig

GZ = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def D(name: str) -> dd.Digest:
    return dd.digest_bytes(name.encode())


def M(digest: str, repo: str = "", key: str | None = None) -> V2Metadata:
    meta = V2Metadata(D(digest), repo)
    if key is not None:
        meta = V2Metadata(meta.digest, repo, compute_v2_metadata_hmac(key.encode(), meta))
    return meta


@pytest.mark.parametrize("target, key, max_c, metas, expected", [
    ("busybox", "", -1, [], []),
    ("busybox", "", -1, [M("dgst", "127.0.0.1/repo", "key")], []),
    ("busybox", "", -1, [M("1", "docker.io/library/hello-world", "hash")], [M("1", "docker.io/library/hello-world", "hash")]),
    ("busybox", "", -1, [M("1"), M("3"), M("2")], []),
    ("user/app", "", -1, [M("1", "docker.io/user/foo"), M("3", "docker.io/user/bar"), M("2", "docker.io/library/app")],
     [M("3", "docker.io/user/bar"), M("1", "docker.io/user/foo"), M("2", "docker.io/library/app")]),
    ("127.0.0.1/foo/bar", "abcd", -1,
     [M("1", "docker.io/library/hello-world", "hash"), M("2", "127.0.0.1/hello-world", "efgh"),
      M("3", "docker.io/library/busybox", "abcd"), M("4", "docker.io/library/busybox", "hash"), M("5", "127.0.0.1/foo", "hash"),
      M("6", "127.0.0.1/bar", "hash"), M("7", "127.0.0.1/foo/bar", "efgh"), M("8", "127.0.0.1/xyz", "abcd"),
      M("9", "127.0.0.1/foo/app", "hash")],
     [M("8", "127.0.0.1/xyz", "abcd"), M("9", "127.0.0.1/foo/app", "hash"), M("5", "127.0.0.1/foo", "hash"),
      M("6", "127.0.0.1/bar", "hash"), M("2", "127.0.0.1/hello-world", "efgh")]),
    ("user/app", "abcd", 3,
     [M("1", "docker.io/user/app1", "abcd"), M("2", "docker.io/user/app/base", "abcd"), M("3", "docker.io/user/app", "hash"),
      M("4", "127.0.0.1/user/app", "abcd"), M("5", "docker.io/user/foo", "hash"), M("6", "docker.io/app/bar", "hash")],
     [M("2", "docker.io/user/app/base", "abcd"), M("1", "docker.io/user/app1", "abcd"), M("5", "docker.io/user/foo", "hash")]),
], ids=["empty", "one not matching", "one matching", "missing source", "docker.io", "sort more", "limit"])
def test_get_repository_mount_candidates(target: str, key: str, max_c: int, metas: list[V2Metadata],
                                         expected: list[V2Metadata]) -> None:
    repo = parse_normalized_named(target)
    assert get_repository_mount_candidates(repo, key.encode(), max_c, metas) == expected


class FakeRepo:
    def __init__(self, blobs: dict[str, str] | None = None, errors: dict[str, Exception] | None = None) -> None:
        self.blobs = {D(k): v for k, v in (blobs or {}).items()}
        self.errors = {D(k): v for k, v in (errors or {}).items()}
        self.requests: list[dd.Digest] = []

    def stat_blob(self, digest: dd.Digest | str) -> Descriptor:
        d = digest if isinstance(digest, dd.Digest) else dd.Digest.parse(digest)
        self.requests.append(d)
        if d in self.errors:
            raise self.errors[d]
        if d in self.blobs:
            return Descriptor(self.blobs[d], d, 0)
        raise E.BlobUnknownError("unknown blob", detail=1)


class FakeMetadata:
    def __init__(self) -> None:
        self.added: list[V2Metadata] = []
        self.removed: list[V2Metadata] = []

    def tag_and_add(self, diff_id: dd.Digest, key: bytes | None, meta: V2Metadata) -> None:
        self.added.append(V2Metadata(meta.digest, meta.source_repository, compute_v2_metadata_hmac(key, meta)))

    def remove(self, meta: V2Metadata) -> None:
        self.removed.append(meta)

    def compression(self, digest: dd.Digest) -> str:
        return "gzip"  # moby's world

    def set_compression(self, digest: dd.Digest, codec: str) -> None:
        pass


DENIED = E.DeniedError("access denied", detail=1)
BB = "docker.io/library/busybox"

CASES = [
    ("empty metadata", "busybox", "", 3, True, [], {}, {}, None, [], [], []),
    ("single not existent metadata", "busybox", "", 3, False, [M("pear", BB)], {}, {}, None, ["pear"], [], [M("pear", BB)]),
    ("access denied", "busybox", "", 1, False, [M("apple", BB)], {}, {"apple": DENIED}, None, ["apple"], [], []),
    ("not matching repositories", "busybox", "", 3, False,
     [M("apple", "docker.io/library/hello-world"), M("orange", "docker.io/library/busybox/subapp"),
      M("pear", "docker.io/busybox"), M("plum", "busybox"), M("banana", "127.0.0.1/busybox")], {}, {}, None, [], [], []),
    ("check other repositories", "busybox", "", 10, True,
     [M("apple", "docker.io/library/hello-world"), M("orange", "docker.io/busybox/subapp"), M("pear", "docker.io/busybox"),
      M("plum", BB), M("banana", "127.0.0.1/busybox")], {}, {}, None,
     ["plum", "apple", "pear", "orange", "banana"], [], [M("plum", BB)]),
    ("find existing blob", "busybox", "", 3, False, [M("apple", BB)], {"apple": ""}, {}, "apple", ["apple"], [], []),
    ("find existing blob with different hmac", "busybox", "", 3, False,
     [V2Metadata(D("apple"), BB, "dummyhmac")], {"apple": ""}, {}, "apple", ["apple"], [M("apple", BB)], []),
    ("overwrite media types", "busybox", "key", 3, False, [M("apple", BB)], {"apple": "custom-media-type"}, {}, "apple",
     ["apple"], [M("apple", BB, "key")], []),
    ("find existing blob among many", "127.0.0.1/myapp", "key", 3, False,
     [M("pear", "127.0.0.1/myapp", "someotherkey"), M("apple", "127.0.0.1/myapp", "key"), M("plum", "127.0.0.1/myapp")],
     {"pear": ""}, {}, "pear", ["apple", "plum", "pear"], [M("pear", "127.0.0.1/myapp", "key")],
     [M("apple", "127.0.0.1/myapp", "key"), M("plum", "127.0.0.1/myapp")]),
    ("reach maximum existence checks", "user/app", "", 3, False,
     [M(x, "docker.io/user/app") for x in ("pear", "apple", "plum", "banana")], {"pear": ""}, {}, None,
     ["banana", "plum", "apple"], [], [M(x, "docker.io/user/app") for x in ("banana", "plum", "apple")]),
    ("zero allowed existence checks", "user/app", "", 0, False,
     [M(x, "docker.io/user/app") for x in ("pear", "apple", "plum", "banana")], {"pear": ""}, {}, None, [], [], []),
    ("stat single digest just once", "busybox", "", 3, False,
     [M("pear", BB, "key1"), M("apple", BB, "key2"), M("apple", BB, "key3")], {"pear": ""}, {}, "pear",
     ["apple", "pear"], [M("pear", BB)], [M("apple", BB, "key3")]),
    ("don't stop on first error", "user/app", "key", 3, False,
     [M(x, "docker.io/user/app", "key") for x in ("banana", "orange", "plum")], {"apple": ""}, {"orange": DENIED}, None,
     ["plum", "orange", "banana"], [], [M("plum", "docker.io/user/app", "key"), M("banana", "docker.io/user/app", "key")]),
    ("remove outdated metadata", "docker.io/user/app", "", 3, False,
     [M("plum", BB), M("orange", "docker.io/user/app")], {"plum": ""}, {"orange": E.BlobUnknownError("unknown blob", detail=1)},
     None, ["orange"], [], [M("orange", "docker.io/user/app")]),
    ("missing SourceRepository", "busybox", "", 3, False, [M("1"), M("3"), M("2")], {}, {}, None, ["2", "3", "1"], [], []),
    ("with and without SourceRepository", "busybox", "", 3, False, [M("1"), M("2", BB), M("3")], {"1": ""}, {}, "1",
     ["2", "3", "1"], [M("1", BB)], [M("2", BB)]),
]


@pytest.mark.parametrize("name, target, key, max_checks, other, metas, blobs, errors, found, requests, added, removed",
                         CASES, ids=[c[0] for c in CASES])
def test_layer_already_exists(name: str, target: str, key: str, max_checks: int, other: bool, metas: list[V2Metadata],
                              blobs: dict[str, str], errors: dict[str, Exception], found: str | None, requests: list[str],
                              added: list[V2Metadata], removed: list[V2Metadata]) -> None:
    repo, ms = FakeRepo(blobs, errors), FakeMetadata()
    desc = layer_already_exists(repo, ms, parse_normalized_named(target), key.encode(), D("diff"), other, max_checks, metas,
                                set())
    if found is None:
        assert desc is None
    else:
        assert desc is not None and desc.digest == D(found) and desc.media_type == GZ
    assert repo.requests == [D(r) for r in requests]
    assert ms.added == added
    assert ms.removed == removed


@pytest.mark.parametrize("auth, expected", [
    (AuthConfig(), False), (AuthConfig(username="u", password="p"), True), (AuthConfig(registry_token="t"), True),
    (AuthConfig(username="u"), False),
])
def test_when_empty_auth_config(auth: AuthConfig, expected: bool) -> None:
    assert auth.has_auth_info is expected


def test_push_registry_when_auth_info_empty() -> None:
    """UNAUTHORIZED on mount without credentials: the candidates' metadata is kept."""
    meta = FakeMetadata()
    target = parse_normalized_named("docker.io/user/app")
    candidates = [M("1", "docker.io/user/foo", "abcd"), M("2", "docker.io/user/bar", "abcd")]

    class Repo(FakeRepo):
        named = target

        def mount(self, digest: object, source: object) -> object:
            raise E.UnauthorizedError(detail="no auth")

        def start_upload(self) -> object:
            raise E.UnauthorizedError(detail="no auth")

    class Layer:
        def diff_id(self) -> dd.Digest:
            return D("diff")

        def size(self) -> int:
            return 50 * 1024 * 1024

    class Metadata(FakeMetadata):
        store = None

        def get_metadata(self, diff_id: dd.Digest) -> list[V2Metadata]:
            return candidates

    md = Metadata()
    pusher = SimpleNamespace(repo=Repo(), lock=threading.Lock(), remote_layers={}, has_auth_info=False,
                             config=SimpleNamespace(metadata=md, compression="gzip", compression_level=None))
    pd = _PushDescriptor(pusher, Layer(), b"abcd")  # type: ignore[arg-type]
    ctx = SimpleNamespace(progress=lambda p: None, check=lambda: None)
    with pytest.raises(E.UnauthorizedError):
        pd.upload(ctx)  # type: ignore[arg-type]
    assert md.removed == [] and meta.removed == []


# --- the manifest bytes (moby distribution/push_v2.go, pushTag) ----------------------------------------------------

def test_schema2_manifest_bytes_are_gos_marshal_indent() -> None:
    """``json.MarshalIndent(m, "", "   ")`` of moby's schema2 manifest, byte for byte: its key
    order, no trailing newline, omitempty fields left out (a size of 0 too), map keys sorted, and
    Go's string escapes (HTML's <, > and &, U+2028 and U+2029)."""
    from docker_distribution.manifest import schema2_manifest_bytes

    a, b, c = (dd.Digest.parse("sha256:" + ch * 64) for ch in "abc")
    config = Descriptor("application/vnd.docker.container.image.v1+json", a, 1469)
    layer = Descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", b, 2814446)
    foreign = Descriptor("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", c, 0,
                         urls=("https://example.com/l?x=1&y=<2>",), annotations={"z": "1", "a": "line\u2028sep"})
    expected = (
        '{\n'
        '   "schemaVersion": 2,\n'
        '   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",\n'
        '   "config": {\n'
        '      "mediaType": "application/vnd.docker.container.image.v1+json",\n'
        '      "size": 1469,\n'
        f'      "digest": "{a}"\n'
        '   },\n'
        '   "layers": [\n'
        '      {\n'
        '         "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",\n'
        '         "size": 2814446,\n'
        f'         "digest": "{b}"\n'
        '      },\n'
        '      {\n'
        '         "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",\n'
        f'         "digest": "{c}",\n'
        '         "urls": [\n'
        '            "https://example.com/l?x=1\\u0026y=\\u003c2\\u003e"\n'
        '         ],\n'
        '         "annotations": {\n'
        '            "a": "line\\u2028sep",\n'
        '            "z": "1"\n'
        '         }\n'
        '      }\n'
        '   ]\n'
        '}'
    ).encode()
    assert schema2_manifest_bytes(config, [layer, foreign]) == expected
    assert schema2_manifest_bytes(config, []).endswith(b'   "layers": []\n}')


@pytest.mark.parametrize("transport_ok, tried", [(True, ["https"]), (False, ["https", "http"])])
def test_push_endpoints_skip_http_on_a_host_whose_tls_answered(monkeypatch: pytest.MonkeyPatch, tmp_path: object,
                                                               transport_ok: bool, tried: list[str]) -> None:
    """moby's Push loop (moby distribution/push.go, Push) keeps the same rule as pullEndpoints: after a fallback from an
    https endpoint whose TLS worked, that host's http endpoint is skipped."""
    from pathlib import Path

    import importlib

    from docker_distribution.push import push_image
    from docker_distribution.registry.service import APIEndpoint, RegistryService, ServiceOptions
    from docker_distribution.store import Store

    seen: list[str] = []

    def connect(_: object, endpoint: APIEndpoint, **__: object) -> None:
        seen.append(endpoint.scheme)
        raise E.FallbackError(E.DistributionError(f"{endpoint.scheme} failed"), transport_ok=transport_ok)

    # the module, not the package's ``push`` function of the same name
    monkeypatch.setattr(importlib.import_module("docker_distribution.push"), "connect", connect)
    store = Store(Path(str(tmp_path)))
    ref = parse_normalized_named("127.0.0.1:5000/app:v1")
    store.references.add_tag(ref, dd.digest_bytes(b"an image"))
    svc = RegistryService(ServiceOptions(insecure_registries=["127.0.0.1:5000"]))
    with pytest.raises(E.DistributionError) as info:
        push_image(ref, store, config=dd.Config(registry_service=svc, auth_config=AuthConfig()))
    assert seen == tried
    assert str(info.value) == f"{tried[-1]} failed"
