"""Pull, blob fetch and push of the ``big`` image through a real local registry, beside peers.

Peers measured in the same run: ``skopeo copy`` (+ ``umoci unpack`` for pull plus unpack),
and, where they can run here, ``docker pull``/``docker push`` (Debian's dockerd) and
``ctr image pull`` (containerd). Every run is cold: destination wiped, ``sync``, page cache
dropped, registry blobs re-read. Ratios are peer ÷ ours (above 1: we are faster).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench_layer import drop_caches
from harness import RESULTS, Meter, Usage, machine, run_child, write_result
from images import CACHE, big_layers, many_layers
from peers import Daemons
from pypeers import available as pypeers_available
from pypeers import fetch as pypeers_fetch

import docker_distribution as dd
from docker_distribution.pull import pull_image
from docker_distribution.push import push_image
from docker_distribution.registry import connect
from docker_distribution.registry.auth import AuthConfig
from docker_distribution.registry.service import APIEndpoint
from docker_distribution.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from bed.proxy import Fault, FaultProxy  # noqa: E402
from bed.registry import Registry  # noqa: E402

WORK = CACHE / "rwork"
LINK = 25_000_000  # bytes/s per connection of the throttled link (a WAN or CDN edge, per TCP stream)
ANON = dd.Config(auth_config=AuthConfig())


def sh(cmd: str) -> None:
    run_child(["bash", "-c", cmd])


def registry_inputs(reg: Registry) -> list[Path]:
    return [p for p in reg.storage.rglob("data") if p.is_file()]


class Runs:
    """Every scenario's runs: wall, CPU (client + daemons) and peak RSS, plus the bytes it moved."""

    def __init__(self, runs: int, meter: Meter) -> None:
        self.runs = runs
        self.meter = meter
        self.usage: dict[str, list[Usage]] = {}
        self.moved: dict[str, int] = {}
        self.failed: dict[str, str] = {}  # a peer that could not do a scenario, and why

    def timed(self, name: str, reset: Callable[[], None], run: Callable[[], object], moved: int = 0) -> None:
        usage = []
        for _ in range(self.runs):
            reset()
            try:
                usage.append(self.meter(run))
            except subprocess.CalledProcessError as exc:
                if name.startswith("ours"):
                    raise
                why = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
                self.failed[name] = why[-1][:200] if why else f"exit status {exc.returncode}"
                print(f"  {name:<60} FAILED: {self.failed[name]}", flush=True)
                return
        self.usage[name] = usage
        self.moved[name] = moved
        print(f"  {name:<60} median {self.median(name):7.3f}s  (min {min(self.walls(name)):.3f}, "
              f"max {max(self.walls(name)):.3f})  cpu {self.cpu(name):.2f}s  rss {self.rss(name):.0f} MiB", flush=True)

    def walls(self, name: str) -> list[float]:
        return [u.wall for u in self.usage[name]]

    def median(self, name: str) -> float:
        return statistics.median(self.walls(name))

    def cpu(self, name: str) -> float:
        return statistics.median(u.cpu for u in self.usage[name])

    def rss(self, name: str) -> float:
        return max(u.rss_mib for u in self.usage[name])

    def rss_text(self, name: str) -> str:
        """The peak; for a run inside this process, with the RSS it already had before."""
        base = min(u.base_mib for u in self.usage[name])
        return f"{self.rss(name):.0f}" + (f" ({base:.0f} before)" if base else "")

    def __contains__(self, name: str) -> bool:
        return name in self.usage


