"""moby's pull unit tests (moby distribution/manifest_test.go, pull_v2_test.go) and platform selection."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any
from pathlib import Path

import docker_distribution as dd
import pytest
from bed.scripted import Reply, Request, ScriptedServer
from docker_distribution import errors as E
from docker_distribution.descriptor import Descriptor
from docker_distribution.manifest import (
    ImageIndex,
    InvalidManifestError,
    detect_manifest_blob_media_type,
    parse_manifest,
)
from docker_distribution.platform import Platform, default_platform, filter_manifests, format_all, only, parse_platform
from docker_distribution.pull import NoMatchesError, _config_rootfs, _Puller, _retry
from docker_distribution.mediatype import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST
from docker_distribution.reference import parse_normalized_named
from docker_distribution.registry import RetryPolicy, connect
from docker_distribution.registry.auth import AuthConfig
from docker_distribution.registry.service import APIEndpoint
from hypothesis import given, settings
from hypothesis import strategies as st

CONFIG = b'{\n\t"architecture": "amd64",\n\t"os": "linux",\n\t"config": {},\n\t"rootfs": {\n\t\t"type": "layers",\n\t\t"diff_ids": []\n\t}\n}'
CONFIG_DIGEST = "sha256:66ad98165d38f53ee73868f82bd4eed60556ddfee824810a4062c4f777b20a5b"


def test_the_config_fixture_has_mobys_digest() -> None:
    assert str(dd.digest_bytes(CONFIG)) == CONFIG_DIGEST


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    s = ScriptedServer()
    yield s
    s.stop()


@pytest.mark.parametrize("name, first, expect_error, calls", [
    ("200", None, None, 1),
    ("500 then 200", Reply(500, b"boom"), None, 2),
    ("connection dropped then 200", Reply(-1), None, 2),
    ("401 text", Reply(401, b"you need to be authenticated", {"Content-Type": "text/plain"}),
     "unauthorized: you need to be authenticated", 1),
    ("401 json", Reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "you need to be authenticated",
                                          "detail": "more detail"}]}), "unauthorized: you need to be authenticated", 1),
    ("401 json empty", Reply(401, b"", {"Content-Type": "application/json"}), "unauthorized: authentication required", 1),
])
def test_pull_schema2_config(server: ScriptedServer, name: str, first: Reply | None, expect_error: str | None,
                             calls: int) -> None:
    count = {"n": 0}

    def blob(req: Request) -> Reply:
        count["n"] += 1
        if count["n"] == 1 and first is not None:
            return first
        return Reply(200, CONFIG, {"Content-Type": "application/octet-stream"})

    server.route(f"/v2/library/testremotename/blobs/{CONFIG_DIGEST}", blob)
    server.route("/v2", lambda r: Reply(404, b""))  # moby's test server answers the ping with 404: accepted
    repo = connect(parse_normalized_named(f"{server.host}/library/testremotename"), APIEndpoint(url=server.url),
                   auth_config=AuthConfig(registry_token="token"), retry=RetryPolicy(attempts=1))
    puller = _Puller.__new__(_Puller)
    puller.repo = repo
    fetch = lambda: puller._fetch_config(dd.Digest.parse(CONFIG_DIGEST))  # noqa: E731
    if expect_error is None:
        assert _retry(fetch, threading.Event()) == CONFIG
    else:
        with pytest.raises(E.DistributionError) as info:
            _retry(fetch, threading.Event())
        assert expect_error in str(info.value)
    assert count["n"] == calls


def test_no_matches_err() -> None:
    assert "no matching manifest for linux" in str(NoMatchesError(None))
    p = Platform("windows", "arm64", "v8", "10.0.17763")
    assert str(NoMatchesError(p)) == "no matching manifest for windows(10.0.17763)/arm64/v8 in the manifest list entries"
    assert format_all(Platform("linux", "amd64")) == "linux/amd64"


def _entry(arch: str, variant: str = "", os: str = "linux") -> Descriptor:
    plat = {"os": os, "architecture": arch} if arch else {}
    if variant:
        plat["variant"] = variant
    return Descriptor("application/vnd.oci.image.manifest.v1+json", dd.digest_bytes(f"{arch}{variant}{os}".encode()), 1,
                      platform=plat)


def test_amd64_levels_prefer_the_highest_supported() -> None:
    entries = [_entry("386"), _entry("amd64"), _entry("amd64", "v2")]
    ordered = filter_manifests(entries, Platform("linux", "amd64", "v3"))
    assert [(d.platform or {}).get("variant", (d.platform or {}).get("architecture")) for d in ordered] == ["v2", "amd64", "386"]
    assert [p.variant for p in only(Platform("linux", "amd64", "v3"))] == ["v3", "v2", "", ""]


def test_arm64_ladder_and_unknown_entries() -> None:
    vec = only(Platform("linux", "arm64"))
    assert [(p.architecture, p.variant) for p in vec] == [("arm64", ""), ("arm", "v8"), ("arm", "v7"), ("arm", "v6"), ("arm", "v5")]
    assert only(Platform("linux", "arm64", "v10")) == []
    entries = [_entry("unknown", os="unknown"), _entry("arm", "v7"), _entry("", os=""), _entry("arm64")]
    ordered = filter_manifests(entries, Platform("linux", "arm64"))
    assert [(d.platform or {}).get("architecture") for d in ordered] == ["arm64", "arm", None]


@pytest.mark.parametrize("value, expected", [
    ("linux/arm64", ("linux", "arm64", "")),
    ("linux/arm64/v8", ("linux", "arm64", "v8")),
    ("linux/aarch64", ("linux", "arm64", "")),
    ("linux/arm", ("linux", "arm", "")),  # arm/v7, whose variant containerd leaves out
    ("linux/arm/6", ("linux", "arm", "v6")),
    ("Linux/X86_64", ("linux", "amd64", "")),
    ("macos/arm64", ("darwin", "arm64", "")),
    ("windows(10.0.17763)/amd64", ("windows", "amd64", "")),
    ("s390x", (default_platform().os, "s390x", "")),  # a known architecture alone: the host's OS
])
def test_platform_specifiers_parse_as_containerd_does(value: str, expected: tuple[str, str, str]) -> None:
    p = parse_platform(value)
    assert (p.os, p.architecture, p.variant) == expected
    assert parse_platform("windows(10.0.17763)/amd64").os_version == "10.0.17763"
    # a known OS alone takes the host's architecture, without the amd64 level (so linux/amd64 entries come first)
    alone = parse_platform("linux")
    assert (alone.os, alone.architecture) == ("linux", default_platform().architecture) and alone.variant in ("", "v6", "v8")


@pytest.mark.parametrize("value, message", [
    ("bogus", '"bogus": unknown operating system or architecture: invalid argument'),
    ("linux/amd64/v3/x", '"linux/amd64/v3/x": cannot parse platform specifier: invalid argument'),
    ("linux/*", '"linux/*": wildcards not yet supported: invalid argument'),
    ("", '"" is an invalid OS component of ""'),
    ("linux/am d64", '"am d64" is an invalid component of "linux/am d64"'),
    ("linux//", '"" is an invalid component of "linux//"'),
])
def test_bad_platform_specifiers_are_typed_errors(value: str, message: str) -> None:
    with pytest.raises(E.InvalidOptionError) as e:
        parse_platform(value)
    assert str(e.value).startswith(message)


def test_cli_pull_refuses_a_bad_platform_before_any_request(tmp_path: Path) -> None:
    exe = str(Path(sys.executable).parent / "docker-distribution")
    done = subprocess.run([exe, "--root", str(tmp_path), "pull", "--platform", "bogus", "127.0.0.1:9/x:v1"],
                          capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (
        1, 'Error: "bogus": unknown operating system or architecture: invalid argument\n')


def test_a_refused_connection_reads_as_go_s_dial_error(tmp_path: Path) -> None:
    exe = str(Path(sys.executable).parent / "docker-distribution")
    done = subprocess.run([exe, "--root", str(tmp_path), "pull", "127.0.0.1:9/x:v1"], capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (
        1, 'Error: Get "http://127.0.0.1:9/v2/": dial tcp 127.0.0.1:9: connect: connection refused\n')


def test_detect_manifest_blob_media_type() -> None:
    assert detect_manifest_blob_media_type(b'{"mediaType":"bananas"}') == "bananas"
    assert detect_manifest_blob_media_type(b'{"config":{}}') == "application/vnd.oci.image.manifest.v1+json"
    assert detect_manifest_blob_media_type(b"{}") == "application/vnd.oci.image.index.v1+json"
    assert detect_manifest_blob_media_type(b'{"mediaType":"bananas","config":{}}') == "bananas"
    assert detect_manifest_blob_media_type(b'{"mediaType":"bananas","fsLayers":[]}') == "bananas"


@pytest.mark.parametrize("doc, message", [
    ('{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","manifests":[]}',
     'media-type: "application/vnd.docker.distribution.manifest.v2+json" should not have "manifests" or "fsLayers"'),
    ('{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","fsLayers":[]}',
     'media-type: "application/vnd.docker.distribution.manifest.v2+json" should not have "manifests" or "fsLayers"'),
    ('{"mediaType":"application/vnd.oci.image.manifest.v1+json","manifests":[]}',
     'media-type: "application/vnd.oci.image.manifest.v1+json" should not have "manifests" or "fsLayers"'),
    ('{"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","fsLayers":[]}',
     'media-type: "application/vnd.docker.distribution.manifest.list.v2+json" should not have "config", "layers", or "fsLayers"'),
    ('{"mediaType":"application/vnd.oci.image.index.v1+json","layers":[]}',
     'media-type: "application/vnd.oci.image.index.v1+json" should not have "config", "layers", or "fsLayers"'),
    ('{"mediaType":"application/vnd.oci.image.index.v1+json","config":{}}',
     'media-type: "application/vnd.oci.image.index.v1+json" should not have "config", "layers", or "fsLayers"'),
    ('{"config":{},"manifests":[]}', "media-type: cannot determine"),
    ('{"layers":[],"manifests":[]}', "media-type: cannot determine"),
    ('{"layers":[],"fsLayers":[]}', "media-type: cannot determine"),
    ('{"fsLayers":[],"manifests":[]}', "media-type: cannot determine"),
    ('{"config":{},"fsLayers":[]}', "media-type: cannot determine"),
])
def test_detect_manifest_blob_media_type_invalid(doc: str, message: str) -> None:
    with pytest.raises(InvalidManifestError) as info:
        detect_manifest_blob_media_type(doc.encode())
    assert str(info.value) == message


def test_schema1_and_mismatched_types() -> None:
    with pytest.raises(E.DeprecatedSchema1ImageError):
        detect_manifest_blob_media_type(b'{"mediaType":"application/vnd.docker.distribution.manifest.v1+json"}')
    assert type(parse_manifest("application/vnd.docker.distribution.manifest.v1+prettyjws",
                               b'{"schemaVersion":1,"signatures":[]}')).__name__ == "Schema1Manifest"
    with pytest.raises(InvalidManifestError, match="missing signature key"):
        parse_manifest("application/vnd.oci.artifact.manifest.v1+json", b'{"blobs":[]}')
    with pytest.raises(InvalidManifestError, match="mediaType in manifest should be"):
        parse_manifest("application/vnd.docker.distribution.manifest.v2+json", b'{"mediaType":"x","config":{}}')
    with pytest.raises(InvalidManifestError, match="ocimanifest: expected manifest but found index"):
        parse_manifest("application/vnd.oci.image.manifest.v1+json", b'{"manifests":[]}')
    with pytest.raises(InvalidManifestError, match="index: expected index but found manifest"):
        parse_manifest("application/vnd.oci.image.index.v1+json", b'{"config":{}}')


# JSON built from the manifest, descriptor, platform and config vocabulary, so the parsers meet
# every field with every wrong type (random keys would rarely name a field the parser reads)
_fields = st.sampled_from(["mediaType", "size", "digest", "config", "layers", "manifests", "platform", "architecture",
                           "os", "variant", "os.version", "os.features", "urls", "annotations", "artifactType",
                           "rootfs", "diff_ids", "type", "schemaVersion", "signatures", "x"])
_scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=20)
            | st.sampled_from(["sha256:" + "a" * 64, "linux", "amd64", "application/vnd.oci.image.layer.v1.tar+gzip"]))
_json_values = st.recursive(_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(_fields, c, max_size=6),
                            max_leaves=25)


@settings(max_examples=1500)
@given(st.sampled_from(["application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
                        "application/vnd.docker.distribution.manifest.v2+json",
                        "application/vnd.docker.distribution.manifest.list.v2+json", "", "application/json"]),
       st.one_of(st.binary(max_size=300), _json_values.map(lambda v: json.dumps(v).encode())))
def test_manifest_and_config_parsing_never_fail_untyped(content_type: str, body: bytes) -> None:
    """Hostile manifest, index and config JSON (a field of any wrong type) gets a DistributionError,
    never a TypeError or AttributeError, from every parser a pull runs it through."""
    try:
        parsed = parse_manifest(content_type, body)
    except E.DistributionError:
        parsed = None
    if isinstance(parsed, ImageIndex):
        filter_manifests(parsed.manifests, None)
    try:
        detect_manifest_blob_media_type(body)
    except E.DistributionError:
        pass
    try:
        _config_rootfs(body)
    except E.DistributionError:
        pass


def test_a_wrongly_typed_field_is_an_unmarshal_error() -> None:
    d = "sha256:" + "a" * 64
    body = json.dumps({"mediaType": DOCKER_MANIFEST_LIST, "manifests": [
        {"mediaType": DOCKER_MANIFEST, "digest": d, "size": 1, "platform": ["linux"]}]}).encode()
    with pytest.raises(InvalidManifestError, match="cannot unmarshal array into descriptor field platform"):
        parse_manifest(DOCKER_MANIFEST_LIST, body)
    with pytest.raises(E.DistributionError, match="invalid rootfs in image configuration"):
        _config_rootfs(b'{"os": true, "rootfs": {"diff_ids": []}}')
    with pytest.raises(E.DistributionError, match="invalid rootfs in image configuration"):
        _config_rootfs(b'{"os": "linux", "rootfs": {"diff_ids": 7}}')
    assert _config_rootfs(json.dumps({"os": "linux", "rootfs": {"type": "layers", "diff_ids": [d]}}).encode()) == [
        dd.Digest.parse(d)]


@pytest.mark.parametrize("argv, message", [
    (["pull", "--max-concurrent-downloads", "-1"], "invalid max concurrent downloads: -1"),
    (["pull", "--parallel-ranges", "0"], "invalid parallel ranges: 0: use 1 (one stream) or more"),
    (["push", "--max-concurrent-uploads", "-5"], "invalid max concurrent uploads: -5"),
])
def test_cli_refuses_negative_counts_before_any_request(tmp_path: Path, argv: list[str], message: str) -> None:
    """A negative concurrency used to pass through and leave every transfer waiting for a slot."""
    exe = str(Path(sys.executable).parent / "docker-distribution")
    proc = subprocess.run([exe, "--root", str(tmp_path / "root"), *argv, "127.0.0.1:1/x:y"], capture_output=True,
                          text=True, env={**os.environ, "DOCKER_CONFIG": str(tmp_path / "cfg")}, timeout=60)
    assert (proc.returncode, proc.stderr) == (1, f"Error: {message}\n")


def test_cli_images_lists_digest_only_images_as_none_with_docker_s_created_column(tmp_path: Path) -> None:
    import time

    from docker_distribution.cli import _human_duration
    from docker_distribution.store import Store

    assert [_human_duration(s) for s in (0.5, 1, 59, 60, 3599, 3600 * 1.4, 3600 * 47, 86400 * 13, 86400 * 59,
                                         86400 * 729, 86400 * 800)] == [
        "Less than a second", "1 second", "59 seconds", "About a minute", "59 minutes", "About an hour", "47 hours",
        "13 days", "8 weeks", "24 months", "2 years"]
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_text("x")
    store = Store(tmp_path / "root")
    old = time.strftime("%Y-%m-%dT%H:%M:%S.123456789Z", time.gmtime(time.time() - 3 * 86400))
    tagged = store.image_from_directories([tmp_path / "a"], parse_normalized_named("example.com/app:v1"),
                                          config={"created": old})
    orphan = store.image_from_directories([tmp_path / "a"], config={"created": "not a date"})
    store.references.add_digest(parse_normalized_named(f"example.com/app@{dd.digest_bytes(b'm')}"), orphan)
    store.references.add_digest(parse_normalized_named(f"example.com/app@{dd.digest_bytes(b'n')}"), tagged)
    exe = str(Path(sys.executable).parent / "docker-distribution")
    out = subprocess.run([exe, "--root", str(tmp_path / "root"), "images"], capture_output=True, text=True, check=True)
    rows = [line.split() for line in out.stdout.splitlines()]
    assert rows[0] == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert rows[1][:6] == ["example.com/app", "v1", tagged.short_id, "3", "days", "ago"]
    assert rows[2][:3] == ["example.com/app", "<none>", orphan.short_id] and len(rows) == 3


def test_cli_images_created_and_size_columns_read_as_docker_s(tmp_path: Path) -> None:
    """As docker images shows them (seen here with dockerd 20.10 and the docker 28.2 CLI): CREATED
    "N/A" for a config without a date or with Go's zero time, the Unix epoch as a date like any
    other; SIZE the layers' content (a file's bytes, a symlink's target), not their tar size."""
    import time

    from docker_distribution.store import Store

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_text("12345")
    (tmp_path / "a" / "l").symlink_to("f")
    store = Store(tmp_path / "root")
    for tag, config in [("epoch", {"created": "1970-01-01T00:00:00Z"}), ("none", {}),
                        ("zero", {"created": "0001-01-01T00:00:00Z"})]:
        store.image_from_directories([tmp_path / "a"], parse_normalized_named(f"example.com/t:{tag}"),
                                     config=config)
    exe = str(Path(sys.executable).parent / "docker-distribution")
    out = subprocess.run([exe, "--root", str(tmp_path / "root"), "images"], capture_output=True, text=True, check=True)
    rows = [line.split() for line in out.stdout.splitlines()[1:]]
    years = int(time.time() / 86400 / 365)  # units.HumanDuration: whole 365-day years
    assert [(r[1], r[3:]) for r in rows] == [("epoch", [str(years), "years", "ago", "6B"]), ("none", ["N/A", "6B"]),
                                            ("zero", ["N/A", "6B"])]


