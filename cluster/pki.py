"""The cluster's certificates and keys, laid out as kubeadm does (``pki/``, ``*.conf``).

Two CAs (the cluster's and etcd's), a serving certificate for each server, a client
certificate for each component with the user and group its RBAC bindings name, and the
ServiceAccount signing key. Made once per state folder.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cluster import config

VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(common: str, org: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common)]
    if org:
        parts.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(parts)


def _ca(folder: Path, stem: str, common: str) -> Pair:
    pair = Pair(folder / f"{stem}.crt", folder / f"{stem}.key")
    if pair.cert.exists():
        return pair
    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(_name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + 10 * VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write_key(pair.key, key)
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return pair


def _leaf(
    folder: Path,
    stem: str,
    ca: Pair,
    common: str,
    *,
    org: str | None = None,
    server: bool = False,
    client: bool = False,
    hosts: tuple[str, ...] = (),
) -> Pair:
    pair = Pair(folder / f"{stem}.crt", folder / f"{stem}.key")
    if pair.cert.exists():
        return pair
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    key = _key()
    now = dt.datetime.now(dt.UTC)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] * server + [ExtendedKeyUsageOID.CLIENT_AUTH] * client
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common, org))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if hosts:
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    _write_key(pair.key, key)
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return pair


def kubeconfig(path: Path, ca: Pair, client: Pair, server: str, user: str) -> Path:
    """A kubeconfig with the client certificate embedded by path."""
    if not path.exists():
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "housing",
                    "cluster": {"server": server, "certificate-authority": str(ca.cert)},
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate": str(client.cert),
                        "client-key": str(client.key),
                    },
                }
            ],
            "contexts": [{"name": "housing", "context": {"cluster": "housing", "user": user}}],
            "current-context": "housing",
        }
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        path.chmod(0o600)
    return path


@dataclass(frozen=True)
class Pki:
    ca: Pair
    etcd_ca: Pair
    etcd_server: Pair
    apiserver: Pair
    apiserver_etcd_client: Pair
    apiserver_kubelet_client: Pair
    kubelet_serving: Pair
    service_account_key: Path
    service_account_pub: Path
    admin_conf: Path
    controller_manager_conf: Path
    scheduler_conf: Path
    kubelet_conf: Path
    proxy_conf: Path


def ensure(state: Path) -> Pki:
    """Make whatever of the PKI is missing under state/pki and state/*.conf."""
    pki = state / "pki"
    pki.mkdir(parents=True, exist_ok=True)
    pki.chmod(0o700)
    ca = _ca(pki, "ca", "kubernetes")
    etcd_ca = _ca(pki, "etcd-ca", "etcd-ca")
    local = ("localhost", "127.0.0.1")
    etcd_server = _leaf(pki, "etcd-server", etcd_ca, "etcd", server=True, client=True, hosts=local)
    apiserver = _leaf(
        pki,
        "apiserver",
        ca,
        "kube-apiserver",
        server=True,
        hosts=(
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            f"kubernetes.default.svc.{config.CLUSTER_DOMAIN}",
            config.NODE_NAME,
            *local,
            config.NODE_IP,
            config.KUBERNETES_SERVICE_IP,
        ),
    )
    etcd_client = _leaf(
        pki, "apiserver-etcd-client", etcd_ca, "kube-apiserver-etcd-client", client=True
    )
    kubelet_client = _leaf(
        pki,
        "apiserver-kubelet-client",
        ca,
        "kube-apiserver-kubelet-client",
        org="system:masters",
        client=True,
    )
    kubelet_serving = _leaf(
        pki,
        "kubelet",
        ca,
        config.NODE_NAME,
        server=True,
        hosts=(config.NODE_NAME, config.NODE_IP, "127.0.0.1"),
    )
    sa_key, sa_pub = pki / "sa.key", pki / "sa.pub"
    if not sa_key.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_key(sa_key, key)
        sa_pub.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    server = f"https://127.0.0.1:{config.API_PORT}"

    def conf(name: str, user: str, org: str | None) -> Path:
        client = _leaf(pki, f"{name}-client", ca, user, org=org, client=True)
        return kubeconfig(state / f"{name}.conf", ca, client, server, user)

    return Pki(
        ca=ca,
        etcd_ca=etcd_ca,
        etcd_server=etcd_server,
        apiserver=apiserver,
        apiserver_etcd_client=etcd_client,
        apiserver_kubelet_client=kubelet_client,
        kubelet_serving=kubelet_serving,
        service_account_key=sa_key,
        service_account_pub=sa_pub,
        admin_conf=conf("admin", "kubernetes-admin", "system:masters"),
        controller_manager_conf=conf("controller-manager", "system:kube-controller-manager", None),
        scheduler_conf=conf("scheduler", "system:kube-scheduler", None),
        kubelet_conf=conf("kubelet", f"system:node:{config.NODE_NAME}", "system:nodes"),
        proxy_conf=conf("proxy", "system:kube-proxy", None),
    )