def _import(store: Store, tars: list[Path], arch: str = "amd64") -> dd.Digest:
    """An image in ``store`` whose layers are ``tars`` (bottom first); returns its ID."""
    parent = None
    diff_ids = []
    for tar in tars:
        layer = store.layers.register_file(tar, parent)
        parent = layer.chain_id
        diff_ids.append(str(layer.diff_id))
    config = json.dumps({"architecture": arch, "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    return store.images.put(config)


def _layers_bytes(reg: Registry, ref: dd.Reference) -> int:
    repo = connect(ref.trim(), APIEndpoint(url=reg.url), auth_config=AuthConfig())
    return sum(layer["size"] for layer in json.loads(repo.get_manifest(ref.tag or "latest").payload)["layers"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "5")))
    args = ap.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    reg = Registry("bench", WORK / "registry").start()
    daemons = Daemons(Path("/tmp/dd-bench-daemons")).start()
    runs = Runs(args.runs, Meter(daemons.pids))
    timed = runs.timed
    py_why = ""
    sizes: dict[str, int] = {}
    try:
        # the images, imported from deterministic tars and pushed once by us
        src = Store(WORK / "src")
        image_id = _import(src, big_layers())
        many_id = _import(src, many_layers())
        big = dd.parse_normalized_named(f"{reg.host}/bench/big:latest")
        big_zstd = dd.parse_normalized_named(f"{reg.host}/bench/big-zstd:latest")
        many = dd.parse_normalized_named(f"{reg.host}/bench/many:latest")
        for ref, iid, comp in ((big, image_id, "gzip"), (big_zstd, image_id, "zstd"), (many, many_id, "gzip")):
            src.references.add_tag(ref, iid, force=True)
            push_image(ref, src, config=ANON, compression=comp)  # type: ignore[arg-type]
        multi = _multi_arch(src, reg, many_layers())
        repo = connect(big.trim(), APIEndpoint(url=reg.url), auth_config=AuthConfig())
        manifest = json.loads(repo.get_manifest("latest").payload)
        gz_bytes = _layers_bytes(reg, big)
        zst_bytes = _layers_bytes(reg, big_zstd)
        many_bytes = _layers_bytes(reg, many)
        multi_bytes = _layers_bytes(reg, dd.parse_normalized_named(f"{reg.host}/bench/multi:amd64"))
        tar_bytes = sum(p.stat().st_size for p in big_layers())
        print(f"big: 3 layers, {tar_bytes / 1e6:.0f} MB tar, {gz_bytes / 1e6:.0f} MB gzip, {zst_bytes / 1e6:.0f} MB zstd; "
              f"many: 20 layers, {many_bytes / 1e6:.0f} MB gzip")

        dest = WORK / "dest"

        def reset() -> None:
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir()
            drop_caches(registry_inputs(reg))

        def ours_pull(ref: dd.Reference, concurrency: int = 3) -> Callable[[], None]:
            return lambda: pull_image(ref, Store(dest / "s"), config=ANON, max_concurrent_downloads=concurrency)

        timed("ours: pull (layers stored unpacked, as dockerd ends)", reset, ours_pull(big), gz_bytes)

        def ours_pull_unpack() -> None:
            s = Store(dest / "s")
            iid = pull_image(big, s, config=ANON)
            assert iid is not None
            s.unpack(iid, dest / "rootfs")

        timed("ours: pull + unpack to a rootfs", reset, ours_pull_unpack, gz_bytes)
        timed("ours: pull big-zstd", reset, ours_pull(big_zstd), zst_bytes)
        for c in (1, 3, 6):
            timed(f"ours: pull many, {c} concurrent download{'s' if c > 1 else ''}", reset, ours_pull(many, c), many_bytes)
        timed("ours: pull multi (amd64 of a 2-platform index)", reset, ours_pull(multi), multi_bytes)
        timed("skopeo copy docker:// oci: (blobs only)", reset,
              lambda: sh(f"skopeo copy --quiet --src-tls-verify=false docker://{big} oci:{dest}/layout:t"), gz_bytes)
        timed("skopeo copy docker:// oci: many (blobs only)", reset,
              lambda: sh(f"skopeo copy --quiet --src-tls-verify=false docker://{many} oci:{dest}/layout:t"), many_bytes)

        def ours_blobs() -> None:
            """Each layer verified and committed (fsync) to the content store, 3 at once as our pulls do."""
            from concurrent.futures import ThreadPoolExecutor

            s = Store(dest / "s")

            def fetch(layer: dict[str, object]) -> None:
                d = dd.Digest.parse(str(layer["digest"]))
                with s.content.writer(ref=f"layer-{d}") as w, repo.open_blob(d) as resp:
                    for chunk in resp.raw.stream(1 << 20, decode_content=False):
                        w.write(chunk)
                    w.commit(int(str(layer["size"])), d)

            with ThreadPoolExecutor(3) as pool:
                list(pool.map(fetch, manifest["layers"]))

        timed("ours: blobs only, verified into the content store (3 at once)", reset, ours_blobs, gz_bytes)
        py_ok, py_why = pypeers_available()
        if py_ok:
            digests = [layer["digest"] for layer in manifest["layers"]]
            timed("python-dxf pull_blob (verified, 1 MiB chunks)", reset,
                  lambda: pypeers_fetch("dxf", reg.host, "bench/big", digests, dest), gz_bytes)
            timed("oras-py download_blob", reset,
                  lambda: pypeers_fetch("oras", reg.host, "bench/big", digests, dest), gz_bytes)
        if daemons.available:
            def docker_reset(ref: dd.Reference) -> Callable[[], None]:
                def run() -> None:  # every image goes: layers shared with an earlier scenario must not count
                    subprocess.run(["docker", "-H", daemons.docker_sock, "image", "prune", "-a", "-f"], capture_output=True)
                    reset()
                return run

            def ctr_reset(ref: dd.Reference) -> Callable[[], None]:
                def run() -> None:
                    names = subprocess.run(["ctr", "--address", daemons.ctd_sock, "image", "ls", "-q"],
                                           capture_output=True, text=True).stdout.split()
                    if names:
                        subprocess.run(["ctr", "--address", daemons.ctd_sock, "image", "rm", "--sync", *names],
                                       capture_output=True)
                    reset()
                return run

            for ref, name, moved in ((big, "", gz_bytes), (many, " many", many_bytes), (big_zstd, " big-zstd", zst_bytes),
                                     (multi, " multi (amd64 of 2)", multi_bytes)):
                timed(f"docker pull{name} (dockerd, overlay2)", docker_reset(ref),
                      lambda ref=ref: daemons.docker("pull", str(ref)), moved)  # type: ignore[misc]
                timed(f"ctr image pull{name} (containerd, overlayfs)", ctr_reset(ref),
                      lambda ref=ref: daemons.ctr("image", "pull", "--plain-http", str(ref)), moved)  # type: ignore[misc]
        # a link where each connection is slow (per-stream limits): what parallel Range requests are for
        link = FaultProxy(reg.url)
        link.add(Fault(match="/blobs/", method="GET", throttle=LINK, times=10**9))
        slow = dd.parse_normalized_named(f"{link.host}/bench/big:latest")
        try:
            timed(f"ours: pull via a {LINK // 10**6} MB/s-per-connection link", reset, ours_pull(slow), gz_bytes)
            timed("ours: pull via the same link, --parallel-ranges 4", reset,
                  lambda: pull_image(slow, Store(dest / "s"), config=ANON, parallel_ranges=4), gz_bytes)
            timed("skopeo copy docker:// oci: via the same link (blobs only)", reset,
                  lambda: sh(f"skopeo copy --quiet --src-tls-verify=false docker://{slow} oci:{dest}/layout:t"), gz_bytes)
            if daemons.available:
                timed("docker pull via the same link (dockerd)", docker_reset(slow),
                      lambda: daemons.docker("pull", str(slow)), gz_bytes)
        finally:
            link.stop()
        timed("skopeo copy + umoci unpack (pull + unpack)", reset,
              lambda: sh(f"skopeo copy --quiet --src-tls-verify=false docker://{big} oci:{dest}/layout:t && "
                         f"umoci unpack --image {dest}/layout:t {dest}/bundle > /dev/null"), gz_bytes)

        # push, compressing on the fly, into a fresh registry each run (so nothing can be mounted)
        raw = WORK / "raw-tar-layout"
        _raw_layout(src, image_id, raw)
        gz_layout = WORK / "gzip-layout"  # the same image, already compressed (what a copy pushes)
        sh(f"skopeo copy --quiet --src-tls-verify=false docker://{big} oci:{gz_layout}:t")
        target: dict[str, Registry] = {}
        src_files = [p for p in (WORK / "src" / "layers").rglob("*") if p.is_file()]

        def push_reset() -> None:
            if "reg" in target:
                target["reg"].stop()
                shutil.rmtree(target["reg"].workdir, ignore_errors=True)
            target["reg"] = Registry("push-target", WORK / f"push-{time.monotonic_ns()}").start()
            drop_caches(src_files + [p for p in raw.rglob("*") if p.is_file()]
                        + [p for p in gz_layout.rglob("*") if p.is_file()])

        def ours_push(comp: str) -> Callable[[], None]:
            def run() -> None:
                ref = dd.parse_normalized_named(f"{target['reg'].host}/push/app:latest")
                src.references.add_tag(ref, image_id, force=True)
                fresh_meta = Store(WORK / "src")  # same layers; V2 metadata of other registries cannot match
                push_image(ref, fresh_meta, config=ANON, compression=comp)  # type: ignore[arg-type]
                sizes[comp] = _layers_bytes(target["reg"], ref)
            return run

        def skopeo_push() -> None:
            host = target["reg"].host
            sh(f"skopeo copy --quiet --dest-tls-verify=false --dest-compress oci:{raw}:t docker://{host}/push/skopeo:latest")
            m = json.loads(subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                                           f"docker://{host}/push/skopeo:latest"], capture_output=True, check=True).stdout)
            sizes["skopeo"] = sum(layer["size"] for layer in m["layers"])

        timed("ours: push gzip (compress on the fly)", push_reset, ours_push("gzip"), gz_bytes)
        timed("skopeo copy oci:(raw tars) docker:// (pgzip on the fly)", push_reset, skopeo_push, gz_bytes)
        timed("ours: push zstd", push_reset, ours_push("zstd"), zst_bytes)
        timed("ours: push already-compressed blobs (Repository API, 5 at once)", push_reset,
              lambda: _push_layout(gz_layout, target["reg"]), gz_bytes)
        timed("skopeo copy oci:(gzip blobs) docker:// (no recompression)", push_reset,
              lambda: sh(f"skopeo copy --quiet --dest-tls-verify=false oci:{gz_layout}:t "
                         f"docker://{target['reg'].host}/push/pre:latest"), gz_bytes)
        if daemons.available:
            daemons.docker("pull", str(big))

            def docker_push() -> None:
                dest_ref = f"{target['reg'].host}/push/docker:latest"
                daemons.docker("tag", str(big), dest_ref)
                daemons.docker("push", dest_ref)

            timed("docker push (dockerd, Go gzip on the fly)", push_reset, docker_push, gz_bytes)
        if "reg" in target:
            target["reg"].stop()
    finally:
        reg.stop()
        daemons.stop()
    _report(runs, sizes, py_why, daemons.why, tar_bytes, gz_bytes, zst_bytes, many_bytes)