def test_cli_output_into_a_closed_pipe_ends_quietly_as_docker_s(tmp_path: Path) -> None:
    """``docker-distribution images | head -1``: no "Broken pipe" error, no traceback; status 141,
    as a process that SIGPIPE ended (docker's)."""
    from docker_distribution.store import Store

    (tmp_path / "a").mkdir()
    # a saved archive bigger than any pipe holds: one that fits is written whole before `head`
    # exits, and ends 0 (that made this test fail now and then)
    (tmp_path / "a" / "f").write_bytes(random.Random(3).randbytes(2 << 20))
    store = Store(tmp_path / "root")
    image_id = store.image_from_directories([tmp_path / "a"])
    for n in range(2000):  # more rows than a pipe holds
        store.references.add_tag(parse_normalized_named(f"example.com/many:{n}"), image_id)
    exe = str(Path(sys.executable).parent / "docker-distribution")
    for argv in (["images"], ["save", "example.com/many:1"]):
        r = subprocess.run(f"'{exe}' --root '{tmp_path / 'root'}' {' '.join(argv)} | head -c 10 >/dev/null;"
                           " echo ${PIPESTATUS[0]}", shell=True, executable="/bin/bash", capture_output=True,
                           text=True)
        assert (r.stdout, r.stderr) == ("141\n", ""), argv


