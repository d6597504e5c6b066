"""Pytest fixtures: the real registries of the test bed (see ``bed/``).

* ``registry``: (a) plain HTTP, anonymous.
* ``tls_registry``: (b) TLS with a CA generated here, plus htpasswd basic auth.
* ``token_registry``: (c) bearer-token auth through ``bed.token_issuer``.
* ``mirror_registry``: (d) a pull-through cache (``proxy.remoteurl``) in front of (a).
* ``registry_factory``: fresh plain registries for tests that need one to themselves.
* ``proxy`` / ``front``: the fault-injecting proxy (``bed/proxy.py``) in front of (a), plain or
  with its resumable upload front. Each checks, after its test, that every fault the test added
  fired: a fault that never fired proves nothing about surviving it.

The shared registries live for the whole session; tests keep apart by repository name.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
from bed.pki import CertificateAuthority, Issued
from bed.proxy import FaultProxy
from bed.registry import Registry
from bed.token_issuer import TokenIssuer, User

BASIC_USERS = {"alice": "alice-secret-pw", "bob": "bob-secret-pw"}
TOKEN_SERVICE = "test-registry"
TOKEN_ISSUER = "docker-distribution-test-issuer"


@dataclass
class TokenBed:
    registry: Registry
    issuer: TokenIssuer


@pytest.fixture(scope="session")
def bed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bed")


@pytest.fixture(scope="session")
def ca(bed_dir: Path) -> CertificateAuthority:
    return CertificateAuthority(bed_dir / "pki")


@pytest.fixture(scope="session")
def server_cert(ca: CertificateAuthority) -> Issued:
    return ca.issue("server", hosts=("127.0.0.1", "localhost"))


def _started(reg: Registry) -> Iterator[Registry]:
    reg.start()
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def registry(bed_dir: Path) -> Iterator[Registry]:
    yield from _started(Registry("plain", bed_dir / "plain"))


@pytest.fixture(scope="session")
def tls_registry(bed_dir: Path, ca: CertificateAuthority, server_cert: Issued) -> Iterator[Registry]:
    htpasswd = bed_dir / "htpasswd"
    htpasswd.write_text(
        "".join(f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4)).decode()}\n" for u, p in BASIC_USERS.items())
    )
    reg = Registry(
        "tls-basic", bed_dir / "tls-basic", scheme="https",
        auth={"htpasswd": {"realm": "basic-realm", "path": str(htpasswd)}},
        tls=(server_cert.cert_path, server_cert.key_path), ca_path=ca.cert_path,
    )
    yield from _started(reg)


@pytest.fixture(scope="session")
def token_registry(bed_dir: Path, ca: CertificateAuthority) -> Iterator[TokenBed]:
    signer = ca.issue("token-signer", server=False)
    issuer = TokenIssuer(
        service=TOKEN_SERVICE, issuer=TOKEN_ISSUER, signer=signer,
        users={
            "alice": User("alice-token-pw", {"*": ("pull", "push", "delete")}),
            "reader": User("reader-token-pw", {"*": ("pull",)}),
        },
    ).start()
    reg = Registry(
        "token", bed_dir / "token",
        auth={"token": {"realm": issuer.realm, "service": TOKEN_SERVICE, "issuer": TOKEN_ISSUER,
                        "rootcertbundle": str(ca.cert_path)}},
    )
    try:
        for r in _started(reg):
            yield TokenBed(r, issuer)
    finally:
        issuer.stop()


@pytest.fixture(scope="session")
def mirror_registry(bed_dir: Path, registry: Registry) -> Iterator[Registry]:
    yield from _started(Registry("mirror", bed_dir / "mirror", proxy_remote=registry.url))


@pytest.fixture
def registry_factory(tmp_path: Path) -> Iterator[Callable[..., Registry]]:
    started: list[Registry] = []

    def make(**kwargs: object) -> Registry:
        reg = Registry(f"fresh-{len(started)}", tmp_path / f"registry-{len(started)}", **kwargs)  # type: ignore[arg-type]
        started.append(reg.start())
        return reg

    yield make
    for reg in started:
        reg.stop()


@pytest.fixture
def repo_name() -> str:
    """A repository name no other test uses."""
    return f"test/{uuid.uuid4().hex[:12]}"


def _checked_proxy(upstream: str, *, resumable_uploads: bool = False) -> Iterator[FaultProxy]:
    p = FaultProxy(upstream, resumable_uploads=resumable_uploads)
    try:
        yield p
    finally:
        p.stop()
    assert p.unfired() == [], "faults the test added that never fired"


@pytest.fixture
def proxy(registry: Registry) -> Iterator[FaultProxy]:
    yield from _checked_proxy(registry.url)


@pytest.fixture
def front(registry: Registry) -> Iterator[FaultProxy]:
    yield from _checked_proxy(registry.url, resumable_uploads=True)
