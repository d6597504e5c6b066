"""Digests: parsing, hashing in Rust, file verification, and the GIL released for bulk work."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import docker_distribution as dd
import pytest
from docker_distribution import _native
from docker_distribution.errors import UnsupportedDigestAlgorithmError
from hypothesis import given
from hypothesis import strategies as st

ALGORITHMS = {"sha256": 64, "sha384": 96, "sha512": 128}


@given(st.binary(max_size=4096), st.sampled_from(sorted(ALGORITHMS)))
def test_digest_matches_hashlib_and_round_trips(data: bytes, algorithm: str) -> None:
    d = dd.digest_bytes(data, algorithm)
    assert str(d) == f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
    assert dd.Digest.parse(str(d)) == d
    assert d.short_id == d.encoded[:12]


@given(st.lists(st.binary(max_size=200_000), max_size=6))
def test_streaming_digester_equals_one_shot(chunks: list[bytes]) -> None:
    digester = dd.Digester()
    for c in chunks:
        digester.update(c)
    assert digester.written == sum(map(len, chunks))
    assert digester.digest() == dd.digest_bytes(b"".join(chunks))
    assert digester.written == 0  # digest() starts afresh


@pytest.mark.parametrize(
    "value",
    [
        "",
        "sha256",
        "sha256:",
        ":" + "a" * 64,
        "sha256:" + "A" * 64,
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 65,
        "sha256:" + "g" * 64,
        "sha384:" + "a" * 64,
        "sha512:" + "a" * 96,
    ],
)
def test_invalid_digests_raise_a_value_error(value: str) -> None:
    with pytest.raises(dd.InvalidDigestError) as info:
        dd.Digest.parse(value)
    assert isinstance(info.value, ValueError)
    assert repr(value) in str(info.value)


def test_unknown_algorithm_is_its_own_error() -> None:
    with pytest.raises(UnsupportedDigestAlgorithmError, match="md5"):
        dd.Digest.parse("md5:" + "a" * 32)
    with pytest.raises(UnsupportedDigestAlgorithmError):
        dd.Digester("sha1")


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(dd.InvalidDigestError):
        dd.Digest("sha256", "xyz")


def test_digest_values_are_immutable() -> None:
    d = dd.digest_bytes(b"x")
    with pytest.raises(AttributeError):
        d.encoded = "0" * 64  # type: ignore[misc]


def test_verify_file_accepts_good_content_and_types_each_failure(tmp_path: Path) -> None:
    f = tmp_path / "blob"
    f.write_bytes(b"layer bytes" * 1000)
    good = dd.digest_bytes(f.read_bytes())
    dd.verify_file(f, good, 11000)
    dd.verify_file(f, str(good))
    with pytest.raises(dd.SizeMismatchError) as size_err:
        dd.verify_file(f, good, 11001)
    assert (size_err.value.expected, size_err.value.actual) == (11001, 11000)
    bad = dd.digest_bytes(b"other")
    with pytest.raises(dd.DigestMismatchError) as dig_err:
        dd.verify_file(f, bad, 11000)
    assert dig_err.value.expected == str(bad) and dig_err.value.actual == str(good)
    assert isinstance(dig_err.value, dd.errors.VerificationError)
    with pytest.raises(FileNotFoundError) as missing:
        dd.verify_file(tmp_path / "missing", good)
    assert missing.value.filename == str(tmp_path / "missing")  # named, as Python's open names it
    assert str(missing.value) == f"[Errno 2] No such file or directory: '{tmp_path / 'missing'}'"
    with pytest.raises(IsADirectoryError, match=r"^\[Errno 21\] Is a directory: '"):
        dd.Digest.from_file(tmp_path)
    with pytest.raises(dd.errors.InvalidOptionError, match=r"^invalid size: -1$"):  # not the binding's OverflowError
        dd.verify_file(f, good, -1)


def test_digest_from_file_matches_bytes(tmp_path: Path) -> None:
    f = tmp_path / "data"
    payload = bytes(range(256)) * 9000
    f.write_bytes(payload)
    assert dd.Digest.from_file(f, "sha512") == (dd.digest_bytes(payload, "sha512"), len(payload))


def test_verify_bytes_raises_on_mismatch() -> None:
    d = dd.digest_bytes(b"abc")
    d.verify_bytes(b"abc")
    with pytest.raises(dd.DigestMismatchError):
        d.verify_bytes(b"abd")


def test_native_hashing_releases_the_gil() -> None:
    """While one thread hashes 256 MiB natively, a pure-Python thread keeps running."""
    data = b"\x5a" * (256 << 20)
    ticks = 0
    hashing = threading.Event()
    done = threading.Event()

    def count() -> None:
        nonlocal ticks
        hashing.wait()
        while not done.is_set():
            ticks += 1

    counter = threading.Thread(target=count)
    counter.start()
    hashing.set()
    before = ticks
    digest = _native.digest_bytes(data)
    during = ticks - before
    done.set()
    counter.join()
    assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
    # With the GIL held for the whole hash the counter could not advance at all.
    assert during > 1000, during


def test_digesters_in_many_threads_agree() -> None:
    data = [bytes([i]) * (3 << 20) for i in range(8)]
    results: dict[int, str] = {}

    def work(i: int) -> None:
        results[i] = str(dd.digest_bytes(data[i]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: "sha256:" + hashlib.sha256(data[i]).hexdigest() for i in range(8)}
