"""The registry protocol against the real registries of the test bed (and, where a real
registry cannot show a behaviour, the scripted server)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import docker_distribution as dd
import pytest
from bed.pki import CertificateAuthority
from bed.registry import Registry
from bed.scripted import Reply, Request, ScriptedServer
from conftest import BASIC_USERS, TokenBed
from docker_distribution import errors as E
from docker_distribution.reference import parse_normalized_named
from docker_distribution.registry import RetryPolicy, catalog, connect
from docker_distribution.registry.auth import AuthConfig
from docker_distribution.registry.service import (
    APIEndpoint,
    RegistryService,
    ServiceOptions,
    TLSConfig,
)
from docker_distribution.registry.transport import Transport
from helpers import push_empty_image

FAST = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05)


def _ref(registry_host: str, repo: str, tag: str | None = None) -> dd.Reference:
    return parse_normalized_named(f"{registry_host}/{repo}" + (f":{tag}" if tag else ""))


def _plain(reg: Registry) -> APIEndpoint:
    return APIEndpoint(url=reg.url)


def _config(**kw: object) -> dd.Config:
    return dd.Config(retry=FAST, **kw)  # type: ignore[arg-type]


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    s = ScriptedServer()
    yield s
    s.stop()


# --- tags -----------------------------------------------------------------------------------


def test_a_repository_with_2500_tags_lists_completely(registry: Registry, repo_name: str) -> None:
    repo = connect(_ref(registry.host, repo_name), _plain(registry), auth_config=AuthConfig(),
                   actions=("push", "pull"))
    wanted = [f"t{i:04d}" for i in range(2500)]
    push_empty_image(repo, *wanted)
    got = dd.tags(_ref(registry.host, repo_name), _config(auth_config=AuthConfig()))
    assert sorted(got) == wanted


def test_catalog_pagination_with_n_100_on_the_real_registry(registry_factory: object) -> None:
    reg = registry_factory()  # type: ignore[operator]
    names = [f"cat/r{i:03d}" for i in range(230)]
    for name in names:
        repo = connect(_ref(reg.host, name), _plain(reg), auth_config=AuthConfig(), actions=("push", "pull"))
        push_empty_image(repo, "v1")
    transport = Transport(_plain(reg))
    pages: list[str] = []
    transport.session.hooks["response"].append(lambda r, *a, **k: pages.append(r.url))
    # the registry answers at most 100 per page: all 230 means its Link headers were followed
    assert catalog(transport, page_size=100) == sorted(names)
    assert len([u for u in pages if "_catalog" in u]) == 3


def test_pagination_without_end_is_cut_off_typed(scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from docker_distribution.registry import client

    monkeypatch.setattr(client, "MAX_LISTING", 64 * 1024)

    def endless(req: Request) -> Reply:  # every page links to a new one
        n = int(req.query.get("last", ["0"])[0]) + 1
        return Reply(200, {"name": "lib/x", "tags": [f"t{n}-{i}" for i in range(100)]},
                     {"Link": f'</v2/lib/x/tags/list?last={n}>; rel="next"'})

    scripted.route("/v2/lib/x/tags/list", endless)
    scripted.route("/v2/", lambda r: Reply(200, {}))
    repo = connect(_ref(scripted.host, "lib/x"), APIEndpoint(url=scripted.url), auth_config=AuthConfig())
    with pytest.raises(E.ResponseFormatError, match="pages do not end"):
        repo.tags()
    assert 10 < len(scripted.requests) < 100


def test_tags_follow_link_pagination_like_docker_hub(scripted: ScriptedServer) -> None:
    pages = {None: (["a", "b"], "/v2/lib/x/tags/list?n=2&last=b"), "b": (["c", "d"], "/v2/lib/x/tags/list?n=2&last=d"),
             "d": (["e"], None)}

    def tags_route(req: Request) -> Reply:
        last = req.query.get("last", [None])[0]
        items, nxt = pages[last]
        headers = {"RateLimit-Limit": "100;w=21600", "RateLimit-Remaining": "97;w=21600"}
        if nxt:
            headers["Link"] = f'<{nxt}>; rel="next"'
        return Reply(200, {"name": "lib/x", "tags": items}, headers)

    scripted.route("/v2/lib/x/tags/list", tags_route)
    scripted.route("/v2/", lambda r: Reply(200, {}))
    repo = connect(_ref(scripted.host, "lib/x"), APIEndpoint(url=scripted.url), auth_config=AuthConfig())
    assert repo.tags() == ["a", "b", "c", "d", "e"]
    assert repo.transport.rate_limit.remaining == "97;w=21600"
    assert repo.transport.rate_limit.limit == "100;w=21600"


@pytest.mark.parametrize("body", [{"tags": "latest"}, {"tags": 7}, {"tags": ["a", 1]}, {"tags": [["a"]]}, [], "{"],
                         ids=["string", "number", "mixed", "nested", "array", "not-json"])
def test_a_hostile_tag_listing_is_a_response_format_error(scripted: ScriptedServer, body: object) -> None:
    """A real registry cannot be made to send these; a hostile one can. A string is not a list of
    one-letter tags, and a number or a nested list is not a TypeError."""
    scripted.route("/v2/lib/x/tags/list", lambda r: Reply(200, body))
    scripted.route("/v2/", lambda r: Reply(200, {}))
    repo = connect(_ref(scripted.host, "lib/x"), APIEndpoint(url=scripted.url), auth_config=AuthConfig())
    with pytest.raises(E.ResponseFormatError):
        repo.tags()


def test_a_token_response_saying_infinity_is_a_token_held_for_the_minimum(scripted: ScriptedServer) -> None:
    """Python's JSON reads ``Infinity``; a token server sending it must not crash the lifetime sum."""
    challenge = {"WWW-Authenticate": f'Bearer realm="{scripted.url}/token",service="s"'}
    denied = Reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "auth"}]}, challenge)
    authorized = lambda r: r.headers.get("Authorization") == "Bearer abc"  # noqa: E731
    scripted.route("/v2/lib/x/tags/list", lambda r: Reply(200, {"tags": ["v1"]}) if authorized(r) else denied)
    scripted.route("/v2/", lambda r: Reply(200, {}) if authorized(r) else denied)
    scripted.route("/token", lambda r: Reply(200, '{"token": "abc", "expires_in": Infinity}'))
    repo = connect(_ref(scripted.host, "lib/x"), APIEndpoint(url=scripted.url), auth_config=AuthConfig())
    assert repo.tags() == ["v1"] and repo.tags() == ["v1"]
    assert sum(r.path == "/token" for r in scripted.requests) == 1  # cached, not refetched