def _multi_arch(store: Store, reg: Registry, tars: list[Path]) -> dd.Reference:
    """``multi``: an OCI index of two images, linux/amd64 (the first half of ``tars``) and
    linux/arm64 (the second half), each pushed by us; returns the index's reference."""
    from docker_distribution.mediatype import OCI_INDEX

    half = len(tars) // 2
    entries = []
    for arch, part in (("amd64", tars[:half]), ("arm64", tars[half:])):
        ref = dd.parse_normalized_named(f"{reg.host}/bench/multi:{arch}")
        store.references.add_tag(ref, _import(store, part, arch), force=True)
        push_image(ref, store, config=ANON)
        raw = connect(ref.trim(), APIEndpoint(url=reg.url), auth_config=AuthConfig()).get_manifest(arch)
        entries.append({"mediaType": raw.media_type, "digest": str(raw.digest), "size": len(raw.payload),
                        "platform": {"architecture": arch, "os": "linux"}})
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    ref = dd.parse_normalized_named(f"{reg.host}/bench/multi:latest")
    repo = connect(ref.trim(), APIEndpoint(url=reg.url), auth_config=AuthConfig(), actions=("push", "pull"))
    repo.put_manifest("latest", index, OCI_INDEX)
    return ref


def _push_layout(layout: Path, reg: Registry) -> None:
    """Push an OCI layout's blobs as they are (no recompression) and its manifest, through the
    public Repository API: what a copy between registries does."""
    from concurrent.futures import ThreadPoolExecutor

    from docker_distribution.registry import BlobUpload

    ref = dd.parse_normalized_named(f"{reg.host}/push/pre-ours:latest")
    repo = connect(ref.trim(), APIEndpoint(url=reg.url), auth_config=AuthConfig(), actions=("push", "pull"))
    index = json.loads((layout / "index.json").read_text())
    mdesc = index["manifests"][0]
    blob = lambda d: layout / "blobs" / d.split(":")[0] / d.split(":")[1]  # noqa: E731
    manifest_bytes = blob(mdesc["digest"]).read_bytes()
    m = json.loads(manifest_bytes)

    def up(desc: dict[str, object]) -> None:
        d = dd.Digest.parse(str(desc["digest"]))
        session = repo.start_upload()
        assert isinstance(session, BlobUpload)
        with open(blob(str(d)), "rb") as f:
            session.write(iter(lambda: f.read(1 << 20), b""))
        session.commit(d)

    with ThreadPoolExecutor(5) as pool:
        list(pool.map(up, [m["config"], *m["layers"]]))
    repo.put_manifest("latest", manifest_bytes, mdesc["mediaType"])


