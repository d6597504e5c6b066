"""The ``docker-distribution`` command line: docker-style subcommands over the Python API.

Each subcommand lives in one ``_cmd_*`` function; :func:`_parser` declares them all. Errors,
usage errors included, print as ``Error: <message>`` on stderr with exit status 1 (with
``--json``, as moby's ``errorDetail`` object on stdout); credentials are never printed.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import NoReturn, cast

from . import __version__
from .config import Config
from .digest import ALGORITHMS, SHA256, Digest
from .errors import DistributionError, InvalidOptionError, OperationCancelledError
from .platform import parse_platform
from .progress import JSONProgress, NullProgress, TerminalProgress, format_bytes
from .pull import pull_all_tags, pull_image
from .push import push_image
from .reference import Reference, parse_normalized_named
from .registry.auth import AuthConfig, DockerConfigFile
from .registry.login import login, stored_credentials
from .registry.service import (
    INDEX_NAME,
    INDEX_SERVER,
    RegistryService,
    ServiceOptions,
    normalize_index_name,
)
from .store import ROOT_ENV, Store
from .tags import tags
from .xfer.download import DEFAULT_MAX_CONCURRENT_DOWNLOADS
from .xfer.upload import DEFAULT_MAX_CONCURRENT_UPLOADS


def _store(args: argparse.Namespace) -> Store:
    return Store(args.root)


def _cli_ref(args: argparse.Namespace) -> Reference:
    """REF of pull and push, as the docker CLI takes it: ``-a`` wants a bare name, a bare name
    without ``-a`` means ``:latest`` (announced unless the output is quiet or JSON), and a
    reference with a tag and a digest asks for the digest alone."""
    ref = parse_normalized_named(args.ref)
    if ref.tag is not None and ref.digest is not None:
        ref = ref.trim().with_digest(ref.digest)
    if args.all_tags and not ref.is_name_only:
        raise InvalidOptionError("tag can't be used with --all-tags/-a")
    if ref.is_name_only and not args.all_tags:
        ref = ref.tag_name_only()
        if not args.quiet and not args.json:
            print(f"Using default tag: {ref.tag}", flush=True)
    return ref


def _transfer_config(args: argparse.Namespace) -> Config:
    """pull's and push's registry options and output: moby's JSON stream, nothing (``-q``), or
    docker-style lines."""
    out = JSONProgress() if args.json else NullProgress() if args.quiet else TerminalProgress()
    return Config(registry_service=_service(args), progress_output=out)


def _cmd_pull(args: argparse.Namespace) -> int:
    ref = _cli_ref(args)
    cfg = _transfer_config(args)
    platform = parse_platform(args.platform) if args.platform else None
    pull = pull_all_tags if args.all_tags else pull_image
    pull(ref, _store(args), config=cfg, platform=platform,
         max_concurrent_downloads=args.max_concurrent_downloads, parallel_ranges=args.parallel_ranges)
    if args.quiet:
        print(ref.familiar if not ref.is_name_only else ref.familiar_name)
    elif not args.json:
        print(ref)  # docker prints the full reference last
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    ref = _cli_ref(args)
    cfg = _transfer_config(args)
    push_image(ref, _store(args), config=cfg, compression=args.compression, compression_level=args.compression_level,
               max_concurrent_uploads=args.max_concurrent_uploads)
    if args.quiet:
        print(ref)  # docker push -q prints the full reference it pushed
    return 0


def _cmd_tag(args: argparse.Namespace) -> int:
    _store(args).tag(args.src, parse_normalized_named(args.dst))  # SRC: a reference, an image ID or an ID prefix
    return 0


def _cmd_save(args: argparse.Namespace) -> int:
    """docker save: to ``-o PATH``, else a tar to stdout (never to a terminal)."""
    if args.output is None and sys.stdout.isatty():
        raise InvalidOptionError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    store = _store(args)
    # references, image IDs or unique ID prefixes, as docker save
    store.save(list(args.refs), args.output if args.output is not None else sys.stdout.buffer)
    return 0


def _cmd_load(args: argparse.Namespace) -> int:
    """docker load: from ``-i PATH``, else an archive on stdin (plain or compressed)."""
    if args.input is None and sys.stdin.isatty():
        raise InvalidOptionError("requested load from stdin, but stdin is empty")
    for image_id, ref in _store(args).load(args.input if args.input is not None else sys.stdin.buffer):
        print(f"Loaded image: {ref.familiar}" if ref is not None else f"Loaded image ID: {image_id}")
    return 0


def _cmd_images(args: argparse.Namespace) -> int:
    """docker images [REPOSITORY[:TAG]]: a row per tag, and a ``<none>`` row for an image its
    repository names by digest only; ``-q`` prints the IDs alone (a row each, as docker's);
    ``--digests`` adds the DIGEST column, with a row per digest (docker's
    ``imageFormatTaggedAndDigest``)."""
    store = _store(args)
    header: tuple[str, ...] = ("REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE")
    rows: list[tuple[str, ...]] = []
    now = time.time()
    columns: dict[Digest, tuple[str, str, str]] = {}  # per image, however many rows name it
    for name, repo in sorted(store.references.all().items()):
        tagged = [(key.rsplit(":", 1)[1], Digest.parse(v)) for key, v in sorted(repo.items()) if "@" not in key]
        by_digest = {Digest.parse(v) for key, v in repo.items() if "@" in key} - {d for _, d in tagged}
        for tag, image_id in tagged + [("<none>", d) for d in sorted(by_digest, key=str)]:
            if args.reference and not _familiar_match(args.reference, name, tag):
                continue
            shown = str(image_id) if args.no_trunc else image_id.short_id
            digests = [""]  # the column is dropped below unless asked for
            if args.digests:
                digests = sorted(k.split("@", 1)[1] for k, v in repo.items() if "@" in k and v == str(image_id))
                digests = digests or ["<none>"]
            if args.quiet:
                rows += [(shown,)] * len(digests)
                continue
            if image_id not in columns:
                columns[image_id] = (shown, _created(store.images.get(image_id), now),
                                     format_bytes(store.image_size(image_id), 3))
            rows += [(name, tag, d, *columns[image_id]) for d in digests]
    if args.quiet:
        print("".join(f"{r[0]}\n" for r in rows), end="")
        return 0
    if not args.digests:
        header, rows = header[:2] + header[3:], [r[:2] + r[3:] for r in rows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def _familiar_match(pattern: str, name: str, tag: str) -> bool:
    """distribution/reference's ``FamiliarMatch``, as docker's ``reference`` filter applies it:
    Go's ``path.Match`` of ``pattern`` against ``name:tag``, else against ``name`` alone (a
    ``<none>`` row, named by digest only, is matched by its name)."""
    import re

    regex = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            regex += "[^/]*"
        elif c == "?":
            regex += "[^/]"
        elif c == "[" and "]" in pattern[i + 1:]:
            end = pattern.index("]", i + 1)
            regex += pattern[i:end + 1]  # a class: Go's syntax (^ to negate, \\ to escape) is the regex one
            i = end
        else:
            regex += re.escape(c)
        i += 1
    full = re.compile(regex + r"\Z")
    return (tag != "<none>" and full.match(f"{name}:{tag}") is not None) or full.match(name) is not None


#: Go's zero time.Time (0001-01-01T00:00:00Z) as a Unix timestamp
_GO_ZERO_TIME = -62135596800


def _created(config: bytes, now: float) -> str:
    """docker's CREATED column: ``units.HumanDuration(now - created) + " ago"``; ``N/A`` without a
    date or with Go's zero time (what docker images shows: dockerd 20.10, CLI 28.2)."""
    import datetime

    try:
        created = json.loads(config).get("created")
        when = datetime.datetime.fromisoformat(str(created)).timestamp()
    except (ValueError, AttributeError, TypeError, OverflowError, OSError):
        return "N/A"
    return "N/A" if when <= _GO_ZERO_TIME else f"{_human_duration(now - when)} ago"


