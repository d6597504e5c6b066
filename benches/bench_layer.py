"""Layer apply and produce on the ``big`` layers, beside GNU tar, gzip, pigz and zstd.

Every timed run starts cold: the destination is wiped, ``sync``, the page cache dropped, and
the inputs re-read (so reading them is not what is measured). The runs go in rounds (each
scenario once per round), so drift in the machine's speed hits ours and the peers alike.
Ratios are peer ÷ ours.

Checks (issue #3): apply of gzip layers ≥ 3× GNU ``tar -xzf``; apply within 1.3× of
max(fastest bare gzip decoder, bare ``tar -xf``); zstd apply ≥ 1.5× faster than gzip apply
(with its ceilings: our apply of the uncompressed tars, which no codec can beat, and the
machine CPU of each apply, the zstd apply's own included, spread over the cores);
gzip production ≥ 2× ``pigz -p2 -6`` with output ≤ 10% larger; zstd production at least as
fast as ``zstd -T2 -3``; peak RSS applying a 1 GiB layer < 100 MiB above baseline.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from harness import machine, machine_seconds, write_result
from images import CACHE, SCRATCH, big_layers, data_layer

from docker_distribution.layer import DEFAULT_GZIP_LEVEL, apply_layer, produce_layer

WORK = SCRATCH / "work"
UNCOMPRESSED = "ours: apply the uncompressed tars (diff + tar-split; no decoder)"
ZSTD_APPLY = "ours: apply zstd layers (diff + tar-split)"
ZSTD_APPLY3 = "ours: apply zstd layers, the 3 diffs at once (as a pull does)"


def sh(cmd: str) -> None:
    subprocess.run(["bash", "-c", cmd], check=True)


def compressed_inputs(tars: list[Path]) -> tuple[list[Path], list[Path]]:
    gz, zst = [], []
    for t in tars:
        g, z = t.with_suffix(".tar.gz"), t.with_suffix(".tar.zst")
        if not g.exists():
            sh(f"gzip -6 -n -c {t} > {g}.tmp && mv {g}.tmp {g}")  # single member, as docker pushes
        if not z.exists():
            sh(f"zstd -q -3 -T2 -c {t} > {z}.tmp && mv {z}.tmp {z}")
        gz.append(g)
        zst.append(z)
    return gz, zst


def drop_caches(inputs: list[Path]) -> bool:
    sh("sync")
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        dropped = True
    except OSError:
        dropped = False
    for p in inputs:
        with open(p, "rb") as f:
            while f.read(1 << 24):
                pass
    return dropped


def measure(scenarios: list[tuple[str, Callable[[], object], list[Path]]], runs: int
            ) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Median seconds of each scenario, and the medians of the VM steal seconds and of the
    machine's CPU seconds (all its work, over both cores) during it, run in rounds: every
    scenario once per round, so a machine that speeds up or slows down during the run weighs on
    ours and the peers alike."""
    times: dict[str, list[float]] = {name: [] for name, _, _ in scenarios}
    steals: dict[str, list[float]] = {name: [] for name, _, _ in scenarios}
    busy: dict[str, list[float]] = {name: [] for name, _, _ in scenarios}
    for _ in range(runs):
        for name, run, inputs in scenarios:
            shutil.rmtree(WORK, ignore_errors=True)
            WORK.mkdir(parents=True)
            drop_caches(inputs)
            steal0, busy0 = machine_seconds()
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
            steal1, busy1 = machine_seconds()
            steals[name].append(steal1 - steal0)
            busy[name].append(busy1 - busy0)
    shutil.rmtree(WORK, ignore_errors=True)
    for name, ts in times.items():
        print(f"  {name:<44} median {statistics.median(ts):7.3f}s  (min {min(ts):.3f}, max {max(ts):.3f})  "
              f"steal {statistics.median(steals[name]):.2f}s  machine cpu {statistics.median(busy[name]):.2f}s", flush=True)
    return ({name: statistics.median(ts) for name, ts in times.items()},
            {name: statistics.median(ss) for name, ss in steals.items()},
            {name: statistics.median(bs) for name, bs in busy.items()})


def _commands(cmd: str, paths: list[Path]) -> list[str]:
    return [cmd.format(src=p, dst=WORK / f"d{i}", out=WORK / f"o{i}") for i, p in enumerate(paths)]


