"""Configuration shared by pull, push and tags (moby's ``distribution.Config``, moby distribution/config.go).

Options are keyword-only; defaults are named constants with their reason beside them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from .progress import NullProgress, ProgressOutput
from .reference import Reference
from .registry.auth import AuthConfig
from .registry.service import APIEndpoint, RegistryService
from .registry.transport import RetryPolicy

__all__ = ["Config", "ImageEventLogger", "RegistryResolver", "common_fields"]

#: ``(id, name, action)``: called once an image was pulled or pushed (moby's ImageEventLogger)
ImageEventLogger = Callable[[str, str, str], None]


class RegistryResolver(Protocol):
    """Endpoint lookup and credential resolution (moby's ``RegistryResolver``)."""

    def resolve_auth_config(self, auth_configs: Mapping[str, AuthConfig], ref: Reference) -> AuthConfig:
        """The credentials among ``auth_configs`` meant for ``ref``'s registry (anonymous if none)."""
        ...

    def lookup_push_endpoints(self, hostname: str) -> list[APIEndpoint]:
        """The endpoints to push to for ``hostname``, in the order to try them."""
        ...

    def lookup_pull_endpoints(self, hostname: str) -> list[APIEndpoint]:
        """The endpoints to pull from for ``hostname`` (mirrors first), in the order to try them."""
        ...


@dataclass(frozen=True, kw_only=True)
class Config:
    """How to talk to registries.

    ``auth_config`` None means: look the credentials up in docker's ``config.json`` (with its
    credential helpers), as the docker CLI would before calling the daemon. Pass
    ``AuthConfig()`` to go anonymous.
    """

    meta_headers: Mapping[str, Sequence[str]] = field(default_factory=dict)
    auth_config: AuthConfig | None = None
    progress_output: ProgressOutput = field(default_factory=NullProgress)
    registry_service: RegistryResolver = field(default_factory=RegistryService)
    image_event_logger: ImageEventLogger | None = None
    #: transport-level retries of idempotent requests (beyond moby, which has none)
    retry: RetryPolicy = field(default_factory=RetryPolicy)


def common_fields(config: Config, **overrides: Any) -> dict[str, Any]:
    """The :class:`Config` part of ``config`` as keyword arguments (to build a pull or push config)."""
    out = {f.name: getattr(config, f.name) for f in fields(Config)}
    out.update({k: v for k, v in overrides.items() if v is not None})
    return out