def test_a_token_response_without_end_is_not_read_past_its_cap(scripted: ScriptedServer) -> None:
    from docker_distribution.registry.auth import MAX_TOKEN_RESPONSE

    challenge = {"WWW-Authenticate": f'Bearer realm="{scripted.url}/token",service="s"'}
    denied = Reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "auth"}]}, challenge)
    scripted.route("/v2/", lambda r: denied)
    scripted.route("/v2/lib/x/tags/list", lambda r: denied)
    scripted.route("/token", lambda r: Reply(200, '{"token": "' + "a" * (2 * MAX_TOKEN_RESPONSE) + '"}'))
    repo = connect(_ref(scripted.host, "lib/x"), APIEndpoint(url=scripted.url), auth_config=AuthConfig())
    with pytest.raises(E.TokenAuthError, match=f"token response larger than {MAX_TOKEN_RESPONSE} bytes"):
        repo.tags()


def test_bodies_nobody_needs_are_not_read_whole(scripted: ScriptedServer) -> None:
    """A ping's body, and the body of a success whose headers are all a request needs, are left
    unread past a small cap: a hostile server's 256 MiB answer costs the connection, not the memory."""
    digest = dd.digest_bytes(b"{}")
    scripted.route("/v2/lib/x/manifests/", lambda r: Reply(201, headers={"Docker-Content-Digest": str(digest)},
                                                          stream=256 << 20))
    scripted.route("/v2/", lambda r: Reply(200, stream=256 << 20))
    repo = connect(_ref(scripted.host, "lib/x"), APIEndpoint(url=scripted.url), auth_config=AuthConfig())
    assert repo.put_manifest("v1", b"{}", "application/vnd.oci.image.manifest.v1+json") == digest
    last, deadline = -1, time.monotonic() + 10
    while scripted.sent != last and time.monotonic() < deadline:  # until the server's writes stop
        last = scripted.sent
        time.sleep(0.3)
    assert scripted.sent < 32 << 20  # what the sockets buffered before the client closed them


def test_redirects_are_followed_without_reading_their_bodies(scripted: ScriptedServer) -> None:
    """requests' own redirect handling reads every redirect's body whole: a ping and a token
    request each redirected with a 256 MiB body would hold it in memory. They are closed unread."""
    challenge = {"WWW-Authenticate": f'Bearer realm="{scripted.url}/token",service="s"'}
    denied = Reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "auth"}]}, challenge)
    scripted.route("/v2/lib/x/tags/list",
                   lambda r: Reply(200, {"tags": ["v1"]}) if r.headers.get("Authorization") == "Bearer t" else denied)
    scripted.route("/v2/", lambda r: Reply(302, headers={"Location": "/v2/pinged"}, stream=256 << 20)
                   if r.path == "/v2/" else denied)
    scripted.route("/token2", lambda r: Reply(200, {"token": "t"}))
    scripted.route("/token", lambda r: Reply(302, headers={"Location": "/token2?x=1"}, stream=256 << 20))
    repo = connect(_ref(scripted.host, "lib/x"), APIEndpoint(url=scripted.url), auth_config=AuthConfig())
    assert repo.tags() == ["v1"]
    assert [r.path for r in scripted.requests if r.path.startswith("/token")] == ["/token", "/token2"]
    assert scripted.requests[-2].query == {"x": ["1"]}  # the Location's own query, not the first URL's
    last, deadline = -1, time.monotonic() + 10
    while scripted.sent != last and time.monotonic() < deadline:  # until the server's writes stop
        last = scripted.sent
        time.sleep(0.3)
    assert scripted.sent < 32 << 20  # what the sockets buffered before the client closed them


