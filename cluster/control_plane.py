"""etcd and the control plane's three servers, with kubeadm's flags (TLS everywhere, the Node
and RBAC authorizers, ServiceAccount token signing, NodeRestriction with the default plugins).
"""

from __future__ import annotations

import functools
import ssl
import urllib.request
from pathlib import Path

from cluster import config, daemons
from cluster.pki import Pki


def _get(url: str, pki: Pki | None = None, *, insecure: bool = False) -> bool:
    """True if `url` answers 200 "ok". The controllers serve self-signed certificates
    (`insecure`: their health, not their identity, is the question)."""
    context = None
    if insecure:
        context = ssl._create_unverified_context()  # noqa: S323
    elif url.startswith("https"):
        assert pki is not None
        context = ssl.create_default_context(cafile=str(pki.ca.cert))
    with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310
        return response.status == 200 and response.read().strip() == b"ok"


def start_etcd(state: Path, pki: Pki, binary: Path) -> None:
    client = f"https://127.0.0.1:{config.ETCD_CLIENT_PORT}"
    peer = f"https://127.0.0.1:{config.ETCD_PEER_PORT}"
    daemons.start(
        state,
        "etcd",
        [
            str(binary),
            "--name=housing",
            f"--data-dir={state / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=housing={peer}",
            "--listen-metrics-urls=http://127.0.0.1:2381",
            f"--cert-file={pki.etcd_server.cert}",
            f"--key-file={pki.etcd_server.key}",
            "--client-cert-auth=true",
            f"--trusted-ca-file={pki.etcd_ca.cert}",
            f"--peer-cert-file={pki.etcd_server.cert}",
            f"--peer-key-file={pki.etcd_server.key}",
            "--peer-client-cert-auth=true",
            f"--peer-trusted-ca-file={pki.etcd_ca.cert}",
            "--snapshot-count=10000",
            # A throwaway test cluster on a shared 2-core VM: fsync stalls cost more than the
            # durability they buy (a crash means a new cluster anyway).
            "--unsafe-no-fsync=true",
        ],
    )
    daemons.wait_for("etcd's health", _etcd_healthy, 60, state, "etcd")


def _etcd_healthy() -> bool:
    with urllib.request.urlopen("http://127.0.0.1:2381/health", timeout=2) as response:
        return b'"health":"true"' in response.read()


def start_apiserver(state: Path, pki: Pki, binary: Path) -> None:
    daemons.start(
        state,
        "kube-apiserver",
        [
            str(binary),
            f"--advertise-address={config.NODE_IP}",
            "--bind-address=0.0.0.0",
            f"--secure-port={config.API_PORT}",
            "--allow-privileged=true",
            "--authorization-mode=Node,RBAC",
            f"--client-ca-file={pki.ca.cert}",
            "--enable-admission-plugins=NodeRestriction",
            f"--etcd-servers=https://127.0.0.1:{config.ETCD_CLIENT_PORT}",
            f"--etcd-cafile={pki.etcd_ca.cert}",
            f"--etcd-certfile={pki.apiserver_etcd_client.cert}",
            f"--etcd-keyfile={pki.apiserver_etcd_client.key}",
            f"--kubelet-client-certificate={pki.apiserver_kubelet_client.cert}",
            f"--kubelet-client-key={pki.apiserver_kubelet_client.key}",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            f"--service-account-issuer=https://kubernetes.default.svc.{config.CLUSTER_DOMAIN}",
            f"--service-account-key-file={pki.service_account_pub}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            f"--service-cluster-ip-range={config.SERVICE_CIDR}",
            f"--tls-cert-file={pki.apiserver.cert}",
            f"--tls-private-key-file={pki.apiserver.key}",
            "--profiling=false",
        ],
    )
    daemons.wait_for(
        "the API server's /readyz",
        lambda: _get(f"https://127.0.0.1:{config.API_PORT}/readyz", pki),
        120,
        state,
        "kube-apiserver",
    )


def start_controllers(state: Path, pki: Pki, binaries: dict[str, Path]) -> None:
    common = [
        "--bind-address=127.0.0.1",
        # One node, one instance of each: no leases to wait for at start.
        "--leader-elect=false",
        f"--client-ca-file={pki.ca.cert}",
    ]
    cm = str(pki.controller_manager_conf)
    daemons.start(
        state,
        "kube-controller-manager",
        [
            str(binaries["kube-controller-manager"]),
            *common,
            f"--kubeconfig={cm}",
            f"--authentication-kubeconfig={cm}",
            f"--authorization-kubeconfig={cm}",
            "--cluster-name=housing",
            f"--cluster-signing-cert-file={pki.ca.cert}",
            f"--cluster-signing-key-file={pki.ca.key}",
            "--controllers=*,bootstrapsigner,tokencleaner",
            f"--root-ca-file={pki.ca.cert}",
            f"--service-account-private-key-file={pki.service_account_key}",
            f"--service-cluster-ip-range={config.SERVICE_CIDR}",
            "--use-service-account-credentials=true",
        ],
    )
    scheduler = str(pki.scheduler_conf)
    daemons.start(
        state,
        "kube-scheduler",
        [
            str(binaries["kube-scheduler"]),
            *common,
            f"--kubeconfig={scheduler}",
            f"--authentication-kubeconfig={scheduler}",
            f"--authorization-kubeconfig={scheduler}",
        ],
    )
    for name, port in (("kube-controller-manager", 10257), ("kube-scheduler", 10259)):
        daemons.wait_for(
            f"{name}'s /healthz",
            functools.partial(_get, f"https://127.0.0.1:{port}/healthz", insecure=True),
            60,
            state,
            name,
        )