def _report(runs: Runs, sizes: dict[str, int], py_why: str, daemons_why: str, tar_bytes: int, gz_bytes: int,
            zst_bytes: int, many_bytes: int) -> None:
    med = runs.median
    ratios: list[tuple[str, str, str]] = []

    def ratio(label: str, peer: str, ours: str) -> None:
        if peer in runs and ours in runs:
            ratios.append((label, f"{med(peer) / med(ours):.2f}×", f"{runs.cpu(peer) / runs.cpu(ours):.2f}×"))

    pull = "ours: pull (layers stored unpacked, as dockerd ends)"
    ratio("pull: dockerd ÷ ours", "docker pull (dockerd, overlay2)", pull)
    ratio("pull: containerd ÷ ours", "ctr image pull (containerd, overlayfs)", pull)
    ratio("pull many: dockerd ÷ ours", "docker pull many (dockerd, overlay2)", "ours: pull many, 3 concurrent downloads")
    ratio("pull many: containerd ÷ ours", "ctr image pull many (containerd, overlayfs)", "ours: pull many, 3 concurrent downloads")
    ratio("pull big-zstd: dockerd ÷ ours", "docker pull big-zstd (dockerd, overlay2)", "ours: pull big-zstd")
    ratio("pull big-zstd: containerd ÷ ours", "ctr image pull big-zstd (containerd, overlayfs)", "ours: pull big-zstd")
    ratio("big-zstd pull faster than big (gzip) pull", pull, "ours: pull big-zstd")
    ratio("pull multi: dockerd ÷ ours", "docker pull multi (amd64 of 2) (dockerd, overlay2)", "ours: pull multi (amd64 of a 2-platform index)")
    ratio("pull multi: containerd ÷ ours", "ctr image pull multi (amd64 of 2) (containerd, overlayfs)", "ours: pull multi (amd64 of a 2-platform index)")
    ratio("pull + unpack: skopeo+umoci ÷ ours", "skopeo copy + umoci unpack (pull + unpack)", "ours: pull + unpack to a rootfs")
    ratio("blobs-only fetch: skopeo ÷ ours", "skopeo copy docker:// oci: (blobs only)", "ours: blobs only, verified into the content store (3 at once)")
    ratio("blobs-only fetch: python-dxf ÷ ours", "python-dxf pull_blob (verified, 1 MiB chunks)", "ours: blobs only, verified into the content store (3 at once)")
    ratio("blobs-only fetch: oras-py ÷ ours", "oras-py download_blob", "ours: blobs only, verified into the content store (3 at once)")
    ratio("many, blobs only (skopeo) ÷ ours pull many", "skopeo copy docker:// oci: many (blobs only)", "ours: pull many, 3 concurrent downloads")
    ratio("gzip push: skopeo ÷ ours", "skopeo copy oci:(raw tars) docker:// (pgzip on the fly)", "ours: push gzip (compress on the fly)")
    ratio("gzip push: dockerd ÷ ours", "docker push (dockerd, Go gzip on the fly)", "ours: push gzip (compress on the fly)")
    ratio("zstd push vs skopeo gzip push: skopeo ÷ ours", "skopeo copy oci:(raw tars) docker:// (pgzip on the fly)", "ours: push zstd")
    ratio("push of compressed blobs: skopeo ÷ ours", "skopeo copy oci:(gzip blobs) docker:// (no recompression)",
          "ours: push already-compressed blobs (Repository API, 5 at once)")
    ratio("slow link: one stream per layer ÷ 4 ranges per layer", f"ours: pull via a {LINK // 10**6} MB/s-per-connection link",
          "ours: pull via the same link, --parallel-ranges 4")
    ratio("slow link: dockerd ÷ ours with 4 ranges", "docker pull via the same link (dockerd)",
          "ours: pull via the same link, --parallel-ranges 4")
    ratio("slow link: skopeo (blobs only) ÷ ours with 4 ranges", "skopeo copy docker:// oci: via the same link (blobs only)",
          "ours: pull via the same link, --parallel-ranges 4")
    ratio("pull many: concurrency 1 ÷ 3", "ours: pull many, 1 concurrent download", "ours: pull many, 3 concurrent downloads")
    ratio("pull many: concurrency 6 ÷ 3", "ours: pull many, 6 concurrent downloads", "ours: pull many, 3 concurrent downloads")

    md = [f"### Registry scenarios — `big` ({tar_bytes / 1e6:.0f} MB tar, {gz_bytes / 1e6:.0f} MB gzip, "
          f"{zst_bytes / 1e6:.0f} MB zstd) and `many` (20 layers, {many_bytes / 1e6:.0f} MB gzip); "
          f"medians of {runs.runs} cold runs", "",
          "| scenario | wall s (median) | min–max | CPU s (client + daemons) | peak RSS MiB | MB moved | MB/s |",
          "|---|---|---|---|---|---|---|"]
    for name in runs.usage:
        w = runs.walls(name)
        moved = runs.moved[name]
        md.append(f"| {name} | {med(name):.3f} | {min(w):.3f}–{max(w):.3f} | {runs.cpu(name):.2f} | "
                  f"{runs.rss_text(name)} | {moved / 1e6:.0f} | {moved / med(name) / 1e6:.0f} |")
    md += ["", "| ratio (peer ÷ ours; above 1: we are faster / use less) | wall | CPU |", "|---|---|---|"]
    md += [f"| {n} | **{w}** | {c} |" for n, w, c in ratios]
    for name, why in runs.failed.items():
        md.append(f"\n{name}: could not run here — {why}\n")
    if py_why:
        md.append(f"\npython-dxf and oras-py could not run: {py_why}\n")
    if daemons_why:
        md.append(f"\ndockerd and containerd could not run: {daemons_why}.\n")
    md.append(f"\nPushed bytes: ours gzip {sizes['gzip'] / 1e6:.1f} MB, skopeo (pgzip) {sizes['skopeo'] / 1e6:.1f} MB "
              f"(ratio {sizes['gzip'] / sizes['skopeo']:.3f}), ours zstd {sizes['zstd'] / 1e6:.1f} MB.")
    md.append("\nPeak RSS: ours runs inside the benchmark's own Python process, so its figure is that process's "
              "peak, shown with the RSS it had just before the run (the harness, the imported package, what "
              "earlier scenarios left in Python's heap); the difference is what the run itself took. Peers are "
              "sampled as their own process trees; dockerd and containerd add their daemons' peaks. CPU is "
              "user + system time of the same set. The throttled link is a proxy thread inside the benchmark's "
              "process, so its CPU counts against ours and not against the peers.")
    text = "\n".join(md)
    print(text)
    print(f"written to {write_result('registry', text)}  ({machine()})")
    data = {name: {"wall": runs.walls(name), "cpu": [u.cpu for u in runs.usage[name]],
                   "rss_mib": [u.rss_mib for u in runs.usage[name]], "moved": runs.moved[name]} for name in runs.usage}
    (RESULTS / "registry.json").write_text(json.dumps(data, indent=1))
    chart(RESULTS / "registry.json", RESULTS / "registry.png")


