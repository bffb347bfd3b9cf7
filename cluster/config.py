"""The cluster's fixed facts: versions, paths, addresses, ports.

The component versions are read from the Go modules that build them (one owner: go.mod).
One cluster per machine: it uses the host's network stack, ports and a bridge of its own.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

GO_MODULES = Path(__file__).resolve().parent / "go"

# Addresses. The node's IP is the pod bridge's gateway, so Pods reach the API server and the
# kubelet at an address of this machine; nothing is routed off it (the Service range is
# routed into the bridge too, so an unNATed ClusterIP packet stays here).
BRIDGE = "housing0"
POD_CIDR = "10.244.0.0/24"
NODE_IP = "10.244.0.1"
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
DNS_SERVICE_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
NODE_NAME = "housing-node"
API_PORT = 6443
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380

# Images made here (cluster/images.py): the sandbox and DNS, tagged with their versions.
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
COREDNS_IMAGE_REPO = "registry.k8s.io/coredns/coredns"


@dataclass(frozen=True)
class Component:
    """A Go module under cluster/go and the commands it builds."""

    module: str  # folder under cluster/go
    requirement: str | None  # the module whose version names the build (None: our own code)
    binaries: tuple[tuple[str, str], ...]  # (binary name, package to build)
    ldflags: tuple[str, ...] = ()

    @property
    def folder(self) -> Path:
        return GO_MODULES / self.module

    @property
    def version(self) -> str:
        return module_version(self.module, self.requirement) if self.requirement else "local"


@cache
def module_version(module: str, requirement: str) -> str:
    """The version a cluster/go module's go.mod requires of `requirement`."""
    text = (GO_MODULES / module / "go.mod").read_text()
    found = re.search(rf"^\s*(?:require\s+)?{re.escape(requirement)}\s+(v\S+)", text, re.M)
    if not found:
        raise RuntimeError(f"cluster/go/{module}/go.mod requires no {requirement}")
    return found.group(1)


def kubernetes_version() -> str:
    return module_version("kubernetes", "k8s.io/kubernetes")


def _kubernetes_ldflags() -> tuple[str, ...]:
    # What Kubernetes' own build stamps (hack/lib/version.sh): without it the binaries say
    # v0.0.0-master, and the API server's emulated version and Helm's kubeVersion go wrong.
    version = kubernetes_version()
    major, minor = version.lstrip("v").split(".")[:2]
    values = {
        "gitVersion": version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
    }
    return tuple(
        f"-X {package}.{key}={value}"
        for key, value in values.items()
        for package in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version")
    )


def components() -> tuple[Component, ...]:
    kubernetes = tuple(
        (command, f"k8s.io/kubernetes/cmd/{command}")
        for command in (
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kubelet",
            "kube-proxy",
        )
    )
    return (
        Component("kubernetes", "k8s.io/kubernetes", kubernetes, _kubernetes_ldflags()),
        Component("etcd", "go.etcd.io/etcd/server/v3", (("etcd", "go.etcd.io/etcd/server/v3"),)),
        Component("coredns", "github.com/coredns/coredns", (("coredns", "."),)),
        Component("pause", None, (("pause", "."),)),
    )


def cache_dir() -> Path:
    """Built binaries, kept across checkouts (CI's fresh clone starts with no .tools/)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "housing-cluster"


def state_dir() -> Path:
    """The running cluster's files: PKI, configs, etcd data, containerd, logs, PIDs."""
    return Path(os.environ.get("HOUSING_CLUSTER_DIR", "/var/lib/housing-cluster"))


def run_dir() -> Path:
    """Sockets (short paths: a Unix socket path has 107 bytes at most)."""
    return Path("/run/housing-cluster")
