"""Run the chart's containers as this machine's processes (or as docker containers).

From a rendered manifest this takes a container's command, args, env, ports, volume mounts and
probes, and starts it the way the kubelet would, with only what a machine without a cluster
must change, each substitution explicit:
- Secrets: secretKeyRef values are read from the rendered Secret (or given by the test);
- $(VAR) references in env values and args are expanded like Kubernetes does;
- Service hostnames (NAME, NAME.NS, NAME.NS.svc, NAME.NS.svc.cluster.local) map to 127.0.0.1,
  and a Service port to its target container port;
- volume mount paths map to temporary folders; the image's files are a staged copy of the
  repository files the Dockerfile copies (its WORKDIR);
- `python`/`mlflow` run from this project's .venv (the images install the same lock file);
- the root filesystem is read-only in the pods: the process runs in a mount namespace where
  the image's files and the repository (the code and its .venv) are read-only bind mounts.
"""

from __future__ import annotations

import base64
import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.chart.conftest import REPO, find, pod_spec

VENV_BIN = Path(sys.executable).parent
TRAINING_DOCKERFILE = REPO / "docker" / "training-job.Dockerfile"


@functools.cache
def docker_context() -> Any:
    """docker/context.py, the reader of the Dockerfiles' COPY lines (a script, not a package)."""
    spec = importlib.util.spec_from_file_location("docker_context", REPO / "docker" / "context.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def training_image_files() -> list[str]:
    """What the training image's final stage copies into its WORKDIR, less the Python packages
    (the image installs those into its venv; here they are the .venv's editable install)."""
    return [
        path
        for path in docker_context().copy_sources(TRAINING_DOCKERFILE, final_stage_only=True)
        if not (REPO / path / "__init__.py").exists()
    ]


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined variables are replaced, $$ escapes, others stay."""
    return re.sub(
        r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
        lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
        value,
    )


@dataclass
class Cluster:
    """What the rendered manifests say about Services and Secrets."""

    docs: list[dict[str, Any]]
    namespace: str
    secrets: dict[tuple[str, str], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for s in find(self.docs, "Secret"):
            for key, b64 in s.get("data", {}).items():
                self.secrets[(s["metadata"]["name"], key)] = base64.b64decode(b64).decode()

    def service_hosts(self) -> dict[str, str]:
        """Every in-cluster hostname of every Service -> 127.0.0.1."""
        hosts = {}
        for svc in find(self.docs, "Service"):
            name = svc["metadata"]["name"]
            for host in (
                f"{name}.{self.namespace}.svc.cluster.local",
                f"{name}.{self.namespace}.svc",
                f"{name}.{self.namespace}",
                name,
            ):
                hosts[host] = "127.0.0.1"
        return hosts

    def localise(self, value: str) -> str:
        for host in sorted(self.service_hosts(), key=len, reverse=True):
            value = re.sub(rf"(?<=[/@]){re.escape(host)}(?=[:/]|$)", "127.0.0.1", value)
        return value

    def env(self, container: dict[str, Any], extra: dict[str, str] | None = None) -> dict[str, str]:
        env: dict[str, str] = {}
        for entry in container.get("env", []):
            if "value" in entry:
                env[entry["name"]] = expand(str(entry["value"]), env)
            else:
                ref = entry["valueFrom"]["secretKeyRef"]
                env[entry["name"]] = self.secrets[(ref["name"], ref["key"])]
        env = {k: self.localise(v) for k, v in env.items()}
        env.update(extra or {})
        return env


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]


def base_env() -> dict[str, str]:
    """A clean environment: no MLFLOW_/TRAINING_/MODEL_SERVER_/AWS_/DVC_ variable of this
    session (no pod has them)."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "TRAINING_", "MODEL_SERVER_", "AWS_", "CH_", "DVC_"))
    }
    keep["PATH"] = f"{VENV_BIN}{os.pathsep}{keep.get('PATH', '')}"
    # What the images set (docker/*.Dockerfile): writable HOME and caches under /tmp.
    keep["PYTHONUNBUFFERED"] = "1"
    return keep


