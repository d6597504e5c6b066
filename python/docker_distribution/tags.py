"""``tags()`` and ``get_repositories()``: moby's ``Tags`` and ``GetRepositories`` (spec §4.1–4.2)."""

from __future__ import annotations

import logging

from .config import Config
from .errors import DistributionError, FallbackError
from .fallback import check_reserved, pull_endpoints, resolve_auth
from .reference import Reference
from .registry.client import Repository, connect
from .registry.service import APIEndpoint

__all__ = ["get_repositories", "tags"]

log = logging.getLogger(__name__)


def tags(ref: Reference, config: Config | None = None) -> list[str]:
    """Every tag of ``ref``'s repository, in the registry's order, trying endpoints in turn."""
    cfg = config or Config()
    auth = resolve_auth(cfg, ref)

    def attempt(endpoint: APIEndpoint, repo_name: Reference) -> list[str]:
        repo = connect(repo_name, endpoint, auth_config=auth, actions=("pull",),
                       meta_headers=cfg.meta_headers, retry=cfg.retry)
        return repo.tags()

    return pull_endpoints(ref, cfg, attempt)


def get_repositories(ref: Reference, config: Config | None = None) -> list[Repository]:
    """One pinged :class:`Repository` per reachable pull endpoint (mirrors included); unreachable
    ones are skipped. Raises the last error when none is reachable."""
    cfg = config or Config()
    repo_name = ref.trim()
    check_reserved(repo_name)
    auth = resolve_auth(cfg, repo_name)
    out: list[Repository] = []
    last: BaseException | None = None
    for endpoint in cfg.registry_service.lookup_pull_endpoints(repo_name.domain):
        try:
            out.append(connect(repo_name, endpoint, auth_config=auth, actions=("pull",), retry=cfg.retry))
        except (DistributionError, OSError) as exc:
            log.info("failed to create repository for %s at %s: %s", repo_name.familiar_name, endpoint.url, exc)
            last = exc.err if isinstance(exc, FallbackError) else exc
    if not out and last is not None:
        raise last
    return out
