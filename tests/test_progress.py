"""Progress rendering against moby's ``jsonmessage`` (moby pkg/jsonmessage and distribution/xfer progress): the JSON stream's ``progress``
text, docker's byte units, and what docker prints on and off a terminal."""

from __future__ import annotations

import io
import json

from docker_distribution.progress import JSONProgress, Progress, TerminalProgress, format_bytes, progress_text


def test_human_sizes_are_docker_s() -> None:
    # units.HumanSize (4 significant digits) and HumanSizeWithPrecision(…, 3) as `docker images` uses
    assert [format_bytes(n) for n in (0, 95, 999, 1000, 1234567, 28_570_000, 2_811_400, 10**27)] == [
        "0B", "95B", "999B", "1kB", "1.235MB", "28.57MB", "2.811MB", "1000YB"]
    assert [format_bytes(n, 3) for n in (2048, 7_654_321)] == ["2.05kB", "7.65MB"]


def test_progress_text_is_moby_s_jsonprogress_string() -> None:
    bar = progress_text(Progress("x", action="Downloading", current=1234567, total=5678901))
    assert bar == "[" + "=" * 10 + ">" + " " * 40 + "]  1.235MB/5.679MB"
    assert progress_text(Progress("x", action="Extracting", current=95, total=95)) == "[" + "=" * 50 + ">]      95B/95B"
    assert progress_text(Progress("x", action="Downloading", current=0, total=10)) == "[>" + " " * 50 + "]       0B/10B"
    # a current above the total shows the current only; an unknown total shows the count alone
    assert progress_text(Progress("x", action="Downloading", current=12, total=10)).endswith("]      12B")
    assert progress_text(Progress("x", action="Pushing", current=3_000_000)) == "     3MB"
    assert progress_text(Progress("x", action="Pulling fs layer")) == ""
    assert progress_text(Progress("x", action="Extracting", current=5, total=10, hide_counts=True)) == (
        "[" + "=" * 25 + ">" + " " * 25 + "] ")


def test_json_stream_lines() -> None:
    out = io.StringIO()
    j = JSONProgress(out)
    j.write_progress(Progress("abc", action="Downloading", current=50, total=100))
    j.write_progress(Progress("abc", action="Pull complete"))
    j.write_progress(Progress(message="Digest: sha256:00"))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines == [
        {"status": "Downloading", "progressDetail": {"current": 50, "total": 100},
         "progress": "[" + "=" * 25 + ">" + " " * 25 + "]      50B/100B", "id": "abc"},
        {"status": "Pull complete", "progressDetail": {}, "id": "abc"},
        {"status": "Digest: sha256:00"},
    ]


def _feed(out: TerminalProgress) -> None:
    for p in (Progress("v1", message="Pulling from demo/hello"), Progress("abc", action="Pulling fs layer"),
              Progress("abc", action="Downloading", current=10, total=100),
              Progress("abc", action="Downloading", current=100, total=100),
              Progress("abc", action="Verifying Checksum"), Progress("abc", action="Download complete"),
              Progress("abc", action="Extracting", current=100, total=100), Progress("abc", action="Pull complete"),
              Progress(message="Digest: sha256:00")):
        out.write_progress(p)


def test_off_a_terminal_the_lines_are_docker_s() -> None:
    buf = io.StringIO()
    _feed(TerminalProgress(buf, tty=False))
    # docker drops every item that carries a bar when its output is not a terminal
    assert buf.getvalue().splitlines() == [
        "v1: Pulling from demo/hello", "abc: Pulling fs layer", "abc: Verifying Checksum", "abc: Download complete",
        "abc: Pull complete", "Digest: sha256:00"]


def test_on_a_terminal_each_layer_has_one_live_line_with_its_bar() -> None:
    buf = io.StringIO()
    _feed(TerminalProgress(buf, tty=True))
    text = buf.getvalue()
    assert "abc: Downloading [=====>" in text and "abc: Extracting [" + "=" * 50 + ">]     100B/100B" in text
    assert text.count("\n") == 3  # the message, the layer's one line (rewritten in place), the digest