def launch(
    cluster: Cluster,
    container: dict[str, Any],
    volumes: dict[str, Path],
    workdir: Path,
    log: Path,
    *,
    replace_args: dict[str, str] | None = None,
    extra_env: dict[str, str] | None = None,
    wrapper: list[str] | None = None,
) -> Running:
    """Start CONTAINER as a process: its command and args with env expanded, mounts mapped."""
    env = cluster.env(container, extra_env)

    def mapped(text: str) -> str:
        for mount, path in sorted(volumes.items(), key=lambda kv: len(kv[0]), reverse=True):
            text = text.replace(mount, str(path))
        return cluster.localise(text)

    argv = [expand(a, env) for a in container["command"] + container.get("args", [])]
    argv = [mapped((replace_args or {}).get(a, a)) for a in argv]
    exe = {"python": sys.executable, "mlflow": str(VENV_BIN / "mlflow")}
    argv[0] = exe.get(argv[0], argv[0])
    argv = (wrapper or []) + argv
    env = {k: mapped(v) for k, v in env.items()}
    handle = log.open("wb")
    process = subprocess.Popen(
        argv, env={**base_env(), **env}, cwd=workdir, stdout=handle, stderr=subprocess.STDOUT
    )
    return Running(process, log)


def stage_training_image(target: Path) -> Path:
    """The training image's WORKDIR: the files docker/training-job.Dockerfile copies."""
    for rel in training_image_files():
        src, dst = REPO / rel, target / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)
    return target


