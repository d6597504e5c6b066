"""Registry configuration and classification: moby's unit tables (moby registry/*_test.go and distribution/errors_test.go)."""

from __future__ import annotations

import errno

import pytest
from docker_distribution import errors as E
from docker_distribution.reference import parse_normalized_named
from docker_distribution.registry.auth import AuthConfig, parse_challenges, ping_key
from docker_distribution.registry.service import (
    INDEX_NAME,
    INDEX_SERVER,
    IndexInfo,
    RegistryService,
    ServiceOptions,
    resolve_auth_config,
    validate_index_name,
    validate_mirror,
)
from docker_distribution.registry.transport import redact_url
from hypothesis import given
from hypothesis import strategies as st

# --- TestContinueOnError_* ------------------------------------------------------------------

_UNEXPECTED = E.UnknownError("unexpected", detail="x")


def _continue_cases() -> list[tuple[BaseException, bool]]:
    return [
        (E.UnexpectedHTTPResponseError(400, "x", b""), True),
        (E.UnknownError(), True),  # an empty errcode.Errors{} and a bare code behave as "other errors"
        (Exception("some totally unexpected error"), True),
        (E.ImageConfigPullError(Exception("x")), False),
        (_UNEXPECTED, False),
    ]


@pytest.mark.parametrize("err, expected", _continue_cases())
def test_continue_on_error_non_mirror_endpoint(err: BaseException, expected: bool) -> None:
    assert E.continue_on_error(err, False) is expected


@pytest.mark.parametrize("err, _", _continue_cases())
def test_continue_on_error_mirror_endpoint(err: BaseException, _: bool) -> None:
    assert E.continue_on_error(err, True) is True


@pytest.mark.parametrize("err", [ProcessLookupError(errno.ESRCH, "No such process"),
                                 ProcessLookupError(errno.ESRCH, "Aucun processus de ce type"),  # any locale
                                 E.OperationCancelledError(),
                                 E.OperationCancelledError("context deadline exceeded")])
@pytest.mark.parametrize("mirror", [True, False])
def test_continue_on_error_never_continue(err: BaseException, mirror: bool) -> None:
    assert E.continue_on_error(err, mirror) is False


def test_unsupported_media_type_never_falls_back() -> None:
    assert E.continue_on_error(E.UnsupportedMediaTypeError("x"), True) is False


def test_retry_on_error_classification() -> None:
    for err in (E.UnauthorizedError(detail=1), E.DeniedError(detail=1), E.TooManyRequestsError(detail=1),
                E.UnsupportedError(detail=1), E.NameUnknownError(detail=1), E.NoBasicAuthCredentialsError(),
                E.NoTokenError(), E.UnsupportedMediaTypeError("x"), E.BlobUnknownError(detail=1),
                OSError(errno.ENOSPC, "No space left on device"),
                OSError(errno.ENOSPC, "Aucun espace disponible sur le périphérique"),  # by errno, in any locale
                OSError(errno.EDQUOT, "Disk quota exceeded")):
        assert isinstance(E.retry_on_error(err), E.DoNotRetry), err
    for err in (E.UnexpectedHTTPStatusError(500), EOFError("EOF"), E.TransportError("GET", "u", "reset"),
                E.TransportError("GET", "u", "no space left on device"),  # a message is no errno
                E.ManifestUnknownError()):  # the bare code is retried (moby quirk)
        assert E.retry_on_error(err) is err


def test_translate_pull_error_uses_mobys_messages() -> None:
    ref = parse_normalized_named("busybox:nope")
    denied = E.translate_pull_error(E.DeniedError(detail="x"), ref)
    assert str(denied) == ("pull access denied for busybox, repository does not exist or may require "
                           "'docker login': denied: requested access to the resource is denied")
    missing = E.translate_pull_error(E.ManifestUnknownError("manifest unknown", detail="x"), ref)
    assert str(missing) == "manifest for busybox:nope not found: manifest unknown: manifest unknown"
    name = E.translate_pull_error(E.NameUnknownError("x", detail="d"), ref)
    assert str(name) == "repository busybox not found: name unknown: x"
    bare = E.ManifestUnknownError()
    assert E.translate_pull_error(bare, ref) is bare
    assert isinstance(E.translate_pull_error(E.DoNotRetry(E.DeniedError(detail=1)), ref), E.NotFoundError)


