"""Bring the cluster up in kubeadm's order, and take it down leaving nothing behind."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

from cluster import build as builder
from cluster import config, control_plane, daemons, images, node, pki
from cluster.daemons import ClusterError

__all__ = ["ClusterError", "admin_kubeconfig", "build", "down", "kubectl", "status", "up"]

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = Path(__file__).resolve().parent / "manifests"
# In stopping order: the node first, then the control plane, etcd last.
DAEMONS = (
    "kube-proxy",
    "kubelet",
    "containerd",
    "kube-scheduler",
    "kube-controller-manager",
    "kube-apiserver",
    "etcd",
)


GRACE = 5.0  # seconds each process gets to stop at `down`


def admin_kubeconfig() -> Path:
    return config.state_dir() / "admin.conf"


def kubectl_binary() -> str:
    path = ROOT / ".tools" / "bin" / "kubectl"
    if not path.exists():
        subprocess.run(["bash", str(ROOT / "scripts" / "tools.sh")], check=True)
    return str(path)


def kubectl(
    *args: str, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [kubectl_binary(), f"--kubeconfig={admin_kubeconfig()}", *args],
        capture_output=True,
        text=True,
        input=input,
    )
    if check and result.returncode != 0:
        raise ClusterError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
    return result


def build() -> dict[str, Path]:
    return builder.binaries()


def _timed(step: str, since: float) -> float:
    now = time.monotonic()
    log.info("%-28s %5.1f s", step, now - since)
    return now


def up() -> Path:
    """Start whatever is not running; the admin kubeconfig's path."""
    state = config.state_dir()
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o700)
    t = time.monotonic()
    node.install_packages()
    binaries = builder.binaries()
    t = _timed("packages and binaries", t)
    keys = pki.ensure(state)
    node.network_up()
    t = _timed("PKI and network", t)
    control_plane.start_etcd(state, keys, binaries["etcd"])
    control_plane.start_apiserver(state, keys, binaries["kube-apiserver"])
    control_plane.start_controllers(state, keys, binaries)
    t = _timed("control plane", t)
    node.start_containerd(state)
    images.import_system_images(state, binaries)
    node.start_kubelet(state, keys, binaries["kubelet"])
    node.start_kube_proxy(state, keys, binaries["kube-proxy"])
    daemons.wait_for("the node to be Ready", _node_ready, 120, state, "kubelet")
    t = _timed("node", t)
    manifest = (MANIFESTS / "coredns.yaml").read_text()
    manifest = manifest.replace("IMAGE", images.coredns_image()).replace(
        "CLUSTER_DNS_IP", config.DNS_SERVICE_IP
    )
    kubectl("apply", "-f", "-", input=manifest)
    kubectl("-n", "kube-system", "rollout", "status", "deployment/coredns", "--timeout=120s")
    kubectl("apply", "-f", "-", input=_volumes(state))
    _timed("DNS and volumes", t)
    return admin_kubeconfig()


VOLUMES = 8


def _volumes(state: Path) -> str:
    """Static hostPath PersistentVolumes with no class (no provisioner runs here): claims with
    no storage class, or the cluster default, bind to them. World-writable, like a fresh
    cloud disk's root seen by a non-root Pod with fsGroup (hostPath ignores fsGroup)."""
    docs = []
    for i in range(VOLUMES):
        folder = state / "volumes" / f"pv-{i}"
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o1777)
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": f"local-pv-{i}", "labels": {"housing.local/volume": "static"}},
                "spec": {
                    "capacity": {"storage": "20Gi"},
                    "accessModes": ["ReadWriteOnce", "ReadWriteMany"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": "",
                    "hostPath": {"path": str(folder), "type": "Directory"},
                },
            }
        )
    return "\n---\n".join(json.dumps(d) for d in docs)


def _node_ready() -> bool:
    result = kubectl("get", "node", config.NODE_NAME, "-o", "json", check=False)
    if result.returncode != 0:
        return False
    conditions = json.loads(result.stdout)["status"].get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _pod_processes() -> list[int]:
    """PIDs of every process in a Pod's cgroup (the containers and their sandboxes)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if "/kubepods" in (proc / "cgroup").read_text():
                pids.append(int(proc.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return pids


def _shims() -> list[int]:
    socket = str(node.containerd_socket()).encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if b"containerd-shim" in cmdline and socket in cmdline:
            found.append(int(proc.name))
    return found


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _unmount_under(*prefixes: str) -> None:
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point.startswith(prefixes):
            mounts.append(point)
    for point in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _remove_pod_cgroups() -> None:
    for controller in Path("/sys/fs/cgroup").iterdir():
        top = controller / "kubepods"
        if not top.is_dir():
            continue
        for folder in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if folder.is_dir():
                with contextlib.suppress(OSError):
                    folder.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def down() -> None:
    """Stop every process `up` started (Pods included) and remove the cluster's state."""
    state = config.state_dir()
    binaries_known = builder.binaries_if_built()
    # Everything is thrown away: a short grace (the API server alone would take a minute to
    # drain its watches), then SIGKILL.
    for name in DAEMONS[:2]:
        daemons.stop(state, name, timeout=GRACE)
    if "kube-proxy" in binaries_known:
        node.cleanup_proxy_rules(binaries_known["kube-proxy"])
    for _ in range(3):
        _kill_all(_pod_processes())
        _kill_all(_shims())
        time.sleep(0.2)
    for name in DAEMONS[2:]:
        daemons.stop(state, name, timeout=GRACE)
    run = str(config.run_dir())
    _unmount_under(str(state), run, "/run/netns/cni-", "/var/run/netns/cni-")
    for netns in Path("/run/netns").glob("cni-*"):
        netns.unlink(missing_ok=True)
    _remove_pod_cgroups()
    node.remove_kube_chains()
    node.network_down()
    subprocess.run(["rm", "-rf", str(state), run], check=False)
    log.info("cluster removed (binaries stay cached in %s)", config.cache_dir())


def status() -> int:
    state = config.state_dir()
    running = {name: daemons.running_pid(state, name) for name in reversed(DAEMONS)}
    for name, pid in running.items():
        print(f"{name:26} {'running, pid ' + str(pid) if pid else 'stopped'}")
    if not all(running.values()):
        return 1
    print(kubectl("get", "nodes,pods", "-A", "-o", "wide").stdout)
    print(f"KUBECONFIG={admin_kubeconfig()}")
    return 0