_BOMB = """
import resource, sys, zlib
sys.path.insert(0, {tests!r})
from bed.scripted import Reply, ScriptedServer
import pytest
from docker_distribution import errors as E
from docker_distribution.reference import parse_normalized_named
from docker_distribution.registry import connect
from docker_distribution.registry.auth import AuthConfig
from docker_distribution.registry.service import APIEndpoint

gz = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip of 1 GiB of zeros, about 1 MB, made 1 MiB at a time
bomb = b"".join(gz.compress(bytes(1 << 20)) for _ in range(1024)) + gz.flush()
server = ScriptedServer()
server.route("/v2/x/manifests/", lambda r: Reply(200, bomb, {{"Content-Encoding": "gzip",
             "Content-Type": "application/vnd.oci.image.manifest.v1+json"}}))
server.route("/v2/", lambda r: Reply(200, {{}}))
repo = connect(parse_normalized_named(server.host + "/x"), APIEndpoint(url=server.url), auth_config=AuthConfig())
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with pytest.raises(E.ManifestTooLargeError):
    repo.get_manifest("latest")
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_a_compressed_answer_is_not_inflated_past_the_cap() -> None:
    """A manifest sent as ``Content-Encoding: gzip`` that inflates to 1 GiB: refused at the 4 MiB
    cap, having cost memory of the order of the cap, not of the inflated body (urllib3 2.7 and
    later inflate a bounded amount per read; pyproject.toml requires it)."""
    out = subprocess.run([sys.executable, "-c", _BOMB.format(tests=str(Path(__file__).parent))],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) < 64  # MiB of peak memory the refusal cost


def test_requests_take_their_proxy_from_the_environment(scripted: ScriptedServer, registry: Registry,
                                                       repo_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """As moby's transport: ``HTTP_PROXY`` is used (the scripted server plays the proxy and sees
    absolute-form requests for the registry's host), and ``NO_PROXY`` is honoured."""
    for name in ("NO_PROXY", "no_proxy", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", scripted.url)
    scripted.route("/v2/lib/x/tags/list", lambda r: Reply(200, {"tags": ["v1"]}))
    scripted.route("/v2/", lambda r: Reply(200, {}))
    far = "registry.example:5000"  # never resolved: the proxy is asked for it
    repo = connect(_ref(far, "lib/x"), APIEndpoint(url=f"http://{far}"), auth_config=AuthConfig())
    assert repo.tags() == ["v1"]
    assert [r.path for r in scripted.requests] == ["/v2/", "/v2/lib/x/tags/list"]
    assert {r.headers["Host"] for r in scripted.requests} == {far}
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    direct = connect(_ref(registry.host, repo_name), _plain(registry), auth_config=AuthConfig(),
                     actions=("push", "pull"))
    push_empty_image(direct, "v1")
    assert direct.tags() == ["v1"]
    assert len(scripted.requests) == 2  # the real registry was reached directly


def test_a_docker_config_file_of_the_wrong_shape_is_a_typed_error(tmp_path: Path) -> None:
    from docker_distribution.registry.auth import DockerConfigFile
    for text in ('{"credHelpers": ["x"]}', '{"auths": "x"}', "[]", '{"credsStore": 1}', '{"auths": {"h": "x"}}',
                 '{"credHelpers": {"h": 1}}'):
        (tmp_path / "config.json").write_text(text)
        with pytest.raises(E.CredentialHelperError, match="not a docker config file"):
            DockerConfigFile(tmp_path / "config.json")


def test_429_with_retry_after_is_retried(scripted: ScriptedServer) -> None:
    calls = {"n": 0}

    def flaky(req: Request) -> Reply:
        calls["n"] += 1
        if calls["n"] == 1:
            return Reply(429, {"errors": [{"code": "TOOMANYREQUESTS", "message": "slow down"}]}, {"Retry-After": "0"})
        return Reply(200, {"tags": ["ok"]})

    scripted.route("/v2/lib/x/tags/list", flaky)
    scripted.route("/v2/", lambda r: Reply(200, {}))
    repo = connect(_ref(scripted.host, "lib/x"), APIEndpoint(url=scripted.url), auth_config=AuthConfig(), retry=FAST)
    assert repo.tags() == ["ok"]
    assert calls["n"] == 2


def test_a_missing_repository_gives_mobys_not_found_message(registry: Registry) -> None:
    with pytest.raises(E.NotFoundError) as info:
        dd.tags(_ref(registry.host, "does/not-exist"), _config(auth_config=AuthConfig()))
    assert str(info.value).startswith(f"repository {registry.host}/does/not-exist not found: name unknown: ")


def test_scratch_is_reserved() -> None:
    with pytest.raises(E.ReservedNameError, match="'scratch' is a reserved name"):
        dd.tags(parse_normalized_named("scratch"))
    with pytest.raises(E.ReservedNameError):
        dd.get_repositories(parse_normalized_named("scratch"))


# --- manifests and blobs --------------------------------------------------------------------


def test_manifest_round_trip_keeps_raw_bytes_and_verifies(registry: Registry, repo_name: str) -> None:
    repo = connect(_ref(registry.host, repo_name), _plain(registry), auth_config=AuthConfig(), actions=("push", "pull"))
    digest = push_empty_image(repo, "v1")
    by_tag = repo.get_manifest("v1")
    by_digest = repo.get_manifest(str(digest))
    assert by_tag.payload == by_digest.payload
    assert by_tag.digest == digest == dd.digest_bytes(by_tag.payload)
    assert b'\n   "schemaVersion"' in by_tag.payload  # the 3-space indent we pushed, untouched
    desc = repo.resolve("v1")
    assert (desc.digest, desc.size, desc.media_type) == (digest, len(by_tag.payload), by_tag.media_type)
    assert repo.manifest_exists(digest)
    with pytest.raises(E.ManifestUnknownError):
        repo.get_manifest("nope")


def test_blob_range_requests(registry: Registry, repo_name: str) -> None:
    repo = connect(_ref(registry.host, repo_name), _plain(registry), auth_config=AuthConfig(), actions=("push", "pull"))
    data = os.urandom(100_000)
    digest = dd.digest_bytes(data)
    repo.upload_monolithic(data, digest)
    assert repo.stat_blob(digest).size == len(data)
    with repo.open_blob(digest, offset=40_000) as resp:
        assert resp.status_code == 206
        from docker_distribution.registry.client import parse_content_range

        assert parse_content_range(resp.headers.get("Content-Range"), 40_000) == len(data)
        assert resp.content == data[40_000:]
    assert repo.get_blob(digest) == data
    with pytest.raises(E.BlobUnknownError):
        repo.stat_blob(dd.digest_bytes(b"absent"))


def test_chunked_and_resumed_upload(registry: Registry, repo_name: str) -> None:
    repo = connect(_ref(registry.host, repo_name), _plain(registry), auth_config=AuthConfig(), actions=("push", "pull"))
    data = os.urandom(3 * 1024 * 1024 + 17)
    digest = dd.digest_bytes(data)
    upload = repo.start_upload()
    assert not isinstance(upload, dd.Descriptor)
    upload.write_chunk(data[: 1 << 20])
    assert upload.offset == 1 << 20
    # a new session object at the same location learns the offset from the registry
    from docker_distribution.registry.client import BlobUpload

    resumed = BlobUpload(repo, upload.location, upload.uuid)
    assert resumed.status() == 1 << 20
    resumed.write(iter([data[1 << 20: 2 << 20], data[2 << 20:]]))
    assert resumed.offset == len(data)
    assert resumed.commit(digest).size == len(data)
    assert repo.get_blob(digest, max_size=len(data)) == data


def test_cross_repository_mount(registry: Registry, repo_name: str) -> None:
    src = connect(_ref(registry.host, repo_name), _plain(registry), auth_config=AuthConfig(), actions=("push", "pull"))
    data = b"mount me" * 1000
    digest = dd.digest_bytes(data)
    src.upload_monolithic(data, digest)
    dst = connect(_ref(registry.host, repo_name + "-copy"), _plain(registry), auth_config=AuthConfig(),
                  actions=("push", "pull"))
    mounted = dst.mount(digest, repo_name)
    assert isinstance(mounted, dd.Descriptor) and mounted.size == len(data)
    assert dst.get_blob(digest) == data


def test_manifest_over_the_cap_is_refused(registry: Registry, repo_name: str) -> None:
    repo = connect(_ref(registry.host, repo_name), _plain(registry), auth_config=AuthConfig(), actions=("push", "pull"))
    push_empty_image(repo, "v1")
    with pytest.raises(E.ManifestTooLargeError):
        repo.get_manifest("v1", max_size=100)


# --- mirrors --------------------------------------------------------------------------------


def _dead_url() -> str:
    from bed.registry import free_port

    return f"http://127.0.0.1:{free_port()}"


def test_get_repositories_skips_a_dead_mirror(registry: Registry, mirror_registry: Registry, repo_name: str) -> None:
    svc = RegistryService(ServiceOptions(registry_mirrors={registry.host: [_dead_url(), mirror_registry.url]}))
    repos = dd.get_repositories(_ref(registry.host, repo_name), _config(registry_service=svc, auth_config=AuthConfig()))
    # dead mirror skipped; https to the plain registry fails; the live mirror and http upstream remain
    assert [r.endpoint.url for r in repos] == [mirror_registry.url, registry.url]
    assert repos[0].endpoint.mirror


def test_pull_through_mirror_serves_a_manifest(registry: Registry, mirror_registry: Registry, repo_name: str) -> None:
    upstream = connect(_ref(registry.host, repo_name), _plain(registry), auth_config=AuthConfig(), actions=("push", "pull"))
    digest = push_empty_image(upstream, "v1")
    svc = RegistryService(ServiceOptions(registry_mirrors={registry.host: [mirror_registry.url]}))
    [via_mirror, _] = dd.get_repositories(_ref(registry.host, repo_name), _config(registry_service=svc, auth_config=AuthConfig()))
    assert via_mirror.endpoint.url == mirror_registry.url
    assert via_mirror.get_manifest("v1").digest == digest


def test_dead_mirror_falls_back_to_the_upstream(registry: Registry, repo_name: str) -> None:
    upstream = connect(_ref(registry.host, repo_name), _plain(registry), auth_config=AuthConfig(), actions=("push", "pull"))
    push_empty_image(upstream, "v1", "v2")
    svc = RegistryService(ServiceOptions(registry_mirrors={registry.host: [_dead_url()]}))
    assert sorted(dd.tags(_ref(registry.host, repo_name), _config(registry_service=svc, auth_config=AuthConfig()))) == ["v1", "v2"]


# --- auth -----------------------------------------------------------------------------------


def _tls_endpoint(reg: Registry, ca: CertificateAuthority) -> APIEndpoint:
    return APIEndpoint(url=reg.url, tls=TLSConfig(verify=True, ca_bundle=str(ca.cert_path)))


def test_basic_auth_over_tls(tls_registry: Registry, ca: CertificateAuthority, repo_name: str) -> None:
    auth = AuthConfig(username="alice", password=BASIC_USERS["alice"])
    repo = connect(_ref(tls_registry.host, repo_name), _tls_endpoint(tls_registry, ca), auth_config=auth,
                   actions=("push", "pull"))
    push_empty_image(repo, "v1")
    assert repo.tags() == ["v1"]
    anonymous = connect(_ref(tls_registry.host, repo_name), _tls_endpoint(tls_registry, ca), auth_config=AuthConfig())
    with pytest.raises(E.NoBasicAuthCredentialsError, match="no basic auth credentials"):
        anonymous.tags()
    wrong = connect(_ref(tls_registry.host, repo_name), _tls_endpoint(tls_registry, ca),
                    auth_config=AuthConfig(username="alice", password="wrong"))
    with pytest.raises(E.UnauthorizedError) as info:
        wrong.tags()
    assert str(info.value) == "unauthorized: authentication required"


def test_tls_is_verified_by_default(tls_registry: Registry, repo_name: str) -> None:
    endpoint = APIEndpoint(url=tls_registry.url)  # system roots only: the bed's CA is unknown
    with pytest.raises(E.FallbackError) as info:
        connect(_ref(tls_registry.host, repo_name), endpoint, auth_config=AuthConfig())
    assert "certificate verify failed" in str(info.value)
    assert info.value.transport_ok is False


def test_tls_trust_store_is_loaded_once_not_per_connection(tls_registry: Registry, ca: CertificateAuthority,
                                                          repo_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every new TLS connection used to load the CA bundle (or, for an insecure endpoint, the
    system roots it never checks) into a context of its own, ~50 ms each; now one context per
    trust setting serves them all — and still verifies."""
    import ssl

    loads: list[str] = []
    for name in ("load_verify_locations", "load_default_certs", "set_default_verify_paths"):
        real = getattr(ssl.SSLContext, name)

        def counting(self: ssl.SSLContext, *args: object, _real: object = real, _name: str = name,
                     **kwargs: object) -> object:
            loads.append(_name)
            return _real(self, *args, **kwargs)  # type: ignore[operator]

        monkeypatch.setattr(ssl.SSLContext, name, counting)
    auth = AuthConfig(username="alice", password=BASIC_USERS["alice"])
    for _ in range(4):  # a new Transport each time: new pools, new connections
        repo = connect(_ref(tls_registry.host, repo_name), _tls_endpoint(tls_registry, ca), auth_config=auth)
        with pytest.raises(E.DistributionError):  # nothing pushed: the registry's own answer, over TLS
            repo.tags()
    assert len(loads) <= 1, loads
    loads.clear()
    insecure = APIEndpoint(url=tls_registry.url, tls=TLSConfig(verify=False))
    for _ in range(3):  # unverified on purpose: no InsecureRequestWarning (pytest makes any warning an error)
        with pytest.raises(E.DistributionError):
            connect(_ref(tls_registry.host, repo_name), insecure, auth_config=auth).tags()
    assert loads == []
    import warnings

    assert sum(1 for f in warnings.filters if f[1] is not None and "Unverified HTTPS" in f[1].pattern) == 1  # once
    with pytest.raises(E.FallbackError, match="certificate verify failed"):  # the default roots still decide
        connect(_ref(tls_registry.host, repo_name), APIEndpoint(url=tls_registry.url), auth_config=auth)


def test_tls_context_is_shared_per_trust_setting_and_renewed_with_its_files(ca: CertificateAuthority,
                                                                           tmp_path: Path) -> None:
    import shutil
    import ssl

    from docker_distribution.registry.tls import tls_context

    bundle = tmp_path / "ca.pem"
    shutil.copy(ca.cert_path, bundle)
    client = ca.issue("client-for-tls-context", server=False)
    ctx = tls_context(str(bundle), (str(client.cert_path), str(client.key_path)))
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.cert_store_stats()["x509_ca"] == 1  # exactly the bundle, nothing else
    assert tls_context(str(bundle), (str(client.cert_path), str(client.key_path))) is ctx
    assert tls_context(str(bundle)) is not ctx  # no client certificate: another setting
    insecure = tls_context(False)
    assert insecure.verify_mode == ssl.CERT_NONE and not insecure.check_hostname
    assert insecure.cert_store_stats()["x509"] == 0
    os.utime(bundle, ns=(0, 0))  # a rewritten certs.d bundle is read again
    assert tls_context(str(bundle), (str(client.cert_path), str(client.key_path))) is not ctx
    with pytest.raises(OSError, match="Could not find a suitable TLS CA certificate bundle"):
        tls_context(str(tmp_path / "missing.pem"))


def test_bearer_tokens_carry_pull_or_push_pull_scope(token_registry: TokenBed, repo_name: str) -> None:
    reg, issuer = token_registry.registry, token_registry.issuer
    alice = AuthConfig(username="alice", password="alice-token-pw")
    pusher = connect(_ref(reg.host, repo_name), _plain(reg), auth_config=alice, actions=("push", "pull"))
    push_empty_image(pusher, "v1")
    assert issuer.requests[-1].params["scope"] == [f"repository:{repo_name}:push,pull"]
    assert issuer.requests[-1].params["account"] == ["alice"]
    reader = AuthConfig(username="reader", password="reader-token-pw")
    assert dd.tags(_ref(reg.host, repo_name), _config(auth_config=reader)) == ["v1"]
    assert issuer.requests[-1].params["scope"] == [f"repository:{repo_name}:pull"]


def test_token_is_cached_per_scope(token_registry: TokenBed, repo_name: str) -> None:
    reg = token_registry.registry
    repo = connect(_ref(reg.host, repo_name), _plain(reg), auth_config=AuthConfig(username="alice", password="alice-token-pw"),
                   actions=("push", "pull"))
    before = len(token_registry.issuer.requests)
    push_empty_image(repo, "a", "b", "c")
    repo.tags()
    assert len(token_registry.issuer.requests) - before == 1


def test_pull_only_token_cannot_push(token_registry: TokenBed, repo_name: str) -> None:
    reg = token_registry.registry
    reader = connect(_ref(reg.host, repo_name), _plain(reg), auth_config=AuthConfig(username="reader", password="reader-token-pw"),
                     actions=("push", "pull"))
    with pytest.raises(E.DeniedError) as info:
        reader.start_upload()
    assert info.value.status == 401
    assert isinstance(E.retry_on_error(info.value), E.DoNotRetry)


def test_wrong_password_gives_mobys_message(token_registry: TokenBed, repo_name: str) -> None:
    reg = token_registry.registry
    with pytest.raises(E.UnauthorizedError) as info:
        dd.tags(_ref(reg.host, repo_name), _config(auth_config=AuthConfig(username="alice", password="wrong")))
    assert str(info.value) == (f'Get "http://{reg.host}/v2/{repo_name}/tags/list": '
                               "unauthorized: incorrect username or password")
    assert "wrong" not in str(info.value)


def test_credential_helper_resolution(token_registry: TokenBed, repo_name: str, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    reg = token_registry.registry
    alice = connect(_ref(reg.host, repo_name), _plain(reg), auth_config=AuthConfig(username="alice", password="alice-token-pw"),
                    actions=("push", "pull"))
    push_empty_image(alice, "v1")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "helper.log"
    helper = bindir / "docker-credential-test"
    helper.write_text(f"""#!{sys.executable}
import json, sys
action = sys.argv[1]
server = sys.stdin.read().strip()
open({str(log)!r}, "a").write(action + " " + server + "\\n")
if action == "get" and server == {reg.host!r}:
    print(json.dumps({{"ServerURL": server, "Username": "reader", "Secret": "reader-token-pw"}}))
else:
    print("credentials not found in native keychain")
    sys.exit(1)
""")
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    config_dir = tmp_path / "docker"
    config_dir.mkdir()
    (config_dir / "config.json").write_text(json.dumps({"credHelpers": {reg.host: "test"}}))
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DOCKER_CONFIG", str(config_dir))
    assert dd.tags(_ref(reg.host, repo_name), _config()) == ["v1"]  # auth_config None: config.json + helper
    assert log.read_text().splitlines() == [f"get {reg.host}"]
    assert token_registry.issuer.requests[-1].username == "reader"


def test_login_and_logout_through_the_cli(token_registry: TokenBed, tmp_path: Path) -> None:
    reg = token_registry.registry
    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path)}
    exe = str(Path(sys.executable).parent / "docker-distribution")
    bad = subprocess.run([exe, "login", reg.host, "-u", "alice", "--password-stdin"], input="nope\n",
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and "incorrect username or password" in bad.stderr and "nope" not in bad.stderr
    ok = subprocess.run([exe, "login", reg.host, "-u", "alice", "--password-stdin"], input="alice-token-pw\n",
                        capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "Login Succeeded"
    stored = json.loads((tmp_path / "config.json").read_text())["auths"][reg.host]
    assert stored["identitytoken"]  # the refresh token is kept instead of the password
    assert "alice-token-pw" not in (tmp_path / "config.json").read_text()
    assert (tmp_path / "config.json").stat().st_mode & 0o077 == 0
    # docker's guards: a password on the command line is warned about; stdin and a flag are exclusive
    argv = [exe, "login", reg.host, "-u", "alice", "-p", "alice-token-pw"]
    flag = subprocess.run(argv, capture_output=True, text=True, env=env)
    assert (flag.returncode, flag.stdout.strip()) == (0, "Login Succeeded")
    assert flag.stderr == "WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n"
    both = subprocess.run([*argv, "--password-stdin"], input="x\n", capture_output=True, text=True, env=env)
    assert (both.returncode, both.stderr) == (1, "Error: --password and --password-stdin are mutually exclusive\n")
    # without -u, the password on stdin would be read as the user name: refused before any request
    nameless = subprocess.run([exe, "login", reg.host, "--password-stdin"], input="alice-token-pw\n",
                              capture_output=True, text=True, env=env)
    assert (nameless.returncode, nameless.stderr) == (1, "Error: Must provide --username with --password-stdin\n")
    out = subprocess.run([exe, "logout", reg.host], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == f"Removing login credentials for {reg.host}"
    assert reg.host not in json.loads((tmp_path / "config.json").read_text())["auths"]


def test_a_password_kept_in_config_json_is_warned_about_as_docker_does(tls_registry: Registry, tmp_path: Path) -> None:
    from conftest import BASIC_USERS

    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path)}
    exe = str(Path(sys.executable).parent / "docker-distribution")
    ok = subprocess.run([exe, "login", tls_registry.host, "--insecure-registry", tls_registry.host, "-u", "alice",
                         "--password-stdin"], input=f"{BASIC_USERS['alice']}\n", capture_output=True, text=True,
                        env=env)
    assert (ok.returncode, ok.stdout) == (0, "Login Succeeded\n"), ok.stderr
    assert ok.stderr == (f"\nWARNING! Your credentials are stored unencrypted in '{tmp_path / 'config.json'}'.\n"
                         "Configure a credential helper to remove this warning. See\n"
                         "https://docs.docker.com/go/credential-store/\n")
    assert BASIC_USERS["alice"] not in ok.stderr + ok.stdout
    assert json.loads((tmp_path / "config.json").read_text())["auths"][tls_registry.host]["auth"]


def test_identity_token_uses_the_oauth_refresh_flow(token_registry: TokenBed, repo_name: str) -> None:
    reg, issuer = token_registry.registry, token_registry.issuer
    refresh = issuer._new_refresh("reader")
    repo = connect(_ref(reg.host, repo_name), _plain(reg), auth_config=AuthConfig(identity_token=refresh))
    with pytest.raises(E.NameUnknownError):
        repo.tags()  # authorised (the registry answers about the repository, not the token)
    last = issuer.requests[-1]
    assert last.method == "POST" and last.params["grant_type"] == ["refresh_token"]
    assert last.params["client_id"] == ["docker"] and last.username == "reader"


# --- TestTokenPassThru / TestTokenPassThruDifferentHost -------------------------------------


def test_token_pass_thru(scripted: ScriptedServer) -> None:
    scripted.route("/v2/", lambda r: Reply(401, {}, {"WWW-Authenticate": 'Bearer realm="foorealm"'}))
    repo = connect(_ref(scripted.host, "testremotename"), APIEndpoint(url=scripted.url),
                   auth_config=AuthConfig(registry_token="mysecrettoken"))
    with pytest.raises(E.DistributionError):
        repo.resolve("tag_goes_here")
    assert any("mysecrettoken" in r.headers.get("Authorization", "") for r in scripted.requests)


def test_token_pass_thru_different_host(scripted: ScriptedServer) -> None:
    other = ScriptedServer()
    try:
        other.route("/", lambda r: Reply(404, {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "x", "detail": 1}]}))
        scripted.route("/v2/testremotename/", lambda r: Reply(301, b"", {"Location": other.url + r.path}))
        scripted.route("/v2/", lambda r: Reply(401, {}, {"WWW-Authenticate": 'Bearer realm="foorealm"'}))
        repo = connect(_ref(scripted.host, "testremotename"), APIEndpoint(url=scripted.url),
                       auth_config=AuthConfig(registry_token="mysecrettoken"))
        with pytest.raises(E.ManifestUnknownError):
            repo.get_manifest("tag_goes_here")
        assert other.requests, "the redirect target was reached"
        assert all("Authorization" not in r.headers for r in other.requests)
        assert any("mysecrettoken" in r.headers.get("Authorization", "") for r in scripted.requests)
    finally:
        other.stop()


def test_redirect_to_another_host_never_carries_basic_credentials(tls_registry: Registry, scripted: ScriptedServer,
                                                                   ca: CertificateAuthority) -> None:
    scripted.route("/v2/x/blobs/", lambda r: Reply(307, b"", {"Location": f"{scripted.url}/storage{r.path}"}))
    scripted.route("/storage/", lambda r: Reply(200, b"blob"))
    scripted.route("/v2/", lambda r: Reply(401, {}, {"WWW-Authenticate": 'Basic realm="r"'}))
    repo = connect(_ref(scripted.host, "x"), APIEndpoint(url=scripted.url),
                   auth_config=AuthConfig(username="u", password="secret-pw"))
    with repo.open_blob(dd.digest_bytes(b"blob")) as resp:
        assert resp.content == b"blob"
    storage = [r for r in scripted.requests if r.path.startswith("/storage/")]
    assert storage and all("Authorization" not in r.headers for r in storage)
    blobs = [r for r in scripted.requests if r.path.startswith("/v2/x/blobs/")]
    assert blobs and all(r.headers["Authorization"].startswith("Basic ") for r in blobs)


def test_blobs_are_asked_for_as_they_are_stored(scripted: ScriptedServer) -> None:
    """A layer is verified byte for byte as it arrives, never decoded: storage behind a redirect
    that gzips whatever a client accepts (as a proxy or CDN may) must be asked for no encoding, or
    it hands over other bytes than the digest names."""
    import gzip

    blob = b"layer bytes " * 1000

    def storage(r: Request) -> Reply:
        if "gzip" in r.headers.get("Accept-Encoding", ""):
            return Reply(200, gzip.compress(blob), {"Content-Encoding": "gzip"})
        return Reply(200, blob)

    scripted.route("/v2/x/blobs/", lambda r: Reply(307, b"", {"Location": f"{scripted.url}/storage{r.path}"}))
    scripted.route("/storage/", storage)
    scripted.route("/v2/", lambda r: Reply(200, {}))
    repo = connect(_ref(scripted.host, "x"), APIEndpoint(url=scripted.url), auth_config=AuthConfig())
    with repo.open_blob(dd.digest_bytes(blob)) as resp:
        assert resp.raw.read(decode_content=False) == blob  # what a layer download reads
    with repo.open_blob(dd.digest_bytes(blob), offset=6, length=5) as resp:
        assert resp.raw.read(decode_content=False) == blob  # this storage ignores Range: the whole blob
    assert repo.get_blob(dd.digest_bytes(blob)) == blob
    sent = [r.headers.get("Accept-Encoding") for r in scripted.requests if "/blobs/" in r.path]
    assert len(sent) == 6 and set(sent) == {"identity"}


def test_manifest_by_tag_is_checked_against_docker_content_digest(scripted: ScriptedServer) -> None:
    body = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}'
    lie = str(dd.digest_bytes(b"something else"))
    scripted.route("/v2/x/manifests/", lambda r: Reply(200, body, {"Content-Type": "application/vnd.oci.image.manifest.v1+json",
                                                                   "Docker-Content-Digest": lie}))
    scripted.route("/v2/", lambda r: Reply(200, {}))
    repo = connect(_ref(scripted.host, "x"), APIEndpoint(url=scripted.url), auth_config=AuthConfig())
    with pytest.raises(E.DigestMismatchError) as info:
        repo.get_manifest("latest")
    assert info.value.expected == lie and info.value.actual == str(dd.digest_bytes(body))
    with pytest.raises(E.DigestMismatchError):
        repo.get_manifest(lie)  # by digest: always verified


def test_referrers_api_pages_are_merged(scripted: ScriptedServer) -> None:
    subject = dd.digest_bytes(b"subject")
    one = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": str(dd.digest_bytes(b"1")), "size": 1,
           "artifactType": "application/vnd.example.sbom"}
    two = {**one, "digest": str(dd.digest_bytes(b"2"))}

    def referrers(req: Request) -> Reply:
        assert req.query.get("artifactType") == ["application/vnd.example.sbom"]
        if "page" in req.query:
            return Reply(200, {"schemaVersion": 2, "manifests": [two]})
        return Reply(200, {"schemaVersion": 2, "manifests": [one]},
                     {"Link": f'<{req.path}?artifactType=application/vnd.example.sbom&page=2>; rel="next"'})

    scripted.route(f"/v2/x/referrers/{subject}", referrers)
    scripted.route("/v2/", lambda r: Reply(200, {}))
    repo = connect(_ref(scripted.host, "x"), APIEndpoint(url=scripted.url), auth_config=AuthConfig())
    index = repo.referrers(subject, artifact_type="application/vnd.example.sbom")
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert [m["digest"] for m in index["manifests"]] == [one["digest"], two["digest"]]


def test_tags_cli(registry: Registry, repo_name: str, tmp_path: Path) -> None:
    repo = connect(_ref(registry.host, repo_name), _plain(registry), auth_config=AuthConfig(), actions=("push", "pull"))
    push_empty_image(repo, "1.0", "latest")
    exe = str(Path(sys.executable).parent / "docker-distribution")
    out = subprocess.run([exe, "tags", f"{registry.host}/{repo_name}"], capture_output=True, text=True,
                         env={**os.environ, "DOCKER_CONFIG": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert sorted(out.stdout.split()) == ["1.0", "latest"]
    missing = subprocess.run([exe, "tags", f"{registry.host}/no/such"], capture_output=True, text=True,
                             env={**os.environ, "DOCKER_CONFIG": str(tmp_path)})
    assert missing.returncode == 1 and missing.stderr.startswith(f"Error: repository {registry.host}/no/such not found")