# --- TestValidateMirror ---------------------------------------------------------------------

VALID_MIRRORS = {
    "http://mirror-1.example.com": "http://mirror-1.example.com/",
    "http://mirror-1.example.com/": "http://mirror-1.example.com/",
    "https://mirror-1.example.com": "https://mirror-1.example.com/",
    "https://mirror-1.example.com/": "https://mirror-1.example.com/",
    "http://localhost": "http://localhost/",
    "https://localhost": "https://localhost/",
    "http://localhost:5000": "http://localhost:5000/",
    "https://localhost:5000": "https://localhost:5000/",
    "http://127.0.0.1": "http://127.0.0.1/",
    "https://127.0.0.1": "https://127.0.0.1/",
    "http://127.0.0.1:5000": "http://127.0.0.1:5000/",
    "https://127.0.0.1:5000": "https://127.0.0.1:5000/",
    "http://mirror-1.example.com/v1/": "http://mirror-1.example.com/v1/",
    "https://mirror-1.example.com/v1/": "https://mirror-1.example.com/v1/",
}
INVALID_MIRRORS = {
    "!invalid!://%as%": 'invalid mirror: "!invalid!://%as%" is not a valid URI: parse "!invalid!://%as%": first path segment in URL cannot contain colon',
    "mirror-1.example.com": "invalid mirror: no scheme specified for \"mirror-1.example.com\": must use either 'https://' or 'http://'",
    "mirror-1.example.com:5000": "invalid mirror: no scheme specified for \"mirror-1.example.com:5000\": must use either 'https://' or 'http://'",
    "ftp://mirror-1.example.com": "invalid mirror: unsupported scheme \"ftp\" in \"ftp://mirror-1.example.com\": must use either 'https://' or 'http://'",
    "http://mirror-1.example.com/?q=foo": 'invalid mirror: query or fragment at end of the URI "http://mirror-1.example.com/?q=foo"',
    "http://mirror-1.example.com/v1/?q=foo": 'invalid mirror: query or fragment at end of the URI "http://mirror-1.example.com/v1/?q=foo"',
    "http://mirror-1.example.com/v1/?q=foo#frag": 'invalid mirror: query or fragment at end of the URI "http://mirror-1.example.com/v1/?q=foo#frag"',
    "http://mirror-1.example.com?q=foo": 'invalid mirror: query or fragment at end of the URI "http://mirror-1.example.com?q=foo"',
    "https://mirror-1.example.com#frag": 'invalid mirror: query or fragment at end of the URI "https://mirror-1.example.com#frag"',
    "https://mirror-1.example.com/#frag": 'invalid mirror: query or fragment at end of the URI "https://mirror-1.example.com/#frag"',
    "http://foo:bar@mirror-1.example.com/": 'invalid mirror: username/password not allowed in URI "http://foo:xxxxx@mirror-1.example.com/"',
    "https://mirror-1.example.com/v1/#frag": 'invalid mirror: query or fragment at end of the URI "https://mirror-1.example.com/v1/#frag"',
    "https://mirror-1.example.com?q": 'invalid mirror: query or fragment at end of the URI "https://mirror-1.example.com?q"',
}


@pytest.mark.parametrize("given, expected", sorted(VALID_MIRRORS.items()))
def test_validate_mirror_valid(given: str, expected: str) -> None:
    assert validate_mirror(given) == expected


@pytest.mark.parametrize("given, message", sorted(INVALID_MIRRORS.items()))
def test_validate_mirror_invalid(given: str, message: str) -> None:
    with pytest.raises(E.InvalidRegistryConfigError) as info:
        validate_mirror(given)
    assert str(info.value) == message
    assert "bar@" not in str(info.value)  # the password is masked


# --- TestLoadInsecureRegistries -------------------------------------------------------------


@pytest.mark.parametrize("entry, index", [
    ("127.0.0.1", "127.0.0.1"), ("127.0.0.1:8080", "127.0.0.1:8080"), ("2001:db8::1", "2001:db8::1"),
    ("[2001:db8::1]:80", "[2001:db8::1]:80"), ("http://myregistry.example.com", "myregistry.example.com"),
    ("https://myregistry.example.com", "myregistry.example.com"), ("HTTP://myregistry.example.com", "myregistry.example.com"),
])
def test_load_insecure_registries(entry: str, index: str) -> None:
    svc = RegistryService(ServiceOptions(insecure_registries=[entry]))
    assert index in svc.index_configs
    assert svc.index_configs[index].secure is False