def _human_duration(seconds: float) -> str:
    """docker's ``units.HumanDuration``."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)  # Go's Duration.Round(time.Hour)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def _cmd_unpack(args: argparse.Namespace) -> int:
    store = _store(args)
    store.unpack(args.ref, args.dir, force=args.force)
    return 0


def _waiting() -> None:
    print("Waiting for the pulls, pushes and loads in progress on this store to finish...", file=sys.stderr, flush=True)


def _cmd_rmi(args: argparse.Namespace) -> int:
    """As ``docker rmi``: each REF (a reference, an image ID or a unique ID prefix) in turn; one
    that fails is reported and the others are still removed; exit status 1 if any failed."""
    store = _store(args)
    failed = False
    for r in args.refs:
        try:
            lines = store.remove_image(r, force=args.force, on_wait=_waiting)
        except DistributionError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            failed = True
            continue
        for line in lines:
            print(line)
    return 1 if failed else 0


def _cmd_verify(args: argparse.Namespace) -> int:
    problems = _store(args).verify()
    for p in problems:
        print(p)
    print("store is consistent" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


def _cmd_prune(args: argparse.Namespace) -> int:
    report = _store(args).prune(on_wait=_waiting)
    for kind, items in (("image", report.images), ("layer", report.layers), ("content", report.content),
                        ("leftover", report.leftovers)):
        for i in items:
            print(f"deleted {kind} {i}")
    print(f"Total reclaimed space: {format_bytes(report.reclaimed, 3)}")  # docker's last line
    return 0


def _service(args: argparse.Namespace) -> RegistryService:
    hub: list[str] = []
    per_host: dict[str, list[str]] = {}
    for m in getattr(args, "registry_mirror", None) or ():
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
    # docker's checks: stdin carries the password, so the user name must come from the flag
    if args.password and args.password_stdin:
        raise InvalidOptionError("--password and --password-stdin are mutually exclusive")
    if args.password_stdin and not args.username:
        raise InvalidOptionError("Must provide --username with --password-stdin")
    if args.password:
        print("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", file=sys.stderr)
    key = _server_key(args.server)
    username = args.username or input("Username: ")
    if not username.strip():
        raise InvalidOptionError("Non-null Username Required")  # docker's words
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = args.password or getpass.getpass("Password: ")
    if not password:
        raise InvalidOptionError("Password Required")
    auth = AuthConfig(username=username, password=password, server_address=key)
    result = login(auth, service=_service(args))
    config = DockerConfigFile()
    if config.store(key, stored_credentials(auth, result)):  # docker's warning, on stderr
        print(f"\nWARNING! Your credentials are stored unencrypted in '{config.path}'.\n"
              "Configure a credential helper to remove this warning. See\n"
              "https://docs.docker.com/go/credential-store/\n", end="", file=sys.stderr)
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


_DESCRIPTION = """\
Pull, push and keep container images against any registry that speaks the Docker Registry
HTTP API v2 or the OCI distribution-spec, without a Docker daemon. Every byte is verified;
images live in a local store (--root, $DOCKER_DISTRIBUTION_ROOT, or the user data directory).
Commands, flags, output and messages follow docker's."""

