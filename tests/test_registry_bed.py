"""The test bed itself: each registry variant answers as a real registry does."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import requests
from bed.registry import Registry, RegistryStartError
from conftest import BASIC_USERS, TOKEN_SERVICE, TokenBed


def _push_blob(base: str, repo: str, data: bytes, headers: dict[str, str] | None = None) -> str:
    """Monolithic upload (POST, then PUT ?digest=) with plain requests: the bed needs no client."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = requests.post(f"{base}/v2/{repo}/blobs/uploads/", timeout=10, headers=headers)
    assert r.status_code == 202, r.text
    location = requests.compat.urljoin(f"{base}/", r.headers["Location"])
    sep = "&" if "?" in location else "?"
    r = requests.put(f"{location}{sep}digest={digest}", data=data, timeout=10,
                     headers={**(headers or {}), "Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    return digest


def test_plain_registry_answers_anonymous_ping(registry: Registry) -> None:
    r = requests.get(f"{registry.url}/v2/", timeout=5)
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_tls_registry_requires_basic_auth(tls_registry: Registry) -> None:
    assert tls_registry.url.startswith("https://")
    r = requests.get(f"{tls_registry.url}/v2/", verify=tls_registry.verify, timeout=5)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].lower().startswith("basic ")
    r = requests.get(f"{tls_registry.url}/v2/", verify=tls_registry.verify, timeout=5,
                     auth=("alice", BASIC_USERS["alice"]))
    assert r.status_code == 200
    r = requests.get(f"{tls_registry.url}/v2/", verify=tls_registry.verify, timeout=5, auth=("alice", "wrong"))
    assert r.status_code == 401


def test_tls_registry_is_not_trusted_without_the_generated_ca(tls_registry: Registry) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{tls_registry.url}/v2/", timeout=5)


def _token(bed: TokenBed, user: str, password: str, scope: str) -> str:
    r = requests.get(bed.issuer.realm, params={"service": TOKEN_SERVICE, "scope": scope, "account": user},
                     auth=(user, password), timeout=5)
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def test_token_registry_challenges_with_the_issuer_realm(token_registry: TokenBed) -> None:
    r = requests.get(f"{token_registry.registry.url}/v2/", timeout=5)
    assert r.status_code == 401
    challenge = r.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'realm="{token_registry.issuer.realm}"' in challenge
    assert f'service="{TOKEN_SERVICE}"' in challenge


def test_token_from_issuer_is_accepted_and_pull_only_token_cannot_push(token_registry: TokenBed, repo_name: str) -> None:
    base = token_registry.registry.url
    push_token = _token(token_registry, "alice", "alice-token-pw", f"repository:{repo_name}:push,pull")
    auth = {"Authorization": f"Bearer {push_token}"}
    assert requests.get(f"{base}/v2/", headers=auth, timeout=5).status_code == 200
    digest = _push_blob(base, repo_name, b"token-bed blob", auth)

    pull_token = _token(token_registry, "reader", "reader-token-pw", f"repository:{repo_name}:push,pull")
    pull_auth = {"Authorization": f"Bearer {pull_token}"}
    r = requests.get(f"{base}/v2/{repo_name}/blobs/{digest}", headers=pull_auth, timeout=5)
    assert r.status_code == 200 and r.content == b"token-bed blob"
    r = requests.post(f"{base}/v2/{repo_name}/blobs/uploads/", headers=pull_auth, timeout=5)
    assert r.status_code == 401
    assert 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]
    assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"


def test_token_issuer_rejects_a_wrong_password(token_registry: TokenBed) -> None:
    r = requests.get(token_registry.issuer.realm, params={"service": TOKEN_SERVICE}, auth=("alice", "nope"), timeout=5)
    assert r.status_code == 401


def test_blob_pushed_upstream_is_readable_through_the_mirror(registry: Registry, mirror_registry: Registry,
                                                             repo_name: str) -> None:
    data = os.urandom(256 * 1024)
    digest = _push_blob(registry.url, repo_name, data)
    r = requests.get(f"{mirror_registry.url}/v2/{repo_name}/blobs/{digest}", timeout=10)
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["Docker-Content-Digest"] == digest


def test_failed_start_reports_the_registry_log(tmp_path: Path) -> None:
    reg = Registry("broken", Path(tmp_path) / "broken", scheme="https",
                   tls=(Path(tmp_path) / "missing.crt", Path(tmp_path) / "missing.key"))
    with pytest.raises(RegistryStartError) as info:
        reg.start()
    assert "missing.crt" in str(info.value)