@pytest.mark.parametrize("entry, message", [
    ("svn://myregistry.example.com", "insecure registry svn://myregistry.example.com should not contain '://'"),
    ("-invalid-registry", "Cannot begin or end with a hyphen"),
    ("mytest-.com", 'insecure registry mytest-.com is not valid: invalid host "mytest-.com"'),
    ("1200:0000:AB00:1234:0000:2552:7777:1313:8080",
     'insecure registry 1200:0000:AB00:1234:0000:2552:7777:1313:8080 is not valid: invalid host "1200:0000:AB00:1234:0000:2552:7777:1313:8080"'),
    ("myregistry.example.com:500000", 'insecure registry myregistry.example.com:500000 is not valid: invalid port "500000"'),
    ('"myregistry.example.com"', 'insecure registry "myregistry.example.com" is not valid: invalid host "\\"myregistry.example.com\\""'),
    ('"myregistry.example.com:5000"', 'insecure registry "myregistry.example.com:5000" is not valid: invalid host "\\"myregistry.example.com"'),
])
def test_load_insecure_registries_errors(entry: str, message: str) -> None:
    with pytest.raises(E.InvalidRegistryConfigError) as info:
        RegistryService(ServiceOptions(insecure_registries=[entry]))
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


# --- TestIsSecureIndex (moby v28.3's 24 cases, with its fake resolver) ----------------------

_HOSTS = {"": ["0.0.0.0"], "localhost": ["127.0.0.1", "::1"], "example.com": ["42.42.42.42"]}


def _lookup(host: str) -> list[str]:
    if host in _HOSTS:
        return _HOSTS[host]
    raise OSError("lookup: no such host")


@pytest.mark.parametrize("addr, insecure, expected", [
    (INDEX_NAME, [], True), ("example.com", [], True), ("example.com", ["example.com"], False),
    ("localhost", ["localhost:5000"], False), ("localhost:5000", ["localhost:5000"], False),
    ("localhost", ["example.com"], False), ("127.0.0.1:5000", ["127.0.0.1:5000"], False),
    ("localhost", [], False), ("localhost:5000", [], False), ("127.0.0.1", [], False),
    ("localhost", ["example.com"], False), ("127.0.0.1", ["example.com"], False), ("example.com", [], True),
    ("example.com", ["example.com"], False), ("127.0.0.1", ["example.com"], False),
    ("127.0.0.1:5000", ["example.com"], False), ("example.com:5000", ["42.42.0.0/16"], False),
    ("example.com", ["42.42.0.0/16"], False), ("example.com:5000", ["42.42.42.42/8"], False),
    ("127.0.0.1:5000", ["127.0.0.0/8"], False), ("42.42.42.42:5000", ["42.1.1.1/8"], False),
    ("invalid.example.com", ["42.42.0.0/16"], True), ("invalid.example.com", ["invalid.example.com"], False),
    ("invalid.example.com:5000", ["invalid.example.com"], True),
    ("invalid.example.com:5000", ["invalid.example.com:5000"], False),
])
def test_is_secure_index(addr: str, insecure: list[str], expected: bool) -> None:
    svc = RegistryService(ServiceOptions(insecure_registries=insecure), lookup_ip=_lookup)
    assert svc.is_secure_index(addr) is expected


# --- TestValidateIndexName / WithError ------------------------------------------------------


@pytest.mark.parametrize("name, expected", [
    ("index.docker.io", "docker.io"), ("example.com", "example.com"), ("127.0.0.1:8080", "127.0.0.1:8080"),
    ("mytest-1.com", "mytest-1.com"), ("mirror-1.example.com/v1/?q=foo", "mirror-1.example.com/v1/?q=foo"),
])
def test_validate_index_name(name: str, expected: str) -> None:
    assert validate_index_name(name) == expected


@pytest.mark.parametrize("name", ["docker.io-", "-example.com", "mirror-1.example.com/v1/?q=foo-"])
def test_validate_index_name_with_error(name: str) -> None:
    with pytest.raises(E.InvalidRegistryConfigError) as info:
        validate_index_name(name)
    assert str(info.value) == f"invalid index name ({name}). Cannot begin or end with a hyphen"


