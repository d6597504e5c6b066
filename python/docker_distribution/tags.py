"""``tags()`` and ``get_repositories()``: moby's ``Tags`` (distribution/pull.go) and
``GetRepositories`` (distribution/repository.go), over the one endpoint loop."""

from __future__ import annotations

import logging

from .config import Config
from .errors import DistributionError, FallbackError, translate_pull_error
from .fallback import endpoints_for, resolve_auth, try_endpoints
from .reference import Reference, as_reference
from .registry.client import Repository, connect
from .registry.service import APIEndpoint

__all__ = ["get_repositories", "tags"]

log = logging.getLogger(__name__)


def tags(ref: Reference | str, config: Config | None = None) -> list[str]:
    """Every tag of ``ref``'s repository (a :class:`Reference` or a string), in the registry's
    order, trying endpoints in turn."""
    ref = as_reference(ref)
    cfg = config or Config()
    auth = resolve_auth(cfg, ref)

    def attempt(endpoint: APIEndpoint, repo_name: Reference) -> list[str]:
        repo = connect(repo_name, endpoint, auth_config=auth, actions=("pull",),
                       meta_headers=cfg.meta_headers, retry=cfg.retry)
        return repo.tags()

    return try_endpoints(ref, cfg, "pull", attempt, translate=lambda err: translate_pull_error(err, ref))


def get_repositories(ref: Reference | str, config: Config | None = None) -> list[Repository]:
    """One pinged :class:`Repository` per reachable pull endpoint (mirrors included), in
    endpoint order. As in moby, every endpoint is tried (no fallback rule, no TLS-twin skip) and
    an unreachable one is skipped, logged at INFO; the last error is raised when none is
    reachable. Unlike moby, the configured meta headers are sent here too."""
    cfg = config or Config()
    repo_name, endpoints = endpoints_for(as_reference(ref), cfg, "pull")
    auth = resolve_auth(cfg, repo_name)
    out: list[Repository] = []
    last: BaseException | None = None
    for endpoint in endpoints:
        try:
            out.append(connect(repo_name, endpoint, auth_config=auth, actions=("pull",),
                               meta_headers=cfg.meta_headers, retry=cfg.retry))
        except (DistributionError, OSError) as exc:
            log.info("failed to create repository for %s at %s: %s", repo_name.familiar_name, endpoint.url, exc)
            last = exc.err if isinstance(exc, FallbackError) else exc
    if not out and last is not None:
        raise last
    return out
