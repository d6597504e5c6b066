"""What a newcomer meets first, at the terminal and in Python: live progress that fits the
terminal, usage errors and help worded for users, one message per failure, JSON errors, plain
strings accepted wherever a reference or an image is, and errors that can be caught by the
registry's own class. Against the real registry of the test bed."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import random
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import docker_distribution as dd
import pyte
import pytest
from bed.proxy import Fault, FaultProxy
from bed.registry import Registry
from docker_distribution import errors as E
from docker_distribution.registry.auth import AuthConfig
from oci import image_manifest, skopeo_push, write_layout

ANON = dd.Config(auth_config=AuthConfig(), retry=dd.RetryPolicy(attempts=2, backoff=0.01))
EXE = str(Path(sys.executable).parent / "docker-distribution")
LAYERS = 3


@pytest.fixture(scope="module")
def image(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A three-layer image (1.5 MiB of random bytes each, so every layer shows a bar) on the registry."""
    work = tmp_path_factory.mktemp("cli-image")
    rng = random.Random(36)
    dirs = []
    for i in range(LAYERS):
        d = work / f"layer{i}"
        (d / "data").mkdir(parents=True)
        (d / "data" / f"blob{i}").write_bytes(rng.randbytes(3 << 19))
        dirs.append(d)
    layout = work / "layout"
    write_layout(layout, "v1", [image_manifest(layout, dirs)], as_index=False)
    ref = f"{registry.host}/newcomer/app:v1"
    skopeo_push(layout, "v1", ref)
    return ref


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "DOCKER_CONFIG": str(tmp_path / "cfg"), "DOCKER_DISTRIBUTION_ROOT": str(tmp_path / "root")}


def _run(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], capture_output=True, text=True, env=env, input=stdin, timeout=120)


# --- live progress on a terminal -----------------------------------------------------------------