# --- TestResolveAuthConfig* -----------------------------------------------------------------


def test_resolve_auth_config_index_server() -> None:
    official = AuthConfig(username="hub", password="p")
    private = AuthConfig(username="priv", password="q")
    configs = {INDEX_SERVER: official, "https://private.example.com/v1/": private}
    assert resolve_auth_config(configs, IndexInfo(INDEX_NAME, official=True)) == official
    assert resolve_auth_config(configs, IndexInfo("other.example.com")) == AuthConfig()
    svc = RegistryService()
    assert svc.resolve_auth_config(configs, parse_normalized_named("busybox")) == official
    assert svc.resolve_auth_config(configs, parse_normalized_named("private.example.com/x")) == private


@pytest.mark.parametrize("registry", ["registry.example.com", "localhost:8000", "example.com"])
def test_resolve_auth_config_full_url(registry: str) -> None:
    for key in (f"https://{registry}/v1/", f"http://{registry}/v1/", registry, f"{registry}/v1/"):
        auth = AuthConfig(username=key, password="pw")
        configs = {key: auth, "https://other.example.org/v1/": AuthConfig(username="other", password="o")}
        assert resolve_auth_config(configs, IndexInfo(registry)) == auth
        del configs[key]
        assert resolve_auth_config(configs, IndexInfo(registry)) == AuthConfig()


# --- endpoint lookup ------------------------------------------------------------------------


def test_mirror_endpoint_lookup() -> None:
    svc = RegistryService(ServiceOptions(mirrors=["https://my.mirror"]))
    assert not any(e.host == "my.mirror" for e in svc.lookup_push_endpoints(INDEX_NAME))
    pull = svc.lookup_pull_endpoints(INDEX_NAME)
    assert pull[0].host == "my.mirror" and pull[0].mirror
    assert pull[-1].url == "https://registry-1.docker.io" and pull[-1].official


def test_any_registry_can_have_mirrors_beyond_moby() -> None:
    svc = RegistryService(ServiceOptions(registry_mirrors={"registry.example.com": ["https://m1.example.com/prefix"]}))
    pull = svc.lookup_pull_endpoints("registry.example.com")
    assert [(e.url, e.mirror) for e in pull] == [("https://m1.example.com/prefix", True),
                                                 ("https://registry.example.com", False)]
    assert [e.url for e in svc.lookup_push_endpoints("registry.example.com")] == ["https://registry.example.com"]


def test_insecure_hosts_try_https_unverified_then_http() -> None:
    svc = RegistryService()
    eps = svc.lookup_pull_endpoints("127.0.0.1:5000")
    assert [e.url for e in eps] == ["https://127.0.0.1:5000", "http://127.0.0.1:5000"]
    assert all(e.tls.verify is False for e in eps)
    secure = RegistryService(lookup_ip=_lookup).lookup_pull_endpoints("example.com")
    assert [e.url for e in secure] == ["https://example.com"] and secure[0].tls.verify