def chart(data: Path, png: Path) -> None:
    """A bar chart of the median wall times (matplotlib, from the peers' venv)."""
    from pypeers import PY

    script = """
import json, statistics, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
data = json.load(open(sys.argv[1]))
names = list(data)
med = [statistics.median(data[n]["wall"]) for n in names]
colors = ["#1f77b4" if n.startswith("ours") else "#bbbbbb" for n in names]
fig, ax = plt.subplots(figsize=(11, 0.32 * len(names) + 1.2))
ax.barh(names[::-1], med[::-1], color=colors[::-1])
for i, v in enumerate(med[::-1]):
    ax.text(v, i, f" {v:.2f}s", va="center", fontsize=7)
ax.set_xlabel("median wall time, s (lower is better); blue: ours")
ax.tick_params(axis="y", labelsize=7)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110, bbox_inches="tight")
"""
    try:
        subprocess.run([str(PY), "-m", "pip", "install", "-q", "matplotlib"], check=True, capture_output=True)
        subprocess.run([str(PY), "-c", script, str(data), str(png)], check=True, capture_output=True)
        print(f"chart written to {png}")
    except (subprocess.CalledProcessError, OSError) as exc:
        print(f"no chart: {exc}")


def _raw_layout(store: Store, image_id: dd.Digest, layout: Path) -> None:
    """An OCI layout of the image with uncompressed tar layers (the input skopeo compresses)."""
    from docker_distribution.mediatype import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST

    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    layers = []
    cid = store.image_chain_id(image_id)
    assert cid is not None
    for info in store.layers.chain(cid):
        reader = store.layers.get(info.chain_id).tar_stream()
        tmp = blobs / "tmp"
        with open(tmp, "wb") as f:
            while chunk := reader.read(1 << 22):
                f.write(chunk)
        tmp.rename(blobs / info.diff_id.encoded)
        layers.append({"mediaType": OCI_LAYER, "digest": str(info.diff_id), "size": (blobs / info.diff_id.encoded).stat().st_size})
    config = store.images.get(image_id)
    (blobs / image_id.encoded).write_bytes(config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": OCI_CONFIG,
                           "digest": str(image_id), "size": len(config)}, "layers": layers}).encode()
    md = dd.digest_bytes(manifest)
    (blobs / md.encoded).write_bytes(manifest)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": str(md), "size": len(manifest),
         "annotations": {"org.opencontainers.image.ref.name": "t"}}]}))


if __name__ == "__main__":
    main()
