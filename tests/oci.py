"""Building test images as OCI layouts (layers made by our producer) and pushing them with
skopeo, a real peer, into the test registries."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import docker_distribution as dd
from docker_distribution.layer import produce_layer
from docker_distribution.mediatype import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
)


def _blob(layout: Path, data: bytes) -> dd.Digest:
    d = dd.digest_bytes(data)
    p = layout / "blobs" / d.algorithm / d.encoded
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return d


def image_manifest(layout: Path, layer_dirs: list[Path], *, compression: str = "gzip", arch: str = "amd64",
                   variant: str = "") -> dict[str, object]:
    """Write layers, config and manifest blobs; returns the manifest's descriptor."""
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    layers, diff_ids = [], []
    for d in layer_dirs:
        tmp = layout / "layer.tmp"
        produced = produce_layer(tmp, source_dir=d, compression=compression, mtime=1)  # type: ignore[arg-type]
        final = layout / "blobs" / "sha256" / produced.digest.encoded
        tmp.rename(final)
        layers.append({"mediaType": OCI_LAYER_ZSTD if compression == "zstd" else OCI_LAYER_GZIP,
                       "digest": str(produced.digest), "size": produced.size})
        diff_ids.append(str(produced.diff_id))
    config = {"architecture": arch, "os": "linux", "config": {"Env": ["PATH=/usr/bin:/bin"]},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    if variant:
        config["variant"] = variant
    cbytes = json.dumps(config).encode()
    cd = _blob(layout, cbytes)
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": str(cd), "size": len(cbytes)}, "layers": layers}
    mbytes = json.dumps(manifest).encode()
    md = _blob(layout, mbytes)
    platform = {"architecture": arch, "os": "linux"}
    if variant:
        platform["variant"] = variant
    return {"mediaType": OCI_MANIFEST, "digest": str(md), "size": len(mbytes), "platform": platform}


def write_layout(layout: Path, tag: str, entries: list[dict[str, object]], *, as_index: bool) -> None:
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    if as_index:
        idx = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
        d = _blob(layout, idx)
        top = [{"mediaType": OCI_INDEX, "digest": str(d), "size": len(idx), "annotations": {"org.opencontainers.image.ref.name": tag}}]
    else:
        top = [{**{k: v for k, v in entries[0].items() if k != "platform"},
                "annotations": {"org.opencontainers.image.ref.name": tag}}]
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": top}))


def skopeo_push(layout: Path, tag: str, dest: str, *, all_images: bool = False, fmt: str | None = None) -> None:
    cmd = ["skopeo", "copy", "--dest-tls-verify=false", "--quiet"]
    if all_images:
        cmd.append("--all")
    if fmt:
        cmd += ["--format", fmt]
    subprocess.run(cmd + [f"oci:{layout}:{tag}", f"docker://{dest}"], check=True, capture_output=True)


def umoci_unpack(src: str, work: Path) -> Path:
    """skopeo copies the image from the registry into an OCI layout, umoci unpacks it."""
    work.mkdir(parents=True, exist_ok=True)
    layout = work / "umoci-layout"
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false", "--quiet", f"docker://{src}", f"oci:{layout}:t"],
                   check=True, capture_output=True)
    bundle = work / "umoci-bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:t", str(bundle)], check=True, capture_output=True)
    return bundle / "rootfs"