def test_certs_d_gives_ca_bundle_and_client_pair(tmp_path: object) -> None:
    from pathlib import Path

    root = Path(str(tmp_path))
    d = root / "registry.example.com:5000"
    d.mkdir()
    (d / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    (d / "client.cert").write_text("cert")
    (d / "client.key").write_text("key")
    svc = RegistryService(ServiceOptions(certs_dir=root), lookup_ip=_lookup)
    tls = svc.tls_config("registry.example.com:5000")
    assert tls.verify and tls.ca_bundle and tls.client_cert == (str(d / "client.cert"), str(d / "client.key"))
    assert "MIIB" in Path(tls.ca_bundle).read_text()
    (d / "client.key").unlink()
    with pytest.raises(E.InvalidRegistryConfigError, match="missing key client.key for client certificate client.cert"):
        RegistryService(ServiceOptions(certs_dir=root), lookup_ip=_lookup).tls_config("registry.example.com:5000")


# --- challenges, secrets --------------------------------------------------------------------


def test_parse_challenges() -> None:
    [c] = parse_challenges(['Bearer realm="https://auth.example.com/token",service="registry.example.com",'
                            'scope="repository:samalba/my-app:pull,push"'])
    assert c.scheme == "bearer"
    assert dict(c.params) == {"realm": "https://auth.example.com/token", "service": "registry.example.com",
                              "scope": "repository:samalba/my-app:pull,push"}
    [b] = parse_challenges(['Basic realm="x \\"quoted\\""'])
    assert b.scheme == "basic" and b.params["realm"] == 'x "quoted"'
    [partial] = parse_challenges(['Bearer realm="r", bad param, service="s"'])
    assert dict(partial.params) == {"realm": "r"}  # parsing stops at the malformed parameter


@given(st.text(max_size=200))
def test_challenge_parser_never_fails(value: str) -> None:
    for c in parse_challenges([value]):
        assert c.scheme == c.scheme.lower()


def test_ping_key_cuts_after_v2() -> None:
    assert ping_key("https://Reg.Example.com/v2/foo/manifests/x") == "https://reg.example.com:443/v2/"
    assert ping_key("http://h:5000/prefix/v2/x") == "http://h:5000/prefix/v2/"
    assert ping_key("http://[::1]/v2/") == "http://[::1]:80/v2/"


def test_secrets_stay_out_of_reprs_and_urls() -> None:
    auth = AuthConfig(username="u", password="hunter2", identity_token="idtok", registry_token="regtok", auth="YXV0aA==")
    text = repr(auth) + str(auth)
    for secret in ("hunter2", "idtok", "regtok", "YXV0aA=="):
        assert secret not in text
    assert redact_url("https://user:pw@h/v2/x/blobs/uploads/u?_state=SECRET&digest=sha256:ab") == \
        "https://h/v2/x/blobs/uploads/u?_state=REDACTED&digest=sha256:ab"


@pytest.mark.parametrize("transport_ok, tried", [(True, ["https"]), (False, ["https", "http"])])
def test_pull_endpoints_skip_http_on_a_host_whose_tls_answered(transport_ok: bool, tried: list[str]) -> None:
    """moby's pullEndpoints (distribution/pull.go): an insecure registry is tried over https, then http; after
    a fallback from an https endpoint whose TLS worked (``transport_ok``), that host's http endpoint
    is skipped and the https endpoint's error is the one reported."""
    from docker_distribution.config import Config
    from docker_distribution.fallback import try_endpoints
    from docker_distribution.registry.service import APIEndpoint

    svc = RegistryService(ServiceOptions(insecure_registries=["127.0.0.1:5000"]))
    seen: list[str] = []

    def attempt(endpoint: APIEndpoint, _: object) -> None:
        seen.append(endpoint.scheme)
        raise E.FallbackError(E.DistributionError(f"{endpoint.scheme} failed"), transport_ok=transport_ok)

    with pytest.raises(E.DistributionError) as info:
        try_endpoints(parse_normalized_named("127.0.0.1:5000/app:v1"), Config(registry_service=svc), "pull", attempt)
    assert seen == tried
    assert str(info.value) == f"{tried[-1]} failed"


def test_an_error_that_only_says_no_such_process_still_falls_back() -> None:
    # moby matches the text; the errno is what means a process went away
    assert E.continue_on_error(E.UnexpectedHTTPStatusError(502, "no such process"), False) is True


@pytest.mark.parametrize("verb", ["pull", "push"])
def test_the_endpoint_loop_falls_back_alike_for_pull_and_push(verb: str) -> None:
    """push runs the same loop as pull: an insecure registry's https endpoint, then its http one,
    after a TLS failure."""
    from docker_distribution.config import Config
    from docker_distribution.fallback import try_endpoints
    from docker_distribution.registry.service import APIEndpoint

    svc = RegistryService(ServiceOptions(insecure_registries=["127.0.0.1:5000"]))
    seen: list[str] = []

    def attempt(endpoint: APIEndpoint, _: object) -> str:
        seen.append(endpoint.scheme)
        if endpoint.scheme == "https":
            # what the ping gives when TLS fails: the plain-HTTP twin is tried next
            raise E.FallbackError(E.TransportError("GET", endpoint.url, "tls: handshake failure"), transport_ok=False)
        return "done"

    assert try_endpoints(parse_normalized_named("127.0.0.1:5000/app:v1"), Config(registry_service=svc),
                         verb, attempt) == "done"  # type: ignore[arg-type]
    assert seen == ["https", "http"]