_EPILOG = "Run 'docker-distribution COMMAND --help' for more information on a command."


class _Parser(argparse.ArgumentParser):
    """argparse, with docker's habits: a usage error prints ``Error: …`` (with a suggestion for a
    mistyped command) and exits with status 1, as every other error does."""

    def error(self, message: str) -> NoReturn:
        import difflib
        import re

        m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if m:
            choices = re.findall(r"'([^']*)'", m.group(2))
            message = f"unknown command {m.group(1)!r} for {self.prog!r}"
            close = difflib.get_close_matches(m.group(1), choices, n=1)
            if close:
                message += f"\n\nDid you mean this?\n\t{close[0]}"
        self.exit(1, f"Error: {message}\nSee '{self.prog} --help'.\n")


def _global_options(p: argparse.ArgumentParser, *, top: bool) -> None:
    """--debug and --root, before the command or after it: after it they are SUPPRESSed when not
    given, so they do not undo the ones given before it."""
    default = None if top else argparse.SUPPRESS
    p.add_argument("--debug", action="store_true", default=False if top else argparse.SUPPRESS,
                   help="log at DEBUG level (credentials are never logged)")
    p.add_argument("--root", metavar="DIR", default=default,
                   help=f"the store (default: ${ROOT_ENV}, else ~/.local/share/docker-distribution)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="docker-distribution", description=_DESCRIPTION, epilog=_EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=_version())
    _global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    add = sub.add_parser

    def command(name: str, text: str, *parents: argparse.ArgumentParser, more: str = "") -> argparse.ArgumentParser:
        p = add(name, parents=cast("list[_Parser]", list(parents)), help=text, description=text[0].upper() + text[1:] + "." + more)
        _global_options(p, top=False)
        return p

    registry_opts = argparse.ArgumentParser(add_help=False)
    registry_opts.add_argument("--insecure-registry", action="append", metavar="HOST|CIDR",
                               help="allow HTTP and unverified HTTPS for this registry (repeatable)")
    mirror_opts = argparse.ArgumentParser(add_help=False)
    mirror_opts.add_argument("--registry-mirror", action="append", metavar="[HOST=]URL",
                             help="a mirror to try first: URL for Docker Hub, HOST=URL for any registry (repeatable)")

    p = command("digest", "print the digest and size of files (hashed natively)")
    p.add_argument("files", nargs="+", metavar="FILE", help="a file to hash")
    p.add_argument("--algorithm", default=SHA256, choices=list(ALGORITHMS), help="default: sha256")
    p.set_defaults(func=_cmd_digest)

    p = command("tags", "list the tags of a remote repository", registry_opts, mirror_opts)
    p.add_argument("ref", metavar="REPO", help="a repository, e.g. localhost:5000/team/app (a tag is ignored)")
    p.set_defaults(func=_cmd_tags)

    p = command("login", "log in to a registry and store the credentials", registry_opts,
                more=" They go to docker's config.json (or its credential helper), where docker finds them too.")
    p.add_argument("server", nargs="?", metavar="SERVER", help="the registry, e.g. localhost:5000 (default: Docker Hub)")
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password", help="visible to other users of this machine; prefer --password-stdin")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.set_defaults(func=_cmd_login)

    p = command("pull", "pull an image into the local store", registry_opts, mirror_opts,
                more=" Killed or interrupted, it continues where it stopped when run again.")
    p.add_argument("ref", metavar="REF", help="NAME[:TAG|@DIGEST], e.g. localhost:5000/team/app:1.0 (default tag: latest)")
    p.add_argument("-a", "--all-tags", action="store_true", help="pull every tag of the repository")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]",
                   help="the platform to take from a multi-platform image (default: this machine's)")
    p.add_argument("--max-concurrent-downloads", type=int, default=DEFAULT_MAX_CONCURRENT_DOWNLOADS, metavar="N",
                   help=f"layers downloaded at once (default {DEFAULT_MAX_CONCURRENT_DOWNLOADS})")
    p.add_argument("--parallel-ranges", type=int, default=1, metavar="N",
                   help="fetch each layer of 32 MiB or more as N Range requests at once (default 1: one stream)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress; print only the reference pulled")
    p.add_argument("--json", action="store_true", help="moby's JSON progress stream, one object per line")
    p.set_defaults(func=_cmd_pull)

    p = command("push", "push an image from the local store", registry_opts,
                more=" Killed or interrupted, it continues where it stopped when run again.")
    p.add_argument("ref", metavar="REF", help="NAME[:TAG], e.g. localhost:5000/team/app:1.0 (default tag: latest)")
    p.add_argument("-a", "--all-tags", action="store_true", help="push every local tag of the repository")
    p.add_argument("--compression", choices=["gzip", "zstd"], default="gzip",
                   help="how layers are compressed on the fly (default: gzip; zstd goes beyond docker push)")
    p.add_argument("--compression-level", type=int, default=None, metavar="N",
                   help="gzip 1-12 (default 1) or zstd 1-22 (default 3)")
    p.add_argument("--max-concurrent-uploads", type=int, default=DEFAULT_MAX_CONCURRENT_UPLOADS, metavar="N",
                   help=f"layers uploaded at once (default {DEFAULT_MAX_CONCURRENT_UPLOADS})")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress; print only the reference pushed")
    p.add_argument("--json", action="store_true", help="moby's JSON progress stream, one object per line")
    p.set_defaults(func=_cmd_push)

    p = command("tag", "create a tag DST that refers to the image SRC")
    p.add_argument("src", metavar="SRC", help="a reference, an image ID or a unique ID prefix")
    p.add_argument("dst", metavar="DST", help="the new reference, NAME[:TAG] (default tag: latest)")
    p.set_defaults(func=_cmd_tag)

    p = command("save", "write images to an OCI layout with docker's manifest.json (a directory, or a .tar)")
    p.add_argument("refs", nargs="+", metavar="REF", help="a reference, an image ID or a unique ID prefix")
    p.add_argument("-o", "--output", metavar="PATH", help="a directory, or a .tar (default: a tar to stdout)")
    p.set_defaults(func=_cmd_save)

    p = command("load", "load images from an OCI layout or a docker save archive (a directory, or a .tar)")
    p.add_argument("-i", "--input", metavar="PATH", help="a directory or an archive (default: an archive on stdin)")
    p.set_defaults(func=_cmd_load)

    p = command("images", "list images in the local store")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]",
                   help="only these (docker's reference filter: * and ? match within a path component)")
    p.add_argument("-q", "--quiet", action="store_true", help="only the image IDs")
    p.add_argument("--no-trunc", action="store_true", help="full image IDs")
    p.add_argument("--digests", action="store_true", help="show the digests the images were pulled or pushed by")
    p.set_defaults(func=_cmd_images)

    p = command("unpack", "write an image's root filesystem into a directory",
                more=" A directory that is not empty is refused unless --force.")
    p.add_argument("ref", metavar="REF", help="a reference, an image ID or a unique ID prefix")
    p.add_argument("dir", metavar="DIR", help="the directory (created if needed; must be empty unless --force)")
    p.add_argument("-f", "--force", action="store_true",
                   help="unpack into a non-empty directory, writing over the files the image has")
    p.set_defaults(func=_cmd_unpack)

    p = command("rmi", "remove images: untag, then delete each image and the layers only it needed")
    p.add_argument("-f", "--force", action="store_true",
                   help="remove an image given by ID even if several tags or repositories name it")
    p.add_argument("refs", nargs="+", metavar="REF", help="a reference, an image ID or a unique ID prefix")
    p.set_defaults(func=_cmd_rmi)

    system_parser = command("system", "store maintenance: verify or prune")
    system = system_parser.add_subparsers(dest="system", metavar="SUBCOMMAND", parser_class=_Parser)
    system_parser.set_defaults(func=lambda args: _missing_subcommand(system_parser, ("verify", "prune")))
    for name, text, func in (("verify", "re-hash everything in the store and report problems", _cmd_verify),
                             ("prune", "remove what no image needs, and crash leftovers", _cmd_prune)):
        p = system.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        _global_options(p, top=False)
        p.set_defaults(func=func)

    p = command("logout", "remove stored credentials for a registry")
    p.add_argument("server", nargs="?", metavar="SERVER", help="the registry (default: Docker Hub)")
    p.set_defaults(func=_cmd_logout)
    return parser