def _under_a_terminal(argv: list[str], env: dict[str, str], columns: int, rows: int = 60) -> tuple[int, bytes]:
    """Run ``argv`` on a pseudo-terminal of ``columns`` x ``rows``; its exit status and output."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the terminal's size is set before the command starts
        try:
            fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))  # fd 1: the pty
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)  # never go on as a copy of the test process
    out = bytearray()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), bytes(out)


def _screen(output: bytes, columns: int, rows: int = 60) -> list[str]:
    screen = pyte.Screen(columns, rows)
    stream = pyte.ByteStream(screen)
    stream.feed(output.replace(b"\n", b"\r\n"))  # the pty's own newline translation, done by hand here
    return [line.rstrip() for line in screen.display]


@pytest.mark.parametrize("columns", [50, 80, 120])
def test_live_progress_keeps_one_line_per_layer_at_any_terminal_width(
        registry: Registry, image: str, env: dict[str, str], proxy: FaultProxy, columns: int) -> None:
    # slow blobs, so that every layer is drawn with counts many times over
    proxy.add(Fault(match="/blobs/sha256:", method="GET", throttle=2 << 20, times=LAYERS + 1))
    ref = image.replace(registry.host, proxy.host)
    code, output = _under_a_terminal([EXE, "pull", ref], env, columns)
    assert code == 0, output.decode(errors="replace")
    lines = _screen(output, columns)
    layer_lines = [line for line in lines if ": Pull complete" in line or ": Downloading" in line
                   or ": Extracting" in line or ": Verifying" in line or ": Waiting" in line]
    ids = [line.split(":", 1)[0] for line in layer_lines]
    assert len(ids) == LAYERS and len(set(ids)) == LAYERS, "\n".join(lines)
    assert all(line.endswith("Pull complete") for line in layer_lines), "\n".join(lines)
    assert all(len(line) < columns for line in lines)
    # nothing else on the screen but docker's other lines: no left-over copy of a bar line
    others = [line for line in lines if line and line not in layer_lines]
    assert all(line.startswith(("v1: Pulling from", "Digest: ", "Status: ", ref[: columns - 1]))
               for line in others), "\n".join(lines)
    if columns > 110:
        assert b"[=" in output  # docker's bar, on a terminal wide enough for it
    else:
        assert b"[=" not in output and b"MB/" in output  # the counts alone, as docker below 111 columns


def test_a_resized_terminal_gets_every_live_line_drawn_again_at_its_width() -> None:
    import io

    # a window widened from 60 to 130 columns: the bars appear on every line at the next update
    widths = iter([60, 60, 130])
    out = io.StringIO()
    p = dd.TerminalProgress(out, tty=True, width=lambda: next(widths))
    p.write_progress(dd.Progress("aaaa", action="Downloading", current=10 << 20, total=40 << 20))
    p.write_progress(dd.Progress("bbbb", action="Downloading", current=5 << 20, total=40 << 20))
    narrow = out.getvalue()
    p.write_progress(dd.Progress("aaaa", action="Downloading", current=20 << 20, total=40 << 20))
    assert "[" not in narrow
    screen = pyte.Screen(130, 10)
    pyte.Stream(screen).feed(out.getvalue().replace("\n", "\r\n"))
    shown = [line.rstrip() for line in screen.display if line.strip()]
    bar = "=" * 25
    assert shown == [f"aaaa: Downloading [{bar}>{' ' * 25}]  20.97MB/41.94MB",
                     f"bbbb: Downloading [======>{' ' * 44}]  5.243MB/41.94MB"]


# --- the command line: help, usage errors, messages ---------------------------------------------


def test_help_is_written_for_users(env: dict[str, str]) -> None:
    top = _run(env, "--help")
    assert top.returncode == 0 and "_cmd_" not in top.stdout and "Each subcommand" not in top.stdout
    assert "without a Docker daemon" in top.stdout
    pull = _run(env, "pull", "--help").stdout
    assert "Pull an image into the local store." in pull and "NAME[:TAG|@DIGEST]" in pull
    unpack = _run(env, "unpack", "--help").stdout
    assert "a reference, an image ID or a unique ID prefix" in unpack and "--force" in unpack
    for command in ("push", "login"):  # mirrors serve pulls only
        assert "--registry-mirror" not in _run(env, command, "--help").stdout
    assert "a mirror to try first" in _run(env, "tags", "--help").stdout


def test_usage_errors_say_error_exit_1_and_suggest_the_command_meant(env: dict[str, str]) -> None:
    typo = _run(env, "pul", "x")
    assert typo.returncode == 1
    assert typo.stderr.startswith("Error: unknown command 'pul' for 'docker-distribution'")
    assert "Did you mean this?\n\tpull" in typo.stderr
    missing = _run(env, "system")
    assert missing.returncode == 1 and "needs a subcommand: verify, prune" in missing.stderr
    bad_flag = _run(env, "images", "--nope")
    assert bad_flag.returncode == 1 and bad_flag.stderr.startswith("Error: unrecognized arguments: --nope")


def test_global_options_work_after_the_command_too(env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "elsewhere"
    after = _run(env, "images", "--root", str(root))
    assert after.returncode == 0 and after.stdout.startswith("REPOSITORY")
    assert root.is_dir()
    both = _run(env, "--debug", "images", "--root", str(root))
    assert both.returncode == 0


def test_version_names_the_package_and_the_native_core(env: dict[str, str]) -> None:
    out = _run(env, "--version").stdout.strip()
    assert out == f"docker-distribution {dd.__version__} (native core {dd.__version__})"


def test_loading_a_missing_file_says_the_file_does_not_exist(env: dict[str, str], tmp_path: Path) -> None:
    r = _run(env, "load", "-i", str(tmp_path / "nonexist.tar"))
    assert r.returncode == 1
    assert r.stderr == f"Error: {tmp_path / 'nonexist.tar'}: No such file or directory\n"


def test_login_with_an_empty_password_on_stdin_says_password_required(env: dict[str, str],
                                                                      registry: Registry) -> None:
    r = _run(env, "login", "-u", "alice", "--password-stdin", registry.host, stdin="")
    assert (r.returncode, r.stderr) == (1, "Error: Password Required\n")


def test_a_json_pull_of_a_missing_image_ends_with_mobys_error_object(env: dict[str, str], registry: Registry) -> None:
    r = _run(env, "pull", "--json", f"{registry.host}/newcomer/missing:v1")
    assert r.returncode == 1 and r.stderr == ""
    last = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(last) == {"errorDetail", "error"}
    assert last["error"] == last["errorDetail"]["message"]
    assert "not found" in last["error"] and "newcomer/missing" in last["error"]


def test_debug_says_trying_to_pull_once_per_endpoint(env: dict[str, str], image: str) -> None:
    r = _run(env, "--debug", "pull", image)
    assert r.returncode == 0, r.stderr
    trying = [line for line in r.stderr.splitlines() if "Trying to pull" in line]
    # a loopback registry is tried over https first, then over plain http: each said once
    assert [t.rsplit(" ", 1)[1].split("://")[0] for t in trying] == ["https", "http"], r.stderr


def test_a_json_pull_sends_no_duplicate_downloading_event_for_a_small_layer(
        env: dict[str, str], registry: Registry, tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    (small / "f").write_text("tiny\n")
    layout = tmp_path / "layout"
    write_layout(layout, "v1", [image_manifest(layout, [small])], as_index=False)
    ref = f"{registry.host}/newcomer/small:v1"
    skopeo_push(layout, "v1", ref)
    r = _run(env, "pull", "--json", ref)
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    downloading = [e for e in events if e.get("status") == "Downloading"]
    assert len(downloading) <= 1
    assert len({json.dumps(e, sort_keys=True) for e in downloading}) == len(downloading)


def test_a_push_without_credentials_says_its_error_once(env: dict[str, str], tls_registry: Registry,
                                                        image: str, tmp_path: Path) -> None:
    assert _run(env, "pull", image).returncode == 0
    target = f"{tls_registry.host}/newcomer/app:v1"
    assert _run(env, "tag", image, target).returncode == 0
    r = _run(env, "push", "--insecure-registry", tls_registry.host, target)
    assert r.returncode == 1
    assert "Upload failed" not in r.stderr and "ERROR" not in r.stderr
    assert r.stderr.count("no basic auth credentials") == 1, r.stderr


def test_pulling_a_second_platform_of_a_tag_prints_no_error(env: dict[str, str], registry: Registry,
                                                           tmp_path: Path) -> None:
    entries = []
    layout = tmp_path / "multi"
    for arch in ("amd64", "arm64"):
        d = tmp_path / arch
        d.mkdir()
        (d / "arch").write_text(arch)
        entries.append(image_manifest(layout, [d], arch=arch))
    write_layout(layout, "v1", entries, as_index=True)
    ref = f"{registry.host}/newcomer/multi:v1"
    skopeo_push(layout, "v1", ref, all_images=True)
    first = _run(env, "pull", "--platform", "linux/arm64", ref)
    second = _run(env, "pull", "--platform", "linux/amd64", ref)
    assert (first.returncode, second.returncode) == (0, 0), second.stderr
    assert "ERROR" not in first.stderr + second.stderr and "cannot update" not in second.stderr


def test_system_prune_says_how_much_it_reclaimed(env: dict[str, str], image: str) -> None:
    assert _run(env, "pull", image).returncode == 0
    store = dd.Store(env["DOCKER_DISTRIBUTION_ROOT"])
    image_id = store.resolve(image)
    for ref in store.references.references(image_id):  # the tag and the digest reference: left unnamed
        store.references.delete(ref)
    r = _run(env, "system", "prune")
    assert r.returncode == 0
    assert r.stdout.splitlines()[-1].startswith("Total reclaimed space: ")
    size = float(r.stdout.splitlines()[-1].split()[-1].removesuffix("MB"))
    assert 4.5 < size < 5.5, r.stdout  # the three layers' 1.5 MiB each, and the config
    again = _run(env, "system", "prune")
    assert again.stdout.splitlines()[-1] == "Total reclaimed space: 0B"


def test_unpack_refuses_a_directory_that_is_not_empty_unless_forced(env: dict[str, str], image: str,
                                                                    tmp_path: Path) -> None:
    assert _run(env, "pull", image).returncode == 0
    target = tmp_path / "rootfs"
    (target / "etc").mkdir(parents=True)
    (target / "etc" / "greeting").write_text("mine\n")
    refused = _run(env, "unpack", image, str(target))
    assert refused.returncode == 1 and "refusing to unpack into the non-empty directory" in refused.stderr
    assert sorted(p.name for p in target.rglob("*")) == ["etc", "greeting"]  # untouched
    forced = _run(env, "unpack", "--force", image, str(target))
    assert forced.returncode == 0, forced.stderr
    assert (target / "etc" / "greeting").read_text() == "mine\n" and (target / "data" / "blob0").is_file()
    afile = tmp_path / "afile"
    afile.write_text("x")
    onto_file = _run(env, "unpack", image, str(afile))
    assert (onto_file.returncode, onto_file.stderr) == (
        1, f"Error: cannot unpack into {afile}: it exists and is not a directory\n")


def test_ctrl_c_during_a_pull_says_what_was_kept(env: dict[str, str], registry: Registry, image: str,
                                                 proxy: FaultProxy) -> None:
    proxy.add(Fault(match="/blobs/sha256:", method="GET", throttle=256 << 10, times=LAYERS + 1))
    proc = subprocess.Popen([EXE, "pull", image.replace(registry.host, proxy.host)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    for line in proc.stdout:  # wait until blobs are on their way
        if "Pulling fs layer" in line:
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == (
        "Error: context canceled (what was downloaded is kept: the same pull continues from there)")


# --- the Python API with plain values -------------------------------------------------------------


@pytest.fixture
def pulled(image: str, tmp_path: Path) -> Iterator[tuple[dd.Store, dd.Digest]]:
    store = dd.Store(tmp_path / "store")
    image_id = dd.pull_image(image, store, config=ANON)  # a str, and the ID back (never None)
    yield store, image_id


def test_every_call_takes_a_string_where_it_takes_a_reference(image: str, pulled: tuple[dd.Store, dd.Digest],
                                                              registry: Registry, tmp_path: Path) -> None:
    store, image_id = pulled
    assert isinstance(image_id, dd.Digest)
    assert "v1" in dd.tags(image.rsplit(":", 1)[0], ANON)
    assert store.tag(image_id, f"{registry.host}/newcomer/copy:v2") == image_id  # the Digest pull returned
    assert store.tag(image, f"{registry.host}/newcomer/copy:v3") == image_id  # two strings
    assert store.tag(image_id.encoded[:12], f"{registry.host}/newcomer/copy") == image_id  # an ID prefix
    store.unpack(f"{registry.host}/newcomer/copy:v3", tmp_path / "by-ref")
    store.unpack(image_id, tmp_path / "by-id")
    assert (tmp_path / "by-ref" / "data" / "blob0").read_bytes() == (tmp_path / "by-id" / "data" / "blob0").read_bytes()
    dd.push_image(f"{registry.host}/newcomer/copy:v2", store, config=ANON)
    assert "v2" in dd.tags(f"{registry.host}/newcomer/copy", ANON)
    assert dd.pull_image(f"{registry.host}/newcomer/copy:v2", dd.Store(tmp_path / "other"), config=ANON) == image_id


def test_a_wrong_value_is_a_distribution_error_and_a_wrong_type_a_clear_type_error(
        pulled: tuple[dd.Store, dd.Digest], tmp_path: Path) -> None:
    store, image_id = pulled
    with pytest.raises(E.NoSuchImageError):
        store.unpack("127.0.0.1:1/nothing:here", tmp_path / "x")
    with pytest.raises(E.NoSuchImageError, match="No such image: NOT A REFERENCE"):
        store.tag("NOT A REFERENCE", "dst:v1")
    with pytest.raises(E.InvalidReferenceError):
        store.tag(image_id, "NOT A REFERENCE")
    with pytest.raises(E.NoSuchImageError):
        store.tag(dd.digest_bytes(b"no such image"), "dst:v1")
    with pytest.raises(TypeError, match="expected a reference"):
        dd.tags(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected an image"):
        store.unpack(3.5, tmp_path / "y")  # type: ignore[arg-type]


def test_a_missing_tag_is_caught_by_the_registry_error_class_and_by_not_found(registry: Registry,
                                                                            tmp_path: Path) -> None:
    store = dd.Store(tmp_path / "s")
    with pytest.raises(dd.ManifestUnknownError) as info:
        dd.pull_image(f"{registry.host}/newcomer/app:nope", store, config=ANON)
    assert isinstance(info.value, dd.NotFoundError) and isinstance(info.value, dd.RegistryError)
    assert str(info.value).startswith(f"manifest for {registry.host}/newcomer/app:nope not found: manifest unknown")
    assert info.value.status == 404 and isinstance(info.value.cause, dd.ManifestUnknownError)
    with pytest.raises(dd.NameUnknownError):
        dd.tags(f"{registry.host}/newcomer/never-pushed", ANON)
