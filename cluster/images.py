"""Images the node runs, made here: no registry can be reached.

``pause`` and CoreDNS are single static binaries, written straight into OCI image archives;
the project's images are built by docker/build-local.sh and handed over with ``docker save``.
All are imported into the node's containerd, where the kubelet finds them (IfNotPresent).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from pathlib import Path

from cluster import config, node


def _blob(blobs: dict[str, bytes], data: bytes) -> dict[str, object]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"digest": digest, "size": len(data)}


def binary_image(path: Path, name: str, binary: Path, entrypoint: list[str], user: str) -> Path:
    """An OCI image archive at `path`: one layer holding `binary` at /<its name>."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tar.gettarinfo(str(binary), arcname=binary.name)
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        info.mode = 0o755
        with binary.open("rb") as data:
            tar.addfile(info, data)
    blobs: dict[str, bytes] = {}
    layer_desc = _blob(blobs, layer.getvalue())
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "User": user},
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
    }
    config_desc = _blob(blobs, json.dumps(image_config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_desc}],
    }
    manifest_desc = _blob(blobs, json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **manifest_desc,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1],
                },
            }
        ],
    }
    files = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps(index).encode(),
        **{f"blobs/sha256/{d.split(':')[1]}": data for d, data in blobs.items()},
    }
    with tarfile.open(path, "w") as tar:
        for arcname, content in files.items():
            entry = tarfile.TarInfo(arcname)
            entry.size = len(content)
            tar.addfile(entry, io.BytesIO(content))
    return path


def has_image(state: Path, name: str) -> bool:
    listed = node.ctr(state, "images", "ls", "-q", check=True).stdout.split()
    return any(ref in listed for ref in (name, f"docker.io/{name}", f"docker.io/library/{name}"))


def import_archive(state: Path, archive: Path) -> None:
    result = node.ctr(state, "images", "import", str(archive))
    if result.returncode != 0:
        raise RuntimeError(f"ctr images import {archive}: {result.stderr.strip()}")


def coredns_image() -> str:
    version = config.module_version("coredns", "github.com/coredns/coredns")
    return f"{config.COREDNS_IMAGE_REPO}:{version}"


def import_system_images(state: Path, binaries: dict[str, Path]) -> None:
    """pause (the sandbox every Pod starts with) and CoreDNS."""
    wanted = (
        (config.PAUSE_IMAGE, binaries["pause"], ["/pause"], "65535:65535"),
        (coredns_image(), binaries["coredns"], ["/coredns"], "0:0"),
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name, binary, entrypoint, user in wanted:
            if has_image(state, name):
                continue
            archive = binary_image(Path(tmp) / "image.tar", name, binary, entrypoint, user)
            import_archive(state, archive)