def each(cmd: str, paths: list[Path]) -> Callable[[], None]:
    def run() -> None:
        for c in _commands(cmd, paths):
            sh(c)
    return run


def at_once(cmd: str, paths: list[Path]) -> Callable[[], None]:
    """``cmd`` for every path, all started together (a shell waits for them)."""
    return lambda: sh(" & ".join(f"({c})" for c in _commands(cmd, paths)) + " & wait")


def peak_rss_kib(code: str) -> int:
    """Peak RSS (KiB) of a fresh interpreter running ``code``: its VmHWM (getrusage would report
    the forking parent's peak, which survives exec)."""
    report = ("; print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')))")
    out = subprocess.run([sys.executable, "-c", code + report], check=True, capture_output=True, text=True).stdout
    return int(out.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    tars = big_layers()
    gz, zst = compressed_inputs(tars)
    tar_bytes = sum(p.stat().st_size for p in tars)
    gz_bytes = sum(p.stat().st_size for p in gz)
    zst_bytes = sum(p.stat().st_size for p in zst)
    print(f"big: {len(tars)} layers, {tar_bytes / 1e6:.0f} MB tar, {gz_bytes / 1e6:.0f} MB gzip, {zst_bytes / 1e6:.0f} MB zstd")
    scenarios: list[tuple[str, Callable[[], object], list[Path]]] = []

    def m(name: str, run: Callable[[], object], inputs: list[Path]) -> None:
        scenarios.append((name, run, inputs))

    m("gzip -dc (GNU gzip, decode only)", each("gzip -dc {src} > /dev/null", gz), gz)
    m("pigz -dc (decode only)", each("pigz -dc {src} > /dev/null", gz), gz)
    m("zstd -dc (decode only)", each("zstd -q -dc {src} > /dev/null", zst), zst)
    m("tar -xf (uncompressed)", each("mkdir {dst} && tar -xf {src} -C {dst}", tars), tars)
    m("tar -xzf (GNU tar + gzip)", each("mkdir {dst} && tar -xzf {src} -C {dst}", gz), gz)
    m("tar -xzf, the 3 layers at once", at_once("mkdir {dst} && tar -xzf {src} -C {dst}", gz), gz)

    def apply_diff(i: int, p: Path) -> None:
        apply_layer(p, WORK / f"d{i}", mode="diff", split=WORK / f"s{i}")

    def ours_apply(paths: list[Path], mode: str) -> Callable[[], None]:
        def run() -> None:
            for i, p in enumerate(paths):
                if mode == "diff":
                    apply_diff(i, p)
                else:
                    apply_layer(p, WORK / "rootfs")
        return run

    def ours_apply_at_once(paths: list[Path]) -> Callable[[], None]:
        """The diffs side by side, as a pull applies them (each layer's diff is its own directory)."""
        from concurrent.futures import ThreadPoolExecutor

        def run() -> None:
            with ThreadPoolExecutor(len(paths)) as pool:
                list(pool.map(apply_diff, range(len(paths)), paths))
        return run

    m("ours: apply gzip layers (diff + tar-split)", ours_apply(gz, "diff"), gz)
    m("ours: apply gzip layers (flattened rootfs)", ours_apply(gz, "rootfs"), gz)
    m(ZSTD_APPLY, ours_apply(zst, "diff"), zst)
    # no decoder at all: what creating the files costs us, a ceiling for what any codec can gain
    m(UNCOMPRESSED, ours_apply(tars, "diff"), tars)
    m("ours: apply gzip layers, the 3 diffs at once (as a pull does)", ours_apply_at_once(gz), gz)
    m(ZSTD_APPLY3, ours_apply_at_once(zst), zst)

    # production: from the uncompressed tar for the peers; from an applied diff for ours
    diffs = CACHE / "diffs"
    if not diffs.exists():
        tmp = CACHE / "diffs.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for i, p in enumerate(tars):
            apply_layer(p, tmp / f"d{i}", mode="diff", split=tmp / f"s{i}")
        tmp.rename(diffs)
    diff_files = [f for f in diffs.rglob("*") if f.is_file()]

    sizes: dict[str, int] = {}

    def ours_produce(codec: Literal["gzip", "zstd"], level: int | None = None) -> Callable[[], None]:
        def run() -> None:
            sizes[f"{codec}{level or ''}"] = sum(
                produce_layer(WORK / f"o{i}", source_diff=(diffs / f"d{i}", diffs / f"s{i}"), compression=codec,
                              level=level).size
                for i in range(len(tars)))
        return run

    def peer_produce(cmd: str, key: str) -> Callable[[], None]:
        def run() -> None:
            each(cmd, tars)()
            sizes[key] = sum((WORK / f"o{i}").stat().st_size for i in range(len(tars)))
        return run

    m("pigz -p2 -6 (produce)", peer_produce("pigz -p2 -6 -c {src} > {out}", "pigz"), tars)
    gz_default = f"ours: produce gzip (default level {DEFAULT_GZIP_LEVEL}, 2 threads)"
    m(gz_default, ours_produce("gzip"), diff_files)
    m("ours: produce gzip (level 6, 2 threads)", ours_produce("gzip", 6), diff_files)
    m("zstd -T2 -3 (produce)", peer_produce("zstd -q -T2 -3 -c {src} > {out}", "zstd-cli"), tars)
    m("ours: produce zstd (level 3, 2 threads)", ours_produce("zstd"), diff_files)

    t, steal, busy = measure(scenarios, args.runs)

    # memory: a 1 GiB layer applied in a fresh process, against a process that only imports us
    big = data_layer(1 << 30, "one-gib.tar")
    big_gz = big.with_suffix(".tar.gz")
    if not big_gz.exists():
        sh(f"pigz -6 -c {big} > {big_gz}")
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    base = peak_rss_kib("import docker_distribution.layer")
    peak = peak_rss_kib(f"from docker_distribution.layer import apply_layer; "
                        f"apply_layer({str(big_gz)!r}, {str(WORK / 'big')!r}, mode='diff', split={str(WORK / 'split')!r})")
    shutil.rmtree(WORK, ignore_errors=True)

    floor = max(min(t["gzip -dc (GNU gzip, decode only)"], t["pigz -dc (decode only)"]), t["tar -xf (uncompressed)"])
    apply_gz = t["ours: apply gzip layers (diff + tar-split)"]
    apply_gz3 = t["ours: apply gzip layers, the 3 diffs at once (as a pull does)"]
    # the least time an apply can take here: its slowest part alone (an apply of the uncompressed
    # tars has no decoder), or all its work spread perfectly over the cores
    cores = os.cpu_count() or 1
    bare = max(t[UNCOMPRESSED], busy[UNCOMPRESSED] / cores)
    gz_least = max(t[UNCOMPRESSED], busy["ours: apply gzip layers (diff + tar-split)"] / cores)
    rows = [
        ("apply gzip vs GNU `tar -xzf` (speed-up; layer by layer, both)", t["tar -xzf (GNU tar + gzip)"] / apply_gz, "≥ 3×"),
        ("apply gzip, 3 diffs at once, vs GNU `tar -xzf` layer by layer (as docker and containerd apply)",
         t["tar -xzf (GNU tar + gzip)"] / apply_gz3, "≥ 3×"),
        ("apply gzip, 3 diffs at once, vs `tar -xzf`, 3 at once", t["tar -xzf, the 3 layers at once"] / apply_gz3, "(for reference)"),
        ("apply gzip ÷ max(fastest bare gzip decoder, bare `tar -xf`)", apply_gz / floor, "≤ 1.3×"),
        ("apply gzip, 3 diffs at once, ÷ the same floor", apply_gz3 / floor, "≤ 1.3×"),
        ("zstd apply speed-up over gzip apply", apply_gz / t[ZSTD_APPLY], "≥ 1.5×"),
        ("the most any codec's apply can gain over gzip apply: gzip apply ÷ max(apply of the uncompressed tars, "
         f"its machine CPU ÷ {cores} cores)", apply_gz / bare, "(ceiling of the row above)"),
        ("the most our apply can gain over `tar -xzf` without doing less work: `tar -xzf` ÷ max(apply of the "
         f"uncompressed tars, gzip apply's machine CPU ÷ {cores} cores)",
         t["tar -xzf (GNU tar + gzip)"] / gz_least, "(ceiling of the first two rows)"),
        ("zstd apply speed-up over gzip apply, 3 diffs at once",
         apply_gz3 / t[ZSTD_APPLY3], "≥ 1.5×"),
        ("the most any codec's apply can gain over gzip apply, 3 diffs at once: gzip apply at once ÷ "
         f"(the uncompressed apply's machine CPU ÷ {cores} cores)", apply_gz3 / (busy[UNCOMPRESSED] / cores),
         "(ceiling of the row above)"),
        ("the most our zstd apply can gain over gzip apply without doing less work: gzip apply ÷ max(apply of "
         f"the uncompressed tars, zstd apply's machine CPU ÷ {cores} cores); layer by layer",
         apply_gz / max(t[UNCOMPRESSED], busy[ZSTD_APPLY] / cores), "(ceiling of the ≥ 1.5× rows)"),
        (f"the same, 3 diffs at once: gzip apply at once ÷ (zstd apply at once's machine CPU ÷ {cores} cores)",
         apply_gz3 / (busy[ZSTD_APPLY3] / cores), "(ceiling of the ≥ 1.5× rows)"),
        ("zstd apply's machine CPU beyond the uncompressed apply's ÷ `zstd -dc`'s machine CPU (what its decoder "
         "adds, against the bare CLI decoder's whole cost)", (busy[ZSTD_APPLY] - busy[UNCOMPRESSED]) / busy["zstd -dc (decode only)"],
         "(for reference)"),
        ("gzip production (default level) speed-up vs `pigz -p2 -6`", t["pigz -p2 -6 (produce)"] / t[gz_default], "≥ 2×"),
        ("gzip output size (default level) ÷ pigz -6 output", sizes["gzip"] / sizes["pigz"], "≤ 1.10"),
        ("gzip production at level 6 speed-up vs `pigz -p2 -6`", t["pigz -p2 -6 (produce)"] / t["ours: produce gzip (level 6, 2 threads)"], "(for reference)"),
        ("gzip output size at level 6 ÷ pigz -6 output", sizes["gzip6"] / sizes["pigz"], "(for reference)"),
        ("zstd production speed-up vs `zstd -T2 -3`", t["zstd -T2 -3 (produce)"] / t["ours: produce zstd (level 3, 2 threads)"], "≥ 1.0×"),
        ("peak RSS applying a 1 GiB gzip layer, above baseline", (peak - base) / 1024, "< 100 MiB"),
    ]
    md = [f"### Layer apply and produce — `big` ({tar_bytes / 1e6:.0f} MB tar, {gz_bytes / 1e6:.0f} MB gzip, "
          f"{zst_bytes / 1e6:.0f} MB zstd; medians of {args.runs} cold runs, interleaved)", "",
          "| operation | median s | MB/s of tar | machine CPU s | VM steal s |", "|---|---|---|---|---|"]
    for name, secs in t.items():
        md.append(f"| {name} | {secs:.3f} | {tar_bytes / secs / 1e6:.0f} | {busy[name]:.2f} | {steal[name]:.2f} |")
    md += ["", "| check | measured | target |", "|---|---|---|"]
    for name, value, target in rows:
        md.append(f"| {name} | {value:.2f} | {target} |")
    md.append(f"\nOutput sizes: ours gzip {sizes['gzip'] / 1e6:.1f} MB (level 6: {sizes['gzip6'] / 1e6:.1f} MB), pigz -6 {sizes['pigz'] / 1e6:.1f} MB, "
              f"ours zstd {sizes['zstd'] / 1e6:.1f} MB, zstd -3 {sizes['zstd-cli'] / 1e6:.1f} MB. "
              f"Peak RSS: baseline {base / 1024:.0f} MiB, applying {peak / 1024:.0f} MiB. VM steal: CPU seconds "
              "the hypervisor gave to other guests during the run (median over the runs, both vCPUs). Machine CPU: "
              "all the work the machine did during the run (user, system, irq and softirq time over both vCPUs, "
              "from /proc/stat), whoever did it; divided by the cores, the least time that work can take here.\n")
    text = "\n".join(md)
    print(text)
    print(f"written to {write_result('layer', text)}  ({machine()})")


if __name__ == "__main__":
    main()
