"""Logging in (moby's ``Service.Auth``, moby registry/auth.go, Service.Auth): check credentials against a registry.

The registry's ``/v2/`` is fetched with the credentials, through the token flow with offline
access when the registry uses bearer tokens (so an identity token can be kept instead of the
password), or with basic auth. Push endpoints only: mirrors are never logged in to.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import DistributionError, UnauthorizedError
from .auth import AuthConfig, Authorizer, BasicHandler, TokenHandler
from .service import INDEX_HOSTNAME, RegistryService, normalize_index_name
from .transport import RetryPolicy, Transport

__all__ = ["LoginResult", "login"]


@dataclass(frozen=True, slots=True)
class LoginResult:
    """What a successful login answered: docker's status line (``Login Succeeded``) and the
    identity token the registry offered, if any."""

    status: str
    #: the refresh token the registry offered, to store instead of the password
    identity_token: str = ""


class LoginError(DistributionError):
    """A login attempt answered with something other than 200."""


def login(auth: AuthConfig, *, service: RegistryService | None = None, retry: RetryPolicy | None = None) -> LoginResult:
    """Verify ``auth`` against ``auth.server_address`` (default: Docker Hub)."""
    service = service or RegistryService()
    server = auth.server_address or INDEX_HOSTNAME
    for prefix in ("https://", "http://"):
        if server.startswith(prefix):
            server = server[len(prefix):]
    host = normalize_index_name(server.split("/", 1)[0])
    last: BaseException | None = None
    for endpoint in service.lookup_push_endpoints(host):
        transport = Transport(endpoint, retry=retry)
        captured: list[str] = []
        token = TokenHandler(transport.session, auth, [], offline_access=True, verify=transport.verify,
                             cert=transport.cert, headers=transport.headers, on_refresh_token=captured.append)
        transport.authorizer = Authorizer(transport.challenges, [token, BasicHandler(auth)])
        try:
            transport.ping()
            resp = transport.request("GET", transport.url("/v2/"), ok=lambda s: True)
            resp.close()
        except UnauthorizedError:
            raise
        except DistributionError as exc:
            last = exc
            continue
        if resp.status_code == 401:
            raise UnauthorizedError(status=401, bare=False)
        if resp.status_code != 200:
            last = LoginError(f"login attempt to {endpoint.url}/v2/ failed with status: {resp.status_code} {resp.reason}")
            continue
        return LoginResult("Login Succeeded", captured[-1] if captured else "")
    assert last is not None
    raise last


def stored_credentials(auth: AuthConfig, result: LoginResult) -> AuthConfig:
    """What to keep after a login: the identity token instead of the password when there is one."""
    if result.identity_token:
        return replace(auth, password="", identity_token=result.identity_token)
    return auth
