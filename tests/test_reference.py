"""References: the upstream distribution/reference tables, and a round-trip property."""

from __future__ import annotations

import docker_distribution as dd
import pytest
from docker_distribution import reference as R
from docker_distribution.errors import InvalidReferenceError
from hypothesis import given
from hypothesis import strategies as st

F64 = "f" * 64
F128 = "f" * 128

# TestReferenceParse: (input, error, repository, domain, tag, digest)
PARSE_TABLE = [
    ("test_com", None, "test_com", "", None, None),
    ("test.com:tag", None, "test.com", "", "tag", None),
    ("test.com:5000", None, "test.com", "", "5000", None),
    ("test.com/repo:tag", None, "test.com/repo", "test.com", "tag", None),
    ("test:5000/repo", None, "test:5000/repo", "test:5000", None, None),
    ("test:5000/repo:tag", None, "test:5000/repo", "test:5000", "tag", None),
    (f"test:5000/repo@sha256:{F64}", None, "test:5000/repo", "test:5000", None, f"sha256:{F64}"),
    (f"test:5000/repo:tag@sha256:{F64}", None, "test:5000/repo", "test:5000", "tag", f"sha256:{F64}"),
    ("", R.ERR_NAME_EMPTY, None, None, None, None),
    (":justtag", R.ERR_REFERENCE_INVALID_FORMAT, None, None, None, None),
    (f"@sha256:{F64}", R.ERR_REFERENCE_INVALID_FORMAT, None, None, None, None),
    ("repo@sha256:" + "f" * 34, "invalid checksum digest length", None, None, None, None),
    (f"validname@invaliddigest:{F64}", "unsupported digest algorithm", None, None, None, None),
    ("Uppercase:tag", R.ERR_NAME_CONTAINS_UPPERCASE, None, None, None, None),
    ("test:5000/Uppercase/lowercase:tag", R.ERR_NAME_CONTAINS_UPPERCASE, None, None, None, None),
    ("lowercase:Uppercase", None, "lowercase", "", "Uppercase", None),
    ("a/" * 128 + "a:tag", R.ERR_NAME_TOO_LONG, None, None, None, None),
    ("a/" * 127 + "a:tag-puts-this-over-max", None, "a/" * 127 + "a", "a", "tag-puts-this-over-max", None),
    ("aa/asdf$$^/aa", R.ERR_REFERENCE_INVALID_FORMAT, None, None, None, None),
    ("sub-dom1.foo.com/bar/baz/quux", None, "sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com", None, None),
    ("sub-dom1.foo.com/bar/baz/quux:some-long-tag", None, "sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com", "some-long-tag", None),
    ("b.gcr.io/test.example.com/my-app:test.example.com", None, "b.gcr.io/test.example.com/my-app", "b.gcr.io", "test.example.com", None),
    ("xn--n3h.com/myimage:xn--n3h.com", None, "xn--n3h.com/myimage", "xn--n3h.com", "xn--n3h.com", None),
    (f"xn--7o8h.com/myimage:xn--7o8h.com@sha512:{F128}", None, "xn--7o8h.com/myimage", "xn--7o8h.com", "xn--7o8h.com", f"sha512:{F128}"),
    ("foo_bar.com:8080", None, "foo_bar.com", "", "8080", None),
    ("foo/foo_bar.com:8080", None, "foo/foo_bar.com", "foo", "8080", None),
    ("192.168.1.1", None, "192.168.1.1", "", None, None),
    ("192.168.1.1:tag", None, "192.168.1.1", "", "tag", None),
    ("192.168.1.1:5000", None, "192.168.1.1", "", "5000", None),
    ("192.168.1.1/repo", None, "192.168.1.1/repo", "192.168.1.1", None, None),
    ("192.168.1.1:5000/repo", None, "192.168.1.1:5000/repo", "192.168.1.1:5000", None, None),
    ("192.168.1.1:5000/repo:5050", None, "192.168.1.1:5000/repo", "192.168.1.1:5000", "5050", None),
    ("[2001:db8::1]", R.ERR_REFERENCE_INVALID_FORMAT, None, None, None, None),
    ("[2001:db8::1]:5000", R.ERR_REFERENCE_INVALID_FORMAT, None, None, None, None),
    ("[2001:db8::1]:tag", R.ERR_REFERENCE_INVALID_FORMAT, None, None, None, None),
    ("[2001:db8::1]/repo", None, "[2001:db8::1]/repo", "[2001:db8::1]", None, None),
    ("[2001:db8:1:2:3:4:5:6]/repo:tag", None, "[2001:db8:1:2:3:4:5:6]/repo", "[2001:db8:1:2:3:4:5:6]", "tag", None),
    ("[2001:db8::1]:5000/repo", None, "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", None, None),
    ("[2001:db8::1]:5000/repo:tag", None, "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", "tag", None),
    (f"[2001:db8::1]:5000/repo@sha256:{F64}", None, "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", None, f"sha256:{F64}"),
    (f"[2001:db8::1]:5000/repo:tag@sha256:{F64}", None, "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", "tag", f"sha256:{F64}"),
    ("[2001:db8::]:5000/repo", None, "[2001:db8::]:5000/repo", "[2001:db8::]:5000", None, None),
    ("[::1]:5000/repo", None, "[::1]:5000/repo", "[::1]:5000", None, None),
    ("[fe80::1%eth0]:5000/repo", R.ERR_REFERENCE_INVALID_FORMAT, None, None, None, None),
    ("[fe80::1%@invalidzone]:5000/repo", R.ERR_REFERENCE_INVALID_FORMAT, None, None, None, None),
]


