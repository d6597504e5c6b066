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
from images import SCRATCH, big_layers, many_layers
from peers import Daemons
from pypeers import available as pypeers_available
from pypeers import fetch as pypeers_fetch

import docker_distribution as dd
from docker_distribution.pull import pull_image
from docker_distribution.push import push_image
from docker_distribution.registry import Repository, connect
from docker_distribution.registry.auth import AuthConfig
from docker_distribution.registry.service import APIEndpoint
from docker_distribution.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from bed.proxy import Fault, FaultProxy  # noqa: E402
from bed.registry import Registry  # noqa: E402

WORK = SCRATCH / "rwork"
LINK = 25_000_000  # bytes/s per connection of the throttled link (a WAN or CDN edge, per TCP stream)
ANON = dd.Config(auth_config=AuthConfig())
BLOBS_FSYNCED = "ours: blobs only, verified into the content store (3 at once)"
BLOBS_NOT_FSYNCED = "ours: blobs only, not fsynced (durable_blobs=False)"
PUSH_COLD = "ours: push gzip, sources not in the page cache"
SKOPEO_PUSH_COLD = "skopeo copy oci:(raw tars) docker:// (pgzip), sources not in the page cache"
ZSTD_ALONE = "floor: zstd -3, one worker, of the 3 tars to /dev/null (compression alone)"
ZSTD_LEVEL_1 = "ours: push zstd, level 1"


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
        self.queue: list[tuple[str, Callable[[], None], Callable[[], object], int]] = []

    def timed(self, name: str, reset: Callable[[], None], run: Callable[[], object], moved: int = 0) -> None:
        """Queue a scenario; :meth:`flush` runs the queue."""
        self.queue.append((name, reset, run, moved))

    def flush(self) -> None:
        """Run the queued scenarios in rounds, each once per round, so drift in the machine's speed
        during the run weighs on ours and the peers alike."""
        usage: dict[str, list[Usage]] = {name: [] for name, _, _, _ in self.queue}
        for _ in range(self.runs):
            for name, reset, run, _ in self.queue:
                if name in self.failed:
                    continue
                reset()
                try:
                    usage[name].append(self.meter(run))
                except subprocess.CalledProcessError as exc:
                    if name.startswith("ours"):
                        raise
                    why = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
                    self.failed[name] = why[-1][:200] if why else f"exit status {exc.returncode}"
                    print(f"  {name:<60} FAILED: {self.failed[name]}", flush=True)
        for name, _, _, moved in self.queue:
            if name in self.failed:
                continue
            self.usage[name] = usage[name]
            self.moved[name] = moved
            print(f"  {name:<60} median {self.median(name):7.3f}s  (min {min(self.walls(name)):.3f}, "
                  f"max {max(self.walls(name)):.3f})  cpu {self.cpu(name):.2f}s  registry cpu "
                  f"{self.registry_cpu(name):.2f}s  machine cpu {self.busy(name):.2f}s  steal {self.steal(name):.2f}s  "
                  f"rss {self.rss(name):.0f} MiB", flush=True)
        self.queue.clear()

    def walls(self, name: str) -> list[float]:
        return [u.wall for u in self.usage[name]]

    def median(self, name: str) -> float:
        return statistics.median(self.walls(name))

    def cpu(self, name: str) -> float:
        return statistics.median(u.cpu for u in self.usage[name])

    def steal(self, name: str) -> float:
        return statistics.median(u.steal for u in self.usage[name])

    def registry_cpu(self, name: str) -> float:
        return statistics.median(u.registry_cpu for u in self.usage[name])

    def busy(self, name: str) -> float:
        return statistics.median(u.busy for u in self.usage[name])

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
    daemons = Daemons(Path("/tmp/dd-bench-daemons"), data=SCRATCH / "daemons").start()
    target: dict[str, Registry] = {}  # the push scenarios' registry, fresh for each run

    def registry_pids() -> list[int]:
        return [r.process.pid for r in (reg, target.get("reg")) if r is not None and r.process is not None]

    runs = Runs(args.runs, Meter(daemons.pids, registry_pids))
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

        # the machine's limits, in the same run: fetching, hashing, decoding and extracting `big`
        blob_files = [reg.storage / "docker/registry/v2/blobs/sha256" / d["digest"][7:9] / d["digest"][7:] / "data"
                      for d in json.loads(repo.get_manifest("latest").payload)["layers"]]
        zrepo = connect(big_zstd.trim(), APIEndpoint(url=reg.url), auth_config=AuthConfig())
        zblob_files = [reg.storage / "docker/registry/v2/blobs/sha256" / d["digest"][7:9] / d["digest"][7:] / "data"
                       for d in json.loads(zrepo.get_manifest("latest").payload)["layers"]]
        urls = " ".join(f"-o /dev/null {reg.url}/v2/bench/big/blobs/{d['digest']}"
                        for d in json.loads(repo.get_manifest("latest").payload)["layers"])
        names = " ".join(str(p) for p in blob_files)
        timed("floor: curl --parallel, the 3 blobs to /dev/null (loopback HTTP)", reset,
              lambda: sh(f"curl -sf --parallel {urls}"), gz_bytes)
        timed("floor: sha256sum of the 3 gzip blobs", reset, lambda: sh(f"sha256sum {names} > /dev/null"), gz_bytes)
        timed("floor: pigz -dc of the 3 gzip blobs", reset, lambda: sh(f"cat {names} | pigz -dc > /dev/null"), gz_bytes)
        timed("floor: zstd -dc of the 3 zstd blobs", reset,
              lambda: sh(f"cat {' '.join(str(p) for p in zblob_files)} | zstd -dc > /dev/null"), zst_bytes)
        timed("floor: dd conv=fsync of the 3 gzip blobs, at once (durable disk write)", reset,
              lambda: sh(" ".join(f"dd if={p} of={dest}/blob{i} bs=1M conv=fsync status=none &"
                                  for i, p in enumerate(blob_files)) + " wait"), gz_bytes)
        tars = " ".join(str(p) for p in big_layers())
        def reset_tars() -> None:
            reset()
            drop_caches(big_layers())

        timed("floor: tar -xf of the 3 uncompressed tars", reset_tars,
              lambda: sh(f"for t in {tars}; do tar -xf $t -C {dest}; done"), tar_bytes)

        def ours_pull(ref: dd.Reference, concurrency: int = 3) -> Callable[[], None]:
            def run() -> None:
                pull_image(ref, Store(dest / "s"), config=ANON, max_concurrent_downloads=concurrency)
            return run

        timed("ours: pull (layers stored unpacked, as dockerd ends)", reset, ours_pull(big), gz_bytes)

        timed("ours: pull big-zstd", reset, ours_pull(big_zstd), zst_bytes)
        for c in (1, 3, 6):
            timed(f"ours: pull many, {c} concurrent download{'s' if c > 1 else ''}", reset, ours_pull(many, c), many_bytes)
        timed("ours: pull multi (amd64 of a 2-platform index)", reset, ours_pull(multi), multi_bytes)

        def ours_pull_unpack(ref: dd.Reference) -> Callable[[], None]:
            def run() -> None:
                s = Store(dest / "s")
                iid = pull_image(ref, s, config=ANON)
                assert iid is not None
                s.unpack(iid, dest / "rootfs")
            return run

        def ours_blobs(r: Repository, layers: list[dict[str, object]], durable: bool = True) -> Callable[[], None]:
            """Each layer verified and committed to the content store (fsynced unless ``durable``
            is off), 3 at once as our pulls do."""
            from concurrent.futures import ThreadPoolExecutor

            def run() -> None:
                s = Store(dest / "s", durable_blobs=durable)

                def fetch(layer: dict[str, object]) -> None:
                    d = dd.Digest.parse(str(layer["digest"]))
                    with s.content.writer(ref=f"layer-{d}") as w, r.open_blob(d) as resp:
                        for chunk in resp.raw.stream(1 << 20, decode_content=False):
                            w.write(chunk)
                        w.commit(int(str(layer["size"])), d)

                with ThreadPoolExecutor(3) as pool:
                    list(pool.map(fetch, layers))
            return run

        py_ok, py_why = pypeers_available()
        for ref, name, moved in ((big, "", gz_bytes), (many, " — many", many_bytes), (big_zstd, " — big-zstd", zst_bytes)):
            r = connect(ref.trim(), APIEndpoint(url=reg.url), auth_config=AuthConfig())
            layers = json.loads(r.get_manifest("latest").payload)["layers"]
            timed(f"ours: pull + unpack to a rootfs{name}", reset, ours_pull_unpack(ref), moved)
            timed(f"skopeo copy + umoci unpack (pull + unpack){name}", reset,
                  lambda ref=ref: sh(f"skopeo copy --quiet --src-tls-verify=false docker://{ref} oci:{dest}/layout:t && "  # type: ignore[misc]
                                     f"umoci unpack --image {dest}/layout:t {dest}/bundle > /dev/null"), moved)
            timed(f"{BLOBS_FSYNCED}{name}", reset,
                  ours_blobs(r, layers), moved)
            timed(f"{BLOBS_NOT_FSYNCED}{name}", reset,
                  ours_blobs(r, layers, durable=False), moved)
            timed(f"skopeo copy docker:// oci: (blobs only){name}", reset,
                  lambda ref=ref: sh(f"skopeo copy --quiet --src-tls-verify=false docker://{ref} oci:{dest}/layout:t"),  # type: ignore[misc]
                  moved)
            if py_ok:
                digests = [str(layer["digest"]) for layer in layers]
                path = ref.path
                timed(f"python-dxf pull_blob (verified, 1 MiB chunks){name}", reset,
                      lambda digests=digests, path=path: pypeers_fetch("dxf", reg.host, path, digests, dest), moved)  # type: ignore[misc]
                timed(f"oras-py download_blob{name}", reset,
                      lambda digests=digests, path=path: pypeers_fetch("oras", reg.host, path, digests, dest), moved)  # type: ignore[misc]
        if daemons.available:
            def docker_reset() -> None:  # every image goes: layers shared with an earlier scenario must not count
                subprocess.run(["docker", "-H", daemons.docker_sock, "image", "prune", "-a", "-f"], capture_output=True)
                reset()

            def ctr_reset() -> None:
                names = subprocess.run(["ctr", "--address", daemons.ctd_sock, "image", "ls", "-q"],
                                       capture_output=True, text=True).stdout.split()
                if names:
                    subprocess.run(["ctr", "--address", daemons.ctd_sock, "image", "rm", "--sync", *names],
                                   capture_output=True)
                reset()

            for ref, name, moved in ((big, "", gz_bytes), (many, " many", many_bytes), (big_zstd, " big-zstd", zst_bytes),
                                     (multi, " multi (amd64 of 2)", multi_bytes)):
                timed(f"docker pull{name} (dockerd, overlay2)", docker_reset,
                      lambda ref=ref: daemons.docker("pull", str(ref)), moved)  # type: ignore[misc]
                timed(f"ctr image pull{name} (containerd, overlayfs)", ctr_reset,
                      lambda ref=ref: daemons.ctr("image", "pull", "--plain-http", str(ref)), moved)  # type: ignore[misc]
        runs.flush()  # everything pulled from the plain registry, interleaved
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
                timed("docker pull via the same link (dockerd)", docker_reset,
                      lambda: daemons.docker("pull", str(slow)), gz_bytes)
            runs.flush()
        finally:
            link.stop()

        # push, compressing on the fly, into a fresh registry each run (so nothing can be mounted)
        src_files = [p for p in (WORK / "src" / "layers").rglob("*") if p.is_file()]
        layouts: list[Path] = []

        def push_reset(warm: bool = True) -> None:
            """A fresh target registry; the sources read back into the page cache (warm), or not:
            the store and the layouts only on disk, as after a reboot or a long time idle."""
            if "reg" in target:
                target["reg"].stop()
                shutil.rmtree(target["reg"].workdir, ignore_errors=True)
            target["reg"] = Registry("push-target", WORK / f"push-{time.monotonic_ns()}").start()
            drop_caches(src_files + [p for lay in layouts for p in lay.rglob("*") if p.is_file()] if warm else [])

        def warm_tars() -> None:
            drop_caches(big_layers())

        def ours_push(iid: dd.Digest, comp: str, key: str, level: int | None = None) -> Callable[[], None]:
            def run() -> None:
                ref = dd.parse_normalized_named(f"{target['reg'].host}/push/app:latest")
                src.references.add_tag(ref, iid, force=True)
                fresh_meta = Store(WORK / "src")  # same layers; V2 metadata of other registries cannot match
                push_image(ref, fresh_meta, config=ANON, compression=comp, compression_level=level)  # type: ignore[arg-type]
                sizes[key] = _layers_bytes(target["reg"], ref)
            return run

        def skopeo_push(raw: Path, fmt: str, key: str) -> Callable[[], None]:
            def run() -> None:
                host = target["reg"].host
                sh(f"skopeo copy --quiet --dest-tls-verify=false --dest-compress --dest-compress-format {fmt} "
                   f"oci:{raw}:t docker://{host}/push/skopeo:latest")
                # measured as ours is (one manifest GET from this process), not with a second skopeo process
                sizes[key] = _layers_bytes(target["reg"], dd.parse_normalized_named(f"{host}/push/skopeo:latest"))
            return run

        for iid, ref, name, moved, zmoved in ((image_id, big, "", gz_bytes, zst_bytes),
                                              (many_id, many, " many", many_bytes, many_bytes)):
            tag = name.strip() or "big"
            raw = WORK / f"raw-tar-layout-{tag}"
            _raw_layout(src, iid, raw)
            gz_layout = WORK / f"gzip-layout-{tag}"  # the same image, already compressed (what a copy pushes)
            sh(f"skopeo copy --quiet --src-tls-verify=false docker://{ref} oci:{gz_layout}:t")
            layouts[:] = [raw, gz_layout]
            timed(f"ours: push{name} gzip (compress on the fly)", push_reset, ours_push(iid, "gzip", f"gzip{name}"), moved)
            timed(f"skopeo copy oci:(raw tars) docker://{name} (pgzip on the fly)", push_reset,
                  skopeo_push(raw, "gzip", f"skopeo{name}"), moved)
            if not name:
                # sources not in the page cache: our diffs are 38k small files, skopeo's one tar each
                timed(PUSH_COLD, lambda: push_reset(warm=False), ours_push(iid, "gzip", "gzip-cold"), moved)
                timed(SKOPEO_PUSH_COLD, lambda: push_reset(warm=False), skopeo_push(raw, "gzip", "skopeo-cold"), moved)
                # level-3 compression alone, in one worker (the least CPU it takes): with the registry's
                # CPU in our zstd push, the work no level-3 zstd push on these 2 cores can avoid
                timed(ZSTD_ALONE, warm_tars, lambda: sh(" && ".join(
                    f"zstd -q -T1 -3 -c {t} > /dev/null" for t in big_layers())), 0)
            timed(f"ours: push{name} zstd", push_reset, ours_push(iid, "zstd", f"zstd{name}"), zmoved)
            if not name:  # the speed a lower level buys (the default stays 3, as zstd's, containerd's and skopeo's)
                timed(ZSTD_LEVEL_1, push_reset, ours_push(iid, "zstd", "zstd-1", 1), zmoved)
            timed(f"skopeo copy oci:(raw tars) docker://{name}, zstd on the fly", push_reset,
                  skopeo_push(raw, "zstd", f"skopeo-zstd{name}"), zmoved)
            timed(f"ours: push{name} already-compressed blobs (Repository API, 5 at once)", push_reset,
                  lambda lay=gz_layout: _push_layout(lay, target["reg"]), moved)  # type: ignore[misc]
            timed(f"skopeo copy oci:(gzip blobs) docker://{name} (no recompression)", push_reset,
                  lambda lay=gz_layout: sh(f"skopeo copy --quiet --dest-tls-verify=false oci:{lay}:t "  # type: ignore[misc]
                                           f"docker://{target['reg'].host}/push/pre:latest"), moved)
            if daemons.available:
                daemons.docker("pull", str(ref))

                def docker_push(ref: dd.Reference = ref) -> None:
                    dest_ref = f"{target['reg'].host}/push/docker:latest"
                    daemons.docker("tag", str(ref), dest_ref)
                    daemons.docker("push", dest_ref)

                timed(f"docker push{name} (dockerd, Go gzip on the fly)", push_reset, docker_push, moved)
            runs.flush()  # this image's pushes, interleaved (the layouts above are this image's)
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
    def blob(d: str) -> Path:
        return layout / "blobs" / d.split(":")[0] / d.split(":")[1]
    manifest_bytes = blob(mdesc["digest"]).read_bytes()
    m = json.loads(manifest_bytes)

    def up(desc: dict[str, object]) -> None:
        d = dd.Digest.parse(str(desc["digest"]))
        session = repo.start_upload()
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
    for v in ("", " — many", " — big-zstd"):
        ratio(f"pull + unpack{v}: skopeo+umoci ÷ ours", f"skopeo copy + umoci unpack (pull + unpack){v}",
              f"ours: pull + unpack to a rootfs{v}")
        # like for like: skopeo fsyncs each blob it writes, python-dxf and oras-py do not
        for peer, label, ours_row in (
                ("skopeo copy docker:// oci: (blobs only)", "skopeo (both fsync)", BLOBS_FSYNCED),
                ("python-dxf pull_blob (verified, 1 MiB chunks)", "python-dxf (neither fsyncs)", BLOBS_NOT_FSYNCED),
                ("oras-py download_blob", "oras-py (neither fsyncs)", BLOBS_NOT_FSYNCED)):
            ratio(f"blobs-only fetch{v}: {label} ÷ ours", f"{peer}{v}", f"{ours_row}{v}")
    ratio("gzip push: skopeo ÷ ours", "skopeo copy oci:(raw tars) docker:// (pgzip on the fly)", "ours: push gzip (compress on the fly)")
    ratio("gzip push, sources not in the page cache: skopeo ÷ ours", SKOPEO_PUSH_COLD, PUSH_COLD)
    ratio("gzip push: dockerd ÷ ours", "docker push (dockerd, Go gzip on the fly)", "ours: push gzip (compress on the fly)")
    ratio("zstd push vs skopeo gzip push: skopeo ÷ ours", "skopeo copy oci:(raw tars) docker:// (pgzip on the fly)", "ours: push zstd")
    ratio("zstd push at level 1 vs skopeo gzip push: skopeo ÷ ours", "skopeo copy oci:(raw tars) docker:// (pgzip on the fly)",
          ZSTD_LEVEL_1)
    ratio("push of compressed blobs: skopeo ÷ ours", "skopeo copy oci:(gzip blobs) docker:// (no recompression)",
          "ours: push already-compressed blobs (Repository API, 5 at once)")
    ratio("slow link: one stream per layer ÷ 4 ranges per layer", f"ours: pull via a {LINK // 10**6} MB/s-per-connection link",
          "ours: pull via the same link, --parallel-ranges 4")
    ratio("slow link: dockerd ÷ ours with 4 ranges", "docker pull via the same link (dockerd)",
          "ours: pull via the same link, --parallel-ranges 4")
    ratio("slow link: skopeo (blobs only) ÷ ours with 4 ranges", "skopeo copy docker:// oci: via the same link (blobs only)",
          "ours: pull via the same link, --parallel-ranges 4")
    ratio("push many gzip: skopeo ÷ ours", "skopeo copy oci:(raw tars) docker:// many (pgzip on the fly)", "ours: push many gzip (compress on the fly)")
    ratio("push many gzip: dockerd ÷ ours", "docker push many (dockerd, Go gzip on the fly)", "ours: push many gzip (compress on the fly)")
    ratio("push zstd: skopeo (zstd) ÷ ours", "skopeo copy oci:(raw tars) docker://, zstd on the fly", "ours: push zstd")
    ratio("push many zstd: skopeo (zstd) ÷ ours", "skopeo copy oci:(raw tars) docker:// many, zstd on the fly", "ours: push many zstd")
    ratio("push many compressed blobs: skopeo ÷ ours", "skopeo copy oci:(gzip blobs) docker:// many (no recompression)",
          "ours: push many already-compressed blobs (Repository API, 5 at once)")
    ratio("pull many: concurrency 1 ÷ 3", "ours: pull many, 1 concurrent download", "ours: pull many, 3 concurrent downloads")
    ratio("pull many: concurrency 6 ÷ 3", "ours: pull many, 6 concurrent downloads", "ours: pull many, 3 concurrent downloads")

    md = [f"### Registry scenarios — `big` ({tar_bytes / 1e6:.0f} MB tar, {gz_bytes / 1e6:.0f} MB gzip, "
          f"{zst_bytes / 1e6:.0f} MB zstd) and `many` (20 layers, {many_bytes / 1e6:.0f} MB gzip); "
          f"medians of {runs.runs} cold runs, interleaved", "",
          "| scenario | wall s (median) | min–max | CPU s (client + daemons) | registry CPU s | machine CPU s | "
          "VM steal s | peak RSS MiB | MB moved | MB/s |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for name in runs.usage:
        w = runs.walls(name)
        moved = runs.moved[name]
        md.append(f"| {name} | {med(name):.3f} | {min(w):.3f}–{max(w):.3f} | {runs.cpu(name):.2f} | "
                  f"{runs.registry_cpu(name):.2f} | {runs.busy(name):.2f} | "
                  f"{runs.steal(name):.2f} | {runs.rss_text(name)} | {moved / 1e6:.0f} | {moved / med(name) / 1e6:.0f} |")
    md += ["", "| ratio (peer ÷ ours; above 1: we are faster / use less) | wall | CPU |", "|---|---|---|"]
    md += [f"| {n} | **{w}** | {c} |" for n, w, c in ratios]
    floors = ["floor: curl --parallel, the 3 blobs to /dev/null (loopback HTTP)", "floor: pigz -dc of the 3 gzip blobs",
              "floor: tar -xf of the 3 uncompressed tars"]
    if all(f in runs for f in floors):
        floor = max(med(f) for f in floors)
        zfloor = max(med(f) for f in [floors[0], "floor: zstd -dc of the 3 zstd blobs", floors[2]])
        md += ["", "| how close to the machine's limit (ours ÷ floor; 1 is the limit) | value | floor |", "|---|---|---|",
               f"| pull ÷ max(fetch, pigz decode, tar -xf) | **{med(pull) / floor:.2f}×** | {floor:.3f} s |",
               f"| pull big-zstd ÷ max(fetch, zstd decode, tar -xf) | **{med('ours: pull big-zstd') / zfloor:.2f}×** | {zfloor:.3f} s |",
               f"| blobs only, not fsynced ÷ fetch | **{med(BLOBS_NOT_FSYNCED) / med(floors[0]):.2f}×** | "
               f"{med(floors[0]):.3f} s |"]
        durable = "floor: dd conv=fsync of the 3 gzip blobs, at once (durable disk write)"
        if durable in runs:
            bfloor = max(med(floors[0]), med(durable))
            md.append(f"| blobs only, fsynced ÷ max(fetch, durable disk write) | "
                      f"**{med(BLOBS_FSYNCED) / bfloor:.2f}×** | {bfloor:.3f} s |")
        zpush, skopeo_gz = "ours: push zstd", "skopeo copy oci:(raw tars) docker:// (pgzip on the fly)"
        if all(n in runs for n in (ZSTD_ALONE, zpush, skopeo_gz)):
            # work no level-3 zstd push can skip, spread perfectly over the cores: the compression
            # (in one worker, its cheapest) and the registry receiving and hashing the result
            cores = os.cpu_count() or 1
            zcpu = runs.cpu(ZSTD_ALONE) + runs.registry_cpu(zpush)
            zfloor = zcpu / cores
            md += [f"| push zstd ÷ its CPU floor: (CPU of level-3 compression alone, {runs.cpu(ZSTD_ALONE):.2f} s, + the "
                   f"registry's CPU in our push, {runs.registry_cpu(zpush):.2f} s) ÷ {cores} cores | "
                   f"**{med(zpush) / zfloor:.2f}×** | {zfloor:.3f} s |",
                   f"| the most any level-3 zstd push could reach against skopeo's gzip push here (skopeo ÷ that floor; "
                   f"the target is 3×) | **{med(skopeo_gz) / zfloor:.2f}×** | {zfloor:.3f} s |"]
            # the same question from the other side: the work our push made the whole machine do
            # (ours, the registry, the kernel's threads), spread perfectly over the cores
            for push in (zpush, ZSTD_LEVEL_1):
                if push in runs:
                    wfloor = runs.busy(push) / cores
                    md.append(f"| {push}: its wall time ÷ (the machine's CPU during it, {runs.busy(push):.2f} s, ÷ {cores} "
                              f"cores); skopeo's gzip push ÷ that floor | **{med(push) / wfloor:.2f}×**; "
                              f"**{med(skopeo_gz) / wfloor:.2f}×** | {wfloor:.3f} s |")
    for name, why in runs.failed.items():
        md.append(f"\n{name}: could not run here — {why}\n")
    if py_why:
        md.append(f"\npython-dxf and oras-py could not run: {py_why}\n")
    if daemons_why:
        md.append(f"\ndockerd and containerd could not run: {daemons_why}.\n")
    md.append("\nPushed bytes: " + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sizes.items())
              + f" (ours gzip ÷ skopeo pgzip: {sizes['gzip'] / sizes['skopeo']:.3f}).")
    md.append("\nPeak RSS: ours runs inside the benchmark's own Python process, so its figure is that process's "
              "peak, shown with the RSS it had just before the run (the harness, the imported package, what "
              "earlier scenarios left in Python's heap); the difference is what the run itself took. Peers are "
              "sampled as their own process trees; dockerd and containerd add their daemons' peaks. CPU is "
              "user + system time of the same set. The throttled link is a proxy thread inside the benchmark's "
              "process, so its CPU counts against ours and not against the peers. python-dxf and oras-py run in "
              "a process of their own and time their fetch themselves, after Python has started and imported "
              "them (about 0.3 s here), as ours runs with its imports long done. VM steal is the CPU time the "
              "hypervisor gave to other guests during the run (the median over the runs, summed over both "
              "vCPUs, from /proc/stat): capacity the run did not have, which explains much of the spread "
              "between runs. Machine CPU is all the work the machine did during the run (user, system, irq and "
              "softirq time over both vCPUs, from /proc/stat; not idle, I/O wait or steal), whoever did it: the "
              "client, the registries, and kernel threads such as the loop device's writer; for python-dxf "
              "and oras-py it includes their start-up.")
    text = "\n".join(md)
    print(text)
    print(f"written to {write_result('registry', text)}  ({machine()})")
    data = {name: {"wall": runs.walls(name), "cpu": [u.cpu for u in runs.usage[name]],
                   "rss_mib": [u.rss_mib for u in runs.usage[name]], "steal": [u.steal for u in runs.usage[name]],
                   "registry_cpu": [u.registry_cpu for u in runs.usage[name]], "busy": [u.busy for u in runs.usage[name]],
                   "moved": runs.moved[name]} for name in runs.usage}
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
