"""The node: host network, containerd, kubelet and kube-proxy.

Pods live on a Linux bridge of the cluster's own (``housing0``) through Debian's CNI
plugins; containerd (Debian's, a second instance with its own root and socket, beside
Docker's) runs them with runc on cgroup v1 (cgroupfs driver: no systemd runs here).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import yaml

from cluster import config, daemons
from cluster.pki import Pki

# Debian packages the node needs: the container runtime, the CNI plugins, iptables for
# kube-proxy and the firewall below, conntrack for kube-proxy's UDP clean-up.
PACKAGES = {
    "containerd": "/usr/bin/containerd",
    "runc": "/usr/sbin/runc",
    "containernetworking-plugins": "/usr/lib/cni/bridge",
    "iptables": "/usr/sbin/iptables",
    "conntrack": "/usr/sbin/conntrack",
}
CNI_BIN = Path("/usr/lib/cni")
FIREWALL_COMMENT = "housing-cluster: pods reach nothing off this machine"
# Forwarded traffic from the Pod range to anything but the bridge is refused.
FIREWALL_RULE = (
    "FORWARD", "-s", config.POD_CIDR, "!", "-o", config.BRIDGE,
    "-m", "comment", "--comment", FIREWALL_COMMENT, "-j", "REJECT",
)  # fmt: skip


def install_packages() -> None:
    missing = [name for name, path in PACKAGES.items() if not Path(path).exists()]
    if missing:
        # Without starting Debian's own containerd service (scripts/apt-install.sh).
        script = Path(__file__).resolve().parent.parent / "scripts" / "apt-install.sh"
        subprocess.run(["bash", str(script), *missing], check=True)


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def network_up() -> None:
    """The bridge with the node's IP, forwarding, and a firewall that keeps Pods' traffic on
    this machine (no image pull, telemetry or DNS query leaves it, even by mistake)."""
    if _run("ip", "link", "show", config.BRIDGE, check=False).returncode != 0:
        _run("ip", "link", "add", config.BRIDGE, "type", "bridge")
    _run("ip", "addr", "replace", f"{config.NODE_IP}/24", "dev", config.BRIDGE)
    _run("ip", "link", "set", config.BRIDGE, "up")
    # A ClusterIP that kube-proxy has not translated (yet) goes into the bridge, not out.
    _run("ip", "route", "replace", config.SERVICE_CIDR, "dev", config.BRIDGE, "src", config.NODE_IP)
    for key, value in (
        ("net/ipv4/ip_forward", "1"),
        ("net/bridge/bridge-nf-call-iptables", "1"),
    ):
        path = Path("/proc/sys") / key
        if path.exists():
            path.write_text(value)
    if _run("iptables", "-C", *FIREWALL_RULE, check=False).returncode != 0:
        _run("iptables", "-I", *FIREWALL_RULE)


def remove_kube_chains() -> None:
    """The kubelet's iptables chains (KUBE-FIREWALL, KUBE-KUBELET-CANARY; kube-proxy's go
    with its --cleanup), with the rules that jump to them, in IPv4 and IPv6."""
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            listed = _run(tool, "-t", table, "-S", check=False)
            if listed.returncode != 0:
                continue
            chains = []
            for line in listed.stdout.splitlines():
                parts = line.split()
                if parts[:1] == ["-N"] and parts[1].startswith("KUBE-"):
                    chains.append(parts[1])
                elif (
                    parts[:1] == ["-A"]
                    and "-j" in parts
                    and parts[parts.index("-j") + 1].startswith("KUBE-")
                ):
                    _run(tool, "-t", table, "-D", *parts[1:], check=False)
            for chain in chains:
                _run(tool, "-t", table, "-F", chain, check=False)
            for chain in chains:
                _run(tool, "-t", table, "-X", chain, check=False)


def network_down() -> None:
    while _run("iptables", "-D", *FIREWALL_RULE, check=False).returncode == 0:
        pass
    _run("ip", "route", "del", config.SERVICE_CIDR, check=False)
    _run("ip", "link", "del", config.BRIDGE, check=False)


def containerd_socket() -> Path:
    return config.run_dir() / "containerd.sock"


def write_cni_config(state: Path) -> Path:
    folder = state / "cni" / "net.d"
    folder.mkdir(parents=True, exist_ok=True)
    conflist = {
        "cniVersion": "1.0.0",
        "name": "housing",
        "plugins": [
            {
                "type": "bridge",
                "bridge": config.BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": config.POD_CIDR, "gateway": config.NODE_IP}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(state / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    (folder / "10-housing.conflist").write_text(json.dumps(conflist, indent=2))
    return folder


def start_containerd(state: Path) -> None:
    cni_conf = write_cni_config(state)
    config.run_dir().mkdir(parents=True, exist_ok=True)
    toml = f"""version = 2
