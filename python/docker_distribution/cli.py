"""The ``docker-distribution`` command line: docker-style subcommands over the Python API.

Global options come before the subcommand. Each subcommand lives in one ``_cmd_*``
function; they print what docker would print and exit non-zero with the error's message.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .digest import SHA256, Digest
from .errors import DistributionError


def _cmd_digest(args: argparse.Namespace) -> int:
    for path in args.files:
        digest, size = Digest.from_file(path, args.algorithm)
        print(f"{digest}  {size}  {path}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="docker-distribution", description=__doc__)
    parser.add_argument("--version", action="version", version=f"docker-distribution {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("digest", help="print the digest and size of files (hashed natively)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--algorithm", default=SHA256, choices=["sha256", "sha384", "sha512"])
    p.set_defaults(func=_cmd_digest)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (DistributionError, OSError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
