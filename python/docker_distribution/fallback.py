"""The endpoint loop shared by pull and tags (moby's ``pullEndpoints``, spec §2.2).

Endpoints are tried in order (mirrors first). An error after which another endpoint may
help (:func:`~docker_distribution.errors.continue_on_error`) moves on to the next one; once
an endpoint's HTTPS is confirmed to work, its plain-HTTP twin is skipped. The last error is
translated for the user (:func:`~docker_distribution.errors.translate_pull_error`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from .config import Config
from .errors import (
    DistributionError,
    FallbackError,
    NoEndpointsError,
    OperationCancelledError,
    ReservedNameError,
    continue_on_error,
    translate_pull_error,
)
from .reference import Reference
from .registry.auth import AuthConfig, DockerConfigFile
from .registry.service import (
    INDEX_NAME,
    INDEX_SERVER,
    APIEndpoint,
    normalize_index_name,
)

__all__ = ["pull_endpoints", "resolve_auth"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def resolve_auth(config: Config, ref: Reference) -> AuthConfig:
    """The configured credentials, or else docker's ``config.json`` entry for ``ref``'s registry."""
    if config.auth_config is not None:
        return config.auth_config
    index = normalize_index_name(ref.domain)
    key = INDEX_SERVER if index == INDEX_NAME else index
    return DockerConfigFile().get(key)


def check_reserved(repo_name: Reference) -> None:
    if repo_name.familiar_name == "scratch":
        raise ReservedNameError("scratch")


def pull_endpoints(ref: Reference, config: Config, attempt: Callable[[APIEndpoint, Reference], T]) -> T:
    """Run ``attempt(endpoint, repo_name)`` on each pull endpoint until one succeeds."""
    repo_name = ref.trim()
    check_reserved(repo_name)
    endpoints = config.registry_service.lookup_pull_endpoints(repo_name.domain)
    confirmed_tls: set[str] = set()
    last_err: BaseException | None = None
    for endpoint in endpoints:
        if endpoint.scheme != "https" and endpoint.host in confirmed_tls:
            log.debug("Skipping non-TLS endpoint %s for host/port that appears to use TLS", endpoint.url)
            continue
        log.debug("Trying to pull %s from %s", ref.familiar, endpoint.url)
        try:
            return attempt(endpoint, repo_name)
        except (DistributionError, OSError) as exc:
            err: BaseException = exc
            if not isinstance(err, FallbackError) and continue_on_error(err, endpoint.mirror):
                err = FallbackError(err, transport_ok=True)
            if isinstance(err, FallbackError) and not isinstance(err.err, OperationCancelledError):
                if err.transport_ok and endpoint.scheme == "https":
                    confirmed_tls.add(endpoint.host)
                last_err = err.err
                log.info("Attempting next endpoint for pull after error: %s", err)
                continue
            log.debug("Not continuing with pull after error: %s", err)
            raise translate_pull_error(err, ref) from exc
    if last_err is None:
        raise NoEndpointsError(ref.familiar)
    translated = translate_pull_error(last_err, ref)
    if translated is last_err:
        raise last_err
    raise translated from last_err
