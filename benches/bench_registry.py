"""Pull, blob fetch and push of the ``big`` image through a real local registry, beside peers.

Peers measured in the same run: ``skopeo copy`` (+ ``umoci unpack`` for pull plus unpack),
and, where they can run here, ``docker pull``/``docker push`` (Debian's dockerd) and
``ctr image pull`` (containerd). Every run is cold: destination wiped, ``sync``, page cache
dropped, registry blobs re-read. Ratios are peer ÷ ours (above 1: we are faster).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench_layer import drop_caches, sh
from harness import machine, write_result
from images import CACHE, big_layers
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
from bed.registry import Registry  # noqa: E402

WORK = CACHE / "rwork"
ANON = dd.Config(auth_config=AuthConfig())


def registry_inputs(reg: Registry) -> list[Path]:
    return [p for p in reg.storage.rglob("data") if p.is_file()]


def timed(name: str, runs: int, reset: Callable[[], None], run: Callable[[], object], results: dict[str, list[float]]) -> None:
    times = []
    for _ in range(runs):
        reset()
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    results[name] = times
    print(f"  {name:<52} median {statistics.median(times):7.3f}s  (min {min(times):.3f}, max {max(times):.3f})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    reg = Registry("bench", WORK / "registry").start()
    results: dict[str, list[float]] = {}
    daemons = Daemons(Path("/tmp/dd-bench-daemons")).start()
    py_why = ""
    try:
        # the image, imported from the three big layer tars and pushed once (gzip and zstd)
        src = Store(WORK / "src")
        parent = None
        diff_ids = []
        for tar in big_layers():
            layer = src.layers.register_file(tar, parent)
            parent = layer.chain_id
            diff_ids.append(str(layer.diff_id))
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                             "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
        image_id = src.images.put(config)
        big = dd.parse_normalized_named(f"{reg.host}/bench/big:latest")
        big_zstd = dd.parse_normalized_named(f"{reg.host}/bench/big-zstd:latest")
        for ref, comp in ((big, "gzip"), (big_zstd, "zstd")):
            src.references.add_tag(ref, image_id, force=True)
            push_image(ref, src, config=ANON, compression=comp)  # type: ignore[arg-type]
        repo = connect(big.trim(), APIEndpoint(url=reg.url), auth_config=AuthConfig())
        manifest = json.loads(repo.get_manifest("latest").payload)
        gz_bytes = sum(layer["size"] for layer in manifest["layers"])
        tar_bytes = sum(p.stat().st_size for p in big_layers())
        print(f"big: {len(diff_ids)} layers, {tar_bytes / 1e6:.0f} MB tar, {gz_bytes / 1e6:.0f} MB gzip in the registry")

        dest = WORK / "dest"

        def reset() -> None:
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir()
            drop_caches(registry_inputs(reg))

        r = args.runs
        timed("ours: pull (layers stored unpacked, as dockerd ends)", r, reset,
              lambda: pull_image(big, Store(dest / "s"), config=ANON), results)

        def ours_pull_unpack() -> None:
            s = Store(dest / "s")
            iid = pull_image(big, s, config=ANON)
            assert iid is not None
            s.unpack(iid, dest / "rootfs")

        timed("ours: pull + unpack to a rootfs", r, reset, ours_pull_unpack, results)
        timed("ours: pull big-zstd", r, reset, lambda: pull_image(big_zstd, Store(dest / "s"), config=ANON), results)
        timed("skopeo copy docker:// oci: (blobs only)", r, reset,
              lambda: sh(f"skopeo copy --quiet --src-tls-verify=false docker://{big} oci:{dest}/layout:t"), results)

        def ours_blobs() -> None:
            s = Store(dest / "s")
            for layer in manifest["layers"]:
                d = dd.Digest.parse(layer["digest"])
                with s.content.writer(ref=f"layer-{d}") as w, repo.open_blob(d) as resp:
                    for chunk in resp.raw.stream(1 << 20, decode_content=False):
                        w.write(chunk)
                    w.commit(layer["size"], d)

        timed("ours: blobs only, verified into the content store", r, reset, ours_blobs, results)
        py_ok, py_why = pypeers_available()
        if py_ok:
            digests = [layer["digest"] for layer in manifest["layers"]]
            timed("python-dxf pull_blob (verified, 1 MiB chunks)", r, reset,
                  lambda: pypeers_fetch("dxf", reg.host, "bench/big", digests, dest), results)
            timed("oras-py download_blob", r, reset,
                  lambda: pypeers_fetch("oras", reg.host, "bench/big", digests, dest), results)
        if daemons.available:
            def docker_reset() -> None:
                subprocess.run(["docker", "-H", daemons.docker_sock, "rmi", "-f", str(big)], capture_output=True)
                reset()

            def ctr_reset() -> None:
                subprocess.run(["ctr", "--address", daemons.ctd_sock, "image", "rm", "--sync", str(big)],
                               capture_output=True)
                reset()

            timed("docker pull (dockerd, overlay2)", r, docker_reset, lambda: daemons.docker("pull", str(big)), results)
            timed("ctr image pull (containerd, overlayfs)", r, ctr_reset,
                  lambda: daemons.ctr("image", "pull", "--plain-http", str(big)), results)
        timed("skopeo copy + umoci unpack (pull + unpack)", r, reset,
              lambda: sh(f"skopeo copy --quiet --src-tls-verify=false docker://{big} oci:{dest}/layout:t && "
                         f"umoci unpack --image {dest}/layout:t {dest}/bundle > /dev/null"), results)

        # push, compressing on the fly, into a fresh registry each run (so nothing can be mounted)
        raw = WORK / "raw-tar-layout"
        _raw_layout(src, image_id, raw)
        target: dict[str, Registry] = {}
        src_files = [p for p in (WORK / "src" / "layers").rglob("*") if p.is_file()]

        def push_reset() -> None:
            if "reg" in target:
                target["reg"].stop()
                shutil.rmtree(target["reg"].workdir, ignore_errors=True)
            target["reg"] = Registry("push-target", WORK / f"push-{time.monotonic_ns()}").start()
            drop_caches(src_files + [p for p in raw.rglob("*") if p.is_file()])

        def ours_push(comp: str) -> Callable[[], None]:
            def run() -> None:
                ref = dd.parse_normalized_named(f"{target['reg'].host}/push/app:latest")
                src.references.add_tag(ref, image_id, force=True)
                fresh_meta = Store(WORK / "src")  # same layers; V2 metadata of other registries cannot match
                push_image(ref, fresh_meta, config=ANON, compression=comp)  # type: ignore[arg-type]
                sizes[comp] = sum(layer["size"] for layer in json.loads(connect(ref.trim(), APIEndpoint(
                    url=target["reg"].url), auth_config=AuthConfig()).get_manifest("latest").payload)["layers"])
            return run

        def skopeo_push() -> None:
            host = target["reg"].host
            sh(f"skopeo copy --quiet --dest-tls-verify=false --dest-compress oci:{raw}:t docker://{host}/push/skopeo:latest")
            m = json.loads(subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                                           f"docker://{host}/push/skopeo:latest"], capture_output=True, check=True).stdout)
            sizes["skopeo"] = sum(layer["size"] for layer in m["layers"])

        sizes: dict[str, int] = {}
        timed("ours: push gzip (compress on the fly)", r, push_reset, ours_push("gzip"), results)
        timed("skopeo copy oci:(raw tars) docker:// (pgzip on the fly)", r, push_reset, skopeo_push, results)
        timed("ours: push zstd", r, push_reset, ours_push("zstd"), results)
        if daemons.available:
            daemons.docker("pull", str(big))

            def docker_push() -> None:
                dest_ref = f"{target['reg'].host}/push/docker:latest"
                daemons.docker("tag", str(big), dest_ref)
                daemons.docker("push", dest_ref)

            timed("docker push (dockerd, Go gzip on the fly)", r, push_reset, docker_push, results)
        if "reg" in target:
            target["reg"].stop()
    finally:
        reg.stop()
        daemons.stop()

    med = {k: statistics.median(v) for k, v in results.items()}
    rows = [
        ("pull + unpack: skopeo+umoci ÷ ours", med["skopeo copy + umoci unpack (pull + unpack)"] / med["ours: pull + unpack to a rootfs"]),
        ("blobs-only fetch: skopeo ÷ ours", med["skopeo copy docker:// oci: (blobs only)"] / med["ours: blobs only, verified into the content store"]),
        ("big-zstd pull faster than big (gzip) pull", med["ours: pull (layers stored unpacked, as dockerd ends)"] / med["ours: pull big-zstd"]),
        ("gzip push: skopeo ÷ ours", med["skopeo copy oci:(raw tars) docker:// (pgzip on the fly)"] / med["ours: push gzip (compress on the fly)"]),
        ("zstd push vs skopeo gzip push: skopeo ÷ ours", med["skopeo copy oci:(raw tars) docker:// (pgzip on the fly)"] / med["ours: push zstd"]),
    ]
    md = [f"### Registry scenarios — `big` ({tar_bytes / 1e6:.0f} MB tar, {gz_bytes / 1e6:.0f} MB gzip; medians of {args.runs} cold runs)",
          "", "| scenario | median s | min–max |", "|---|---|---|"]
    for name, times in results.items():
        md.append(f"| {name} | {statistics.median(times):.3f} | {min(times):.3f}–{max(times):.3f} |")
    md += ["", "| ratio | value |", "|---|---|"] + [f"| {n} | **{v:.2f}×** |" for n, v in rows]
    if "python-dxf pull_blob (verified, 1 MiB chunks)" in med:
        ours_b = med["ours: blobs only, verified into the content store"]
        fastest = min(med["python-dxf pull_blob (verified, 1 MiB chunks)"], med["oras-py download_blob"],
                      med["skopeo copy docker:// oci: (blobs only)"])
        md += [f"| blobs-only fetch: python-dxf ÷ ours | **{med['python-dxf pull_blob (verified, 1 MiB chunks)'] / ours_b:.2f}×** |",
               f"| blobs-only fetch: oras-py ÷ ours | **{med['oras-py download_blob'] / ours_b:.2f}×** |",
               f"| blobs-only fetch: fastest peer ÷ ours | **{fastest / ours_b:.2f}×** |"]
    else:
        md.append(f"\npython-dxf and oras-py could not run: {py_why}\n")
    if "docker pull (dockerd, overlay2)" in med:
        rows_d = [
            ("pull: dockerd ÷ ours", med["docker pull (dockerd, overlay2)"] / med["ours: pull (layers stored unpacked, as dockerd ends)"]),
            ("pull: containerd ÷ ours", med["ctr image pull (containerd, overlayfs)"] / med["ours: pull (layers stored unpacked, as dockerd ends)"]),
            ("push: dockerd ÷ ours (gzip)", med["docker push (dockerd, Go gzip on the fly)"] / med["ours: push gzip (compress on the fly)"]),
        ]
        md += [f"| {n} | **{v:.2f}×** |" for n, v in rows_d]
    else:
        md.append(f"\ndockerd and containerd could not run: {daemons.why}.\n")
    md.append(f"\nPushed bytes: ours gzip {sizes['gzip'] / 1e6:.1f} MB, skopeo (pgzip) {sizes['skopeo'] / 1e6:.1f} MB "
              f"(ratio {sizes['gzip'] / sizes['skopeo']:.3f}), ours zstd {sizes['zstd'] / 1e6:.1f} MB.")
    text = "\n".join(md)
    print(text)
    print(f"written to {write_result('registry', text)}  ({machine()})")


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
