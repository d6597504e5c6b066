"""The ``docker-distribution`` command line: docker-style subcommands over the Python API.

Each subcommand lives in one ``_cmd_*`` function. Errors print as ``Error: <message>`` on
stderr with exit status 1; credentials are never printed.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from collections.abc import Sequence

from . import __version__
from .config import Config
from .digest import SHA256, Digest
from .errors import DistributionError
from .reference import parse_normalized_named
from .registry.auth import AuthConfig, DockerConfigFile
from .registry.login import login, stored_credentials
from .registry.service import (
    INDEX_NAME,
    INDEX_SERVER,
    RegistryService,
    ServiceOptions,
    normalize_index_name,
)
from .tags import tags


def _service(args: argparse.Namespace) -> RegistryService:
    hub: list[str] = []
    per_host: dict[str, list[str]] = {}
    for m in args.registry_mirror or ():
        host, sep, url = m.partition("=")
        if sep and "://" not in host:
            per_host.setdefault(host, []).append(url)
        else:
            hub.append(m)
    return RegistryService(ServiceOptions(mirrors=hub, insecure_registries=args.insecure_registry or (),
                                          registry_mirrors=per_host))


def _config(args: argparse.Namespace) -> Config:
    return Config(registry_service=_service(args))


def _cmd_digest(args: argparse.Namespace) -> int:
    for path in args.files:
        digest, size = Digest.from_file(path, args.algorithm)
        print(f"{digest}  {size}  {path}")
    return 0


def _cmd_tags(args: argparse.Namespace) -> int:
    for t in tags(parse_normalized_named(args.ref), _config(args)):
        print(t)
    return 0


def _server_key(server: str | None) -> str:
    if not server:
        return INDEX_SERVER
    host = server.split("://", 1)[-1].split("/", 1)[0]
    return INDEX_SERVER if normalize_index_name(host) == INDEX_NAME else host


def _cmd_login(args: argparse.Namespace) -> int:
    key = _server_key(args.server)
    username = args.username or input("Username: ")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = args.password or getpass.getpass("Password: ")
    auth = AuthConfig(username=username, password=password, server_address=key)
    result = login(auth, service=_service(args))
    DockerConfigFile().store(key, stored_credentials(auth, result))
    print(result.status)
    return 0


def _cmd_logout(args: argparse.Namespace) -> int:
    key = _server_key(args.server)
    store = DockerConfigFile()
    if store.erase(key):
        print(f"Removing login credentials for {key}")
    else:
        print(f"Not logged in to {key}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="docker-distribution", description=__doc__)
    parser.add_argument("--version", action="version", version=f"docker-distribution {__version__}")
    parser.add_argument("--debug", action="store_true", help="log at DEBUG level (credentials are never logged)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    registry_opts = argparse.ArgumentParser(add_help=False)
    registry_opts.add_argument("--insecure-registry", action="append", metavar="HOST|CIDR",
                               help="allow HTTP and unverified HTTPS for this registry (repeatable)")
    registry_opts.add_argument("--registry-mirror", action="append", metavar="[HOST=]URL",
                               help="a pull mirror: for Docker Hub, or HOST=URL for any registry (repeatable)")

    p = sub.add_parser("digest", help="print the digest and size of files (hashed natively)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--algorithm", default=SHA256, choices=["sha256", "sha384", "sha512"])
    p.set_defaults(func=_cmd_digest)

    p = sub.add_parser("tags", parents=[registry_opts], help="list the tags of a remote repository")
    p.add_argument("ref", metavar="REF")
    p.set_defaults(func=_cmd_tags)

    p = sub.add_parser("login", parents=[registry_opts], help="log in to a registry and store the credentials")
    p.add_argument("server", nargs="?", metavar="SERVER")
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password")
    p.add_argument("--password-stdin", action="store_true")
    p.set_defaults(func=_cmd_login)

    p = sub.add_parser("logout", help="remove stored credentials for a registry")
    p.add_argument("server", nargs="?", metavar="SERVER")
    p.set_defaults(func=_cmd_logout)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args))
    except (DistributionError, OSError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