@pytest.mark.parametrize("text, error, repository, domain, tag, digest", PARSE_TABLE, ids=[t[0][:60] or "empty" for t in PARSE_TABLE])
def test_reference_parse_table(text: str, error: str | None, repository: str | None, domain: str | None,
                               tag: str | None, digest: str | None) -> None:
    if error is not None:
        with pytest.raises(InvalidReferenceError) as info:
            R.parse(text)
        assert str(info.value) == error
        assert isinstance(info.value, ValueError)
        return
    ref = R.parse(text)
    assert str(ref) == text
    assert ref.name == repository
    assert ref.domain == domain
    assert ref.tag == tag
    assert ref.digest == (dd.Digest.parse(digest) if digest is not None else None)  # a Digest value


VALID_NORMALIZED = [
    "docker/docker", "library/debian", "debian", "docker.io/docker/docker", "docker.io/library/debian",
    "docker.io/debian", "index.docker.io/docker/docker", "index.docker.io/library/debian", "index.docker.io/debian",
    "127.0.0.1:5000/docker/docker", "127.0.0.1:5000/library/debian", "127.0.0.1:5000/debian", "192.168.0.1",
    "192.168.0.1:80", "192.168.0.1:8/debian", "192.168.0.2:25000/debian",
    "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", "[fc00::1]:5000/docker",
    "[fc00::1]:5000/docker/docker", "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
    "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a", "Docker/docker", "DOCKER/docker",
    # TestValidateRemoteName
    "docker-rules/docker", "docker---rules/docker", "doc/docker", "d/docker", "jess/t", "dock__er/docker",
]
INVALID_NORMALIZED = [
    "https://github.com/docker/docker", "docker/Docker", "-docker", "-docker/docker", "-docker.io/docker/docker",
    "docker///docker", "docker.io/docker/Docker", "docker.io/docker///docker", "[fc00::1]", "[fc00::1]:5000",
    "fc00::1:5000/debian", "[fe80::1%eth0]:5000/debian", "[2001:db8:3:4::192.0.2.33]:5000/debian",
    "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
    "docker-/docker", "-docker-/docker", "____/____", "_docker/_docker", "dock..er/docker", "dock_.er/docker",
    "dock-.er/docker", "docker/",
    "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_" * 4 + "/docker",
]


@pytest.mark.parametrize("name", VALID_NORMALIZED)
def test_valid_normalized_names(name: str) -> None:
    R.parse_normalized_named(name)


@pytest.mark.parametrize("name", INVALID_NORMALIZED)
def test_invalid_normalized_names(name: str) -> None:
    with pytest.raises(InvalidReferenceError):
        R.parse_normalized_named(name)


def test_hex_identifier_message() -> None:
    with pytest.raises(InvalidReferenceError, match=r"cannot specify 64-byte hexadecimal strings"):
        R.parse_normalized_named("1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a")


# TestParseRepositoryInfo: (remote name, familiar, full, ambiguous, domain)
REPO_INFO = [
    ("fooo/bar", "fooo/bar", "docker.io/fooo/bar", "index.docker.io/fooo/bar", "docker.io"),
    ("library/ubuntu", "ubuntu", "docker.io/library/ubuntu", "library/ubuntu", "docker.io"),
    ("nonlibrary/ubuntu", "nonlibrary/ubuntu", "docker.io/nonlibrary/ubuntu", "", "docker.io"),
    ("other/library", "other/library", "docker.io/other/library", "", "docker.io"),
    ("private/moonbase", "127.0.0.1:8000/private/moonbase", "127.0.0.1:8000/private/moonbase", "", "127.0.0.1:8000"),
    ("privatebase", "127.0.0.1:8000/privatebase", "127.0.0.1:8000/privatebase", "", "127.0.0.1:8000"),
    ("private/moonbase", "example.com/private/moonbase", "example.com/private/moonbase", "", "example.com"),
    ("privatebase", "example.com/privatebase", "example.com/privatebase", "", "example.com"),
    ("private/moonbase", "example.com:8000/private/moonbase", "example.com:8000/private/moonbase", "", "example.com:8000"),
    ("privatebasee", "example.com:8000/privatebasee", "example.com:8000/privatebasee", "", "example.com:8000"),
    ("library/ubuntu-12.04-base", "ubuntu-12.04-base", "docker.io/library/ubuntu-12.04-base", "index.docker.io/library/ubuntu-12.04-base", "docker.io"),
    ("library/foo", "foo", "docker.io/library/foo", "docker.io/foo", "docker.io"),
    ("library/foo/bar", "library/foo/bar", "docker.io/library/foo/bar", "", "docker.io"),
    ("store/foo/bar", "store/foo/bar", "docker.io/store/foo/bar", "", "docker.io"),
    ("bar", "Foo/bar", "Foo/bar", "", "Foo"),
    ("bar", "FOO/bar", "FOO/bar", "", "FOO"),
]