# --- which errors are retried or resumed ---------------------------------------------------------


class _Body:
    """A response whose body read raises ``exc`` after one chunk."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
        self.raw = self

    def stream(self, n: int, decode_content: bool) -> Iterator[bytes]:
        yield b"x" * 10
        raise self.exc


def test_a_broken_connection_mid_body_is_a_transport_error_to_resume() -> None:
    import urllib3

    from docker_distribution.pull import _received

    for exc in (urllib3.exceptions.ProtocolError("reset"), ConnectionResetError(), TimeoutError()):
        with pytest.raises(E.TransportError):
            list(_received(_Body(exc), dd.digest_bytes(b"")))


def test_a_bug_while_reading_a_body_is_not_taken_for_a_network_fault() -> None:
    from docker_distribution.pull import _received

    with pytest.raises(TypeError):  # not a TransportError, which would be resumed with Range
        list(_received(_Body(TypeError("a bug")), dd.digest_bytes(b"")))


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), TypeError("a bug")])
def test_the_config_fetch_retries_neither_ctrl_c_nor_a_bug(exc: BaseException) -> None:
    calls = []

    def fetch() -> bytes:
        calls.append(1)
        raise exc

    with pytest.raises(type(exc)):
        _retry(fetch, threading.Event())
    assert len(calls) == 1


def test_a_transfer_retries_network_and_disk_errors_but_not_a_bug() -> None:
    from types import SimpleNamespace

    from docker_distribution.xfer.transfer import should_retry

    ctx: Any = SimpleNamespace(cancelled=threading.Event())  # what should_retry reads of a transfer
    assert should_retry(ctx, E.TransportError("GET", "u", "reset"), 1, 5)
    assert should_retry(ctx, OSError(5, "Input/output error"), 1, 5)
    assert not should_retry(ctx, TypeError("a bug"), 1, 5)
    assert not should_retry(ctx, KeyboardInterrupt(), 1, 5)