def _stdout_gone() -> bool:
    """Whether stdout is a pipe nobody reads any more (poll reports an error on its end)."""
    import select

    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), 0)
        return any(events & select.POLLERR for _, events in poll.poll(0))
    except (OSError, ValueError):
        return False


def _version() -> str:
    """The package's version and the native core's (they ship in one wheel, so they agree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("docker-distribution")
    except PackageNotFoundError:
        package = __version__
    return f"docker-distribution {package} (native core {__version__})"


def _missing_subcommand(parser: argparse.ArgumentParser, names: Sequence[str]) -> NoReturn:
    parser.error(f"'{parser.prog}' needs a subcommand: {', '.join(names)}")


def _message(exc: BaseException) -> str:
    """What ``Error:`` says: a filesystem error names its file and reason, without Python's
    ``[Errno N]``."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc)


#: what Ctrl-C leaves behind, per command: said after ``Error: context canceled``
_KEPT = {
    "pull": "what was downloaded is kept: the same pull continues from there",
    "push": "the registry keeps what was uploaded: the same push continues from there",
    "load": "nothing was loaded",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(message)s")
    as_json = bool(getattr(args, "json", False))
    try:
        return int(args.func(args))
    except BrokenPipeError:
        if not _stdout_gone():
            raise
        # the reader of our output went away (`… | head`): end quietly, as docker does (SIGPIPE)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return 141
    except (DistributionError, OSError) as exc:
        text = _message(exc)
        if as_json:  # moby's JSON stream ends with the error as one more message
            print(json.dumps({"errorDetail": {"message": text}, "error": text}), flush=True)
        else:
            print(f"Error: {text}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: the store is consistent at any instant
        kept = _KEPT.get(args.command, "")
        print(f"Error: {OperationCancelledError()}" + (f" ({kept})" if kept else ""), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
