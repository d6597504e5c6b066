"""The endpoint loop: the one place that decides which endpoint is tried next.

moby writes it three times (``pullEndpoints`` in distribution/pull.go, the loop of ``Push`` in
distribution/push.go, and ``GetRepositories`` in distribution/repository.go); here pull, push,
and tags run :func:`try_endpoints` (``GetRepositories``, which wants every endpoint rather than
the first that works, shares :func:`endpoints_for`). Endpoints are tried in order (mirrors
first, for pulls). An error after which another endpoint may help
(:func:`~docker_distribution.errors.continue_on_error`) moves on to the next one; once an
endpoint's HTTPS is confirmed to work, its plain-HTTP twin is skipped. When every endpoint
failed, the last error is raised, translated for the user by the caller's ``translate`` (pull's
:func:`~docker_distribution.errors.translate_pull_error`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal, TypeVar

from .config import Config
from .errors import (
    DistributionError,
    FallbackError,
    NoEndpointsError,
    OperationCancelledError,
    ReservedNameError,
    continue_on_error,
)
from .reference import Reference
from .registry.auth import AuthConfig, DockerConfigFile
from .registry.service import (
    INDEX_NAME,
    INDEX_SERVER,
    APIEndpoint,
    normalize_index_name,
)

__all__ = ["check_reserved", "endpoints_for", "resolve_auth", "try_endpoints"]

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
    """moby's ``reservedNameError``: ``scratch`` is no repository to pull from or push to."""
    if repo_name.familiar_name == "scratch":
        raise ReservedNameError("scratch")


def endpoints_for(ref: Reference, config: Config, verb: Literal["pull", "push"]) -> tuple[Reference, list[APIEndpoint]]:
    """``ref``'s repository name (checked against the reserved one) and ``verb``'s endpoints for
    it, in the order they are tried: mirrors first for a pull, never a mirror for a push."""
    repo_name = ref.trim()
    check_reserved(repo_name)
    service = config.registry_service
    if verb == "pull":
        return repo_name, service.lookup_pull_endpoints(repo_name.domain)
    return repo_name, service.lookup_push_endpoints(repo_name.domain)


def _identity(err: BaseException) -> BaseException:
    return err


def try_endpoints(ref: Reference, config: Config, verb: Literal["pull", "push"],
                  attempt: Callable[[APIEndpoint, Reference], T], *,
                  translate: Callable[[BaseException], BaseException] = _identity) -> T:
    """Run ``attempt(endpoint, repo_name)`` on each of ``verb``'s endpoints for ``ref`` until one
    succeeds, and return what it returned.

    An error that does not allow a fallback is raised at once (through ``translate``); a
    :class:`~docker_distribution.errors.FallbackError`, or an error
    :func:`~docker_distribution.errors.continue_on_error` lets through, moves on. With no
    endpoint left, the last such error is raised (through ``translate``), or
    :class:`~docker_distribution.errors.NoEndpointsError` when there was none to try.
    """
    repo_name, endpoints = endpoints_for(ref, config, verb)
    confirmed_tls: set[str] = set()
    last_err: BaseException | None = None
    towards = "from" if verb == "pull" else "to"
    for endpoint in endpoints:
        if endpoint.scheme != "https" and endpoint.host in confirmed_tls:
            log.debug("Skipping non-TLS endpoint %s for host/port that appears to use TLS", endpoint.url)
            continue
        log.debug("Trying to %s %s %s %s", verb, ref.familiar, towards, endpoint.url)
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
                log.info("Attempting next endpoint for %s after error: %s", verb, err)
                continue
            log.debug("Not continuing with %s after error: %s", verb, err)
            translated = translate(err.err if isinstance(err, FallbackError) else err)
            if translated is exc:
                raise
            raise translated from exc
    if last_err is None:
        raise NoEndpointsError(ref.familiar)
    translated = translate(last_err)
    if translated is last_err:
        raise last_err
    raise translated from last_err