@pytest.mark.parametrize("remote, familiar, full, ambiguous, domain", REPO_INFO)
def test_parse_repository_info(remote: str, familiar: str, full: str, ambiguous: str, domain: str) -> None:
    for text in filter(None, (familiar, full, ambiguous)):
        ref = R.parse_normalized_named(text)
        assert ref.familiar_name == familiar
        assert str(ref) == full
        assert ref.domain == domain
        assert ref.path == remote


@pytest.mark.parametrize("text, domain, path", [
    ("test.com/foo", "test.com", "foo"), ("test_com/foo", "docker.io", "test_com/foo"),
    ("docker/migrator", "docker.io", "docker/migrator"), ("test.com:8080/foo", "test.com:8080", "foo"),
    ("test-com:8080/foo", "test-com:8080", "foo"), ("foo", "docker.io", "library/foo"),
    ("xn--n3h.com/foo", "xn--n3h.com", "foo"), ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
    ("docker.io/foo", "docker.io", "library/foo"), ("docker.io/library/foo", "docker.io", "library/foo"),
    ("docker.io/library/foo/bar", "docker.io", "library/foo/bar"),
    ("localhost/foo", "localhost", "foo"), ("localhost:5000/foo/bar", "localhost:5000", "foo/bar"),
])
def test_normalized_split_hostname(text: str, domain: str, path: str) -> None:
    ref = R.parse_normalized_named(text)
    assert (ref.domain, ref.path) == (domain, path)


def test_tag_and_digest_together() -> None:
    short = "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"
    ref = R.parse_normalized_named(short)
    assert str(ref) == "docker.io/library/" + short
    assert ref.tag == "latest" and ref.digest is not None
    assert ref.familiar == short
    assert R.parse_docker_ref(short).tag is None  # the digest wins


def test_familiar_and_normalized_forms_are_equivalent() -> None:
    assert str(R.parse_docker_ref("busybox")) == "docker.io/library/busybox:latest"
    assert R.parse_docker_ref("docker.io/library/busybox:latest").familiar == "busybox:latest"
    assert R.parse_normalized_named("busybox") == R.parse_normalized_named("index.docker.io/library/busybox")


def test_modifiers_return_validated_copies() -> None:
    ref = R.parse_normalized_named("busybox")
    assert str(ref.with_tag("1.36")) == "docker.io/library/busybox:1.36"
    assert ref.tag is None  # unchanged
    with pytest.raises(InvalidReferenceError, match="invalid tag format"):
        ref.with_tag("-foo")
    with pytest.raises(InvalidReferenceError, match="invalid digest format"):
        ref.with_digest("foo")
    canonical = ref.with_digest("sha256:" + F64).with_tag("TAG5")
    assert str(canonical) == f"docker.io/library/busybox:TAG5@sha256:{F64}"
    assert canonical.trim() == ref


@pytest.mark.parametrize("text, equivalent", [
    ("redis", "docker.io/library/redis"), ("redis:latest", "docker.io/library/redis:latest"),
    ("dmcgowan/myapp", "docker.io/dmcgowan/myapp"),
    ("dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c", "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"),
    ("sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c", "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"),
    ("dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9", "docker.io/library/dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9"),
    ("dbcc1", "docker.io/library/dbcc1"),
])
def test_parse_any_reference(text: str, equivalent: str) -> None:
    assert str(R.parse_any_reference(text)) == equivalent


_component = st.from_regex(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*", fullmatch=True).filter(lambda s: len(s) < 30)
_domain = st.one_of(
    st.just(""), st.just("localhost:5000"), st.from_regex(r"[a-z0-9]{1,8}\.[a-z]{2,5}(?::[0-9]{1,5})?", fullmatch=True),
    st.just("[::1]:5000"), st.just("127.0.0.1:5000"),
)
_tag = st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True))
_digest = st.one_of(st.none(), st.binary(min_size=1, max_size=8).map(lambda b: "sha256:" + __import__("hashlib").sha256(b).hexdigest()))


@given(_domain, st.lists(_component, min_size=1, max_size=4), _tag, _digest)
def test_parse_round_trips(domain: str, components: list[str], tag: str | None, digest: str | None) -> None:
    path = "/".join(components)
    text = (f"{domain}/{path}" if domain else path) + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    if len(text.split("@")[0].rsplit(":", 1)[0]) > R.NAME_TOTAL_LENGTH_MAX:
        return
    ref = R.parse(text)
    assert R.parse(str(ref)) == ref
    assert str(ref) == text
    try:
        normalized = R.parse_normalized_named(text)
    except InvalidReferenceError:
        return  # e.g. "0_0.0/x": a first component with a dot is a domain, and this one is not valid
    assert R.parse_normalized_named(str(normalized)) == normalized
    assert R.parse_normalized_named(normalized.familiar) == normalized