def http(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def wait_http(url: str, running: Running, timeout: float, expect: int = 200) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            raise AssertionError(
                f"exited {running.process.returncode} before {url} answered:\n{running.output()}"
            )
        try:
            status, text = http("GET", url, timeout=3)
            if status == expect:
                return
            last = f"{status} {text[:200]}"
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(0.5)
    raise AssertionError(
        f"{url} did not answer {expect} in {timeout}s (last: {last}):\n{running.output()}"
    )


def probe_url(container: dict[str, Any], probe: str) -> str:
    get = container[probe]["httpGet"]
    port = get["port"]
    if isinstance(port, str):  # a named container port
        port = next(p["containerPort"] for p in container["ports"] if p["name"] == port)
    return f"http://127.0.0.1:{port}{get['path']}"


def service_target(
    docs: list[dict[str, Any]], service_name: str, port_name: str, container: dict[str, Any]
) -> int:
    """The container port behind a Service's named port."""
    svc = find(docs, "Service", service_name)[0]
    target = next(p for p in svc["spec"]["ports"] if p["name"] == port_name)["targetPort"]
    if isinstance(target, str):
        target = next(p["containerPort"] for p in container["ports"] if p["name"] == target)
    return int(target)


@functools.cache
def env_vars_read_by(package: str) -> frozenset[str]:
    """Environment variables the package reads: its pydantic-settings fields (prefix + name, or
    their aliases) and any name spelled out in its source (os.environ / os.getenv)."""
    script = r"""
import importlib, json, pkgutil, sys
from pydantic import AliasChoices
from pydantic_settings import BaseSettings
pkg = importlib.import_module(sys.argv[1])
names = set()
for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
    if info.name.endswith(".__main__"):  # runs the program
        continue
    try:
        module = importlib.import_module(info.name)
    except Exception:  # e.g. alembic's migrations env, importable only under alembic
        continue
    for obj in vars(module).values():
        if isinstance(obj, type) and issubclass(obj, BaseSettings) and obj is not BaseSettings:
            prefix = obj.model_config.get("env_prefix", "")
            for fname, f in obj.model_fields.items():
                alias = f.validation_alias
                if isinstance(alias, AliasChoices):
                    names.update(str(c).upper() for c in alias.choices)
                elif isinstance(alias, str):
                    names.add(alias.upper())
                else:
                    names.add((prefix + (f.alias or fname)).upper())
print(json.dumps(sorted(names)))
"""
    result = subprocess.run(
        [sys.executable, "-c", script, package],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env=base_env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    names = set(json.loads(result.stdout))
    source = "\n".join(p.read_text() for p in (REPO / package).rglob("*.py"))
    names.update(re.findall(r"[\"']([A-Z][A-Z0-9_]{3,})[\"']", source))
    return frozenset(names)


# Variables read by libraries, not by our code: MLflow's client reads MLFLOW_TRACKING_URI,
# boto3/s3fs (DVC's and MLflow's S3 access) read the AWS_* ones.
LIBRARY_ENV = {
    "MLFLOW_TRACKING_URI",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ENDPOINT_URL",
    # Telemetry switches (the chart's telemetry.enabled=false): MLflow's and DVC's own.
    "MLFLOW_DISABLE_TELEMETRY",
    "DO_NOT_TRACK",
    "DVC_NO_ANALYTICS",
}


def unread_env(container: dict[str, Any], package: str) -> list[str]:
    """Env names the chart gives CONTAINER that neither the package nor a library reads.
    Names used only to build other values through $(NAME) are Kubernetes-side helpers."""
    entries = container.get("env", [])
    referenced = {
        m for e in entries for m in re.findall(r"\$\(([A-Za-z0-9_]+)\)", e.get("value", ""))
    }
    read = env_vars_read_by(package) | LIBRARY_ENV
    return [e["name"] for e in entries if e["name"] not in read and e["name"] not in referenced]


def containers(docs: list[dict[str, Any]], kind: str, suffix: str = "") -> list[dict[str, Any]]:
    return pod_spec(find(docs, kind, suffix)[0])["containers"]


def read_only(*paths: Path) -> list[str]:
    """A command prefix that runs the rest with PATHS mounted read-only (a private mount
    namespace, as root), like the pods' read-only root filesystem."""
    if os.geteuid() != 0:
        raise AssertionError("the containers-as-processes tests run as root (unshare -m)")
    script = (
        'for d in "$@"; do [ "$d" = -- ] && break; mount --bind -o ro "$d" "$d"; done; '
        'while [ "$1" != -- ]; do shift; done; shift; exec "$@"'
    )
    return ["unshare", "-m", "sh", "-ec", script, "read-only-root", *map(str, paths), "--"]


# CHART_CONTAINER_RUNTIME=docker runs the same tests with the built images instead of
# processes (docker/build-local.sh builds them here): `docker run` with the rendered command,
# args and env, the pod's user, a read-only root filesystem, no capabilities, and the volume
# mounts as host folders; host networking (this machine's dockerd has no bridge).
RUNTIME = os.environ.get("CHART_CONTAINER_RUNTIME", "process")


def docker_launch(
    cluster: Cluster,
    pod: dict[str, Any],
    container: dict[str, Any],
    volumes: dict[str, Path],
    log: Path,
    *,
    replace_args: dict[str, str] | None = None,
    extra_env: dict[str, str] | None = None,
) -> Running:
    env = cluster.env(container, extra_env)
    argv = [expand(a, env) for a in container["command"] + container.get("args", [])]
    argv = [cluster.localise((replace_args or {}).get(a, a)) for a in argv]
    sc = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    name = f"chart-test-{uuid.uuid4().hex[:10]}"
    cmd = [
        "docker",
        "run",
        "--rm",
        "--name",
        name,
        "--network",
        "host",
        "--read-only",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--user",
        f"{sc.get('runAsUser', 10001)}:{sc.get('runAsGroup', 10001)}",
    ]
    for mount, path in volumes.items():
        cmd += ["-v", f"{path}:{mount}"]
    for key, value in env.items():
        cmd += ["-e", f"{key}={value}"]
    cmd += ["--entrypoint", argv[0], container["image"], *argv[1:]]
    handle = log.open("wb")
    process = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT)
    return Running(process, log)