root = "{state / "containerd"}"
state = "{config.run_dir() / "containerd"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{containerd_socket()}"

[ttrpc]
  address = "{containerd_socket()}.ttrpc"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{config.PAUSE_IMAGE}"
  # This machine's root lacks CAP_SYS_RESOURCE, so no process may lower its OOM score: keep
  # Pods' at or above containerd's own (0) instead of the -998 a sandbox asks for, which
  # runc cannot set ("failed to update /proc/self/oom_score_adj: Permission denied").
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{cni_conf}"
"""
    path = state / "containerd.toml"
    path.write_text(toml)
    daemons.start(
        state, "containerd", [shutil.which("containerd") or "containerd", "--config", str(path)]
    )
    daemons.wait_for(
        "containerd's socket",
        lambda: ctr(state, "version").returncode == 0,
        60,
        state,
        "containerd",
    )


def ctr(state: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    """containerd's own client on the cluster's instance, in the kubelet's namespace."""
    return subprocess.run(
        ["ctr", "--address", str(containerd_socket()), "--namespace", "k8s.io", *args],
        check=check,
        capture_output=True,
        text=True,
    )


def start_kubelet(state: Path, pki: Pki, binary: Path) -> None:
    kubelet_dir = state / "kubelet"
    kubelet_dir.mkdir(parents=True, exist_ok=True)
    resolv = state / "resolv.conf"
    # Pods with dnsPolicy Default (CoreDNS) inherit this: no upstream resolver, by design.
    resolv.write_text("# the cluster resolves cluster.local only (cluster/manifests)\n")
    kubelet_config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki.ca.cert)},
        },
        "authorization": {"mode": "Webhook"},
        "address": config.NODE_IP,
        "cgroupDriver": "cgroupfs",
        "clusterDNS": [config.DNS_SERVICE_IP],
        "clusterDomain": config.CLUSTER_DOMAIN,
        "containerRuntimeEndpoint": f"unix://{containerd_socket()}",
        "failSwapOn": False,
        "resolvConf": str(resolv),
        "tlsCertFile": str(pki.kubelet_serving.cert),
        "tlsPrivateKeyFile": str(pki.kubelet_serving.key),
        "rotateCertificates": False,
        "serializeImagePulls": False,
        # Images cannot be pulled again here: never collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "200Mi",
            "nodefs.available": "2%",
            "imagefs.available": "2%",
        },
        # Not -999: lowering an OOM score needs CAP_SYS_RESOURCE, which root lacks here.
        "oomScoreAdj": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "staticPodPath": "",
        "volumeStatsAggPeriod": "0s",
    }
    path = state / "kubelet.yaml"
    path.write_text(yaml.safe_dump(kubelet_config, sort_keys=False))
    daemons.start(
        state,
        "kubelet",
        [
            str(binary),
            f"--config={path}",
            f"--kubeconfig={pki.kubelet_conf}",
            f"--root-dir={kubelet_dir}",
            f"--node-ip={config.NODE_IP}",
            f"--hostname-override={config.NODE_NAME}",
        ],
    )


def start_kube_proxy(state: Path, pki: Pki, binary: Path) -> None:
    proxy_config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(pki.proxy_conf)},
        "mode": "iptables",
        "clusterCIDR": config.POD_CIDR,
        "hostnameOverride": config.NODE_NAME,
        "bindAddress": "0.0.0.0",  # noqa: S104 - NodePorts on every address, as kubeadm's
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        # Leave the kernel's conntrack limits alone (the VM's are fine; setting them needs
        # a writable /sys).
        "conntrack": {"maxPerCore": 0},
        "oomScoreAdj": 0,  # see the kubelet's
    }
    path = state / "kube-proxy.yaml"
    path.write_text(yaml.safe_dump(proxy_config, sort_keys=False))
    daemons.start(state, "kube-proxy", [str(binary), f"--config={path}"])


def cleanup_proxy_rules(binary: Path) -> None:
    """Remove kube-proxy's iptables chains (its own --cleanup)."""
    subprocess.run([str(binary), "--cleanup"], capture_output=True, check=False)
