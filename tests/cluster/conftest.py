"""The real single-node cluster (cluster/), started once per test run and removed afterwards.

The fixture brings up the control plane, the kubelet, kube-proxy and CoreDNS built from their
Go modules (cached in ~/.cache/housing-cluster), builds the project's three images with
docker/build-local.sh and imports them into the node's containerd.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster import config, daemons, images, lifecycle
from tests.chart.conftest import BIN, CHART, REPO, run_tool

# The operators' CRDs the chart targets, unmodified (their sources: crds/README.md).
CRDS = Path(__file__).resolve().parent / "crds"
LOCAL_VALUES = REPO / "k8s" / "local-cluster-values.yaml"


def chart_version() -> str:
    for line in (CHART / "Chart.yaml").read_text().splitlines():
        if line.startswith("appVersion:"):
            return line.split(":", 1)[1].strip().strip('"')
    raise AssertionError("Chart.yaml has no appVersion")


def _cluster_env() -> dict[str, str]:
    return {"KUBECONFIG": str(lifecycle.admin_kubeconfig())}


def kubectl(
    *args: str, check: bool = True, input: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return run_tool(
        str(BIN / "kubectl"),
        *args,
        check=check,
        input=input,
        timeout=timeout,
        extra_env=_cluster_env(),
    )


def helm(
    helm_binary: str, *args: str, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return run_tool(
        str(BIN / helm_binary), *args, check=check, timeout=timeout, extra_env=_cluster_env()
    )


def import_project_images() -> None:
    """docker/build-local.sh's three images, saved (when changed) into the cluster's cache
    and imported into the node's containerd (when not imported yet)."""
    state = config.state_dir()
    saved = config.cache_dir() / "images"
    imported = state / "imported-images"
    imported.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["bash", str(REPO / "docker" / "build-local.sh")],
        check=True,
        cwd=REPO,
        env={**os.environ, "SAVE_DIR": str(saved)},
        stdout=subprocess.DEVNULL,
    )
    for archive in sorted(saved.glob("*.tar")):
        image_id = archive.with_suffix(".id").read_text()
        stamp = imported / archive.with_suffix(".id").name
        if stamp.exists() and stamp.read_text() == image_id:
            continue
        images.import_archive(state, archive)
        stamp.write_text(image_id)
    tag = chart_version()
    wanted = [
        f"california-housing/model-server:{tag}",
        f"california-housing/training-job:{tag}",
        "california-housing/postgresql:15",
    ]
    missing = [name for name in wanted if not images.has_image(state, name)]
    assert not missing, f"not imported into the node: {missing}"


@pytest.fixture(scope="session")
def cluster() -> Iterator[Path]:
    """The running cluster's admin kubeconfig; started here unless it already ran."""
    run_tool("true")  # scripts/tools.sh: kubectl, helm3, helm4
    started = daemons.running_pid(config.state_dir(), "kube-apiserver") is None
    try:
        kubeconfig = lifecycle.up()
        import_project_images()
        yield kubeconfig
    finally:
        if started:
            lifecycle.down()
