"""A real Prometheus for the tests: configured like the chart's ServiceMonitor would configure
the operator's Prometheus, bound to 127.0.0.1, with a temporary TSDB, stopped by the test."""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.servers import free_port, wait_http

# ServiceMonitor relabeling keys (prometheus-operator, camelCase) -> Prometheus's.
RELABEL_KEYS = {
    "sourceLabels": "source_labels",
    "separator": "separator",
    "targetLabel": "target_label",
    "regex": "regex",
    "modulus": "modulus",
    "replacement": "replacement",
    "action": "action",
}


def scrape_config(
    service_monitor: dict[str, Any], target: str, pod: str, interval: str = "1s"
) -> dict[str, Any]:
    """The scrape job that the Prometheus operator makes of `service_monitor`'s first endpoint,
    for one pod at `target`: its path and relabelings, and the target labels the operator adds
    from Kubernetes (namespace, service, pod, container, endpoint)."""
    meta = service_monitor["metadata"]
    endpoint = service_monitor["spec"]["endpoints"][0]
    relabelings = []
    for relabeling in endpoint.get("relabelings", []):
        unknown = set(relabeling) - set(RELABEL_KEYS)
        assert not unknown, f"relabeling keys not handled here: {unknown}"
        relabelings.append({RELABEL_KEYS[k]: v for k, v in relabeling.items()})
    return {
        "job_name": f"serviceMonitor/{meta['namespace']}/{meta['name']}/0",
        "metrics_path": endpoint.get("path", "/metrics"),
        "scheme": endpoint.get("scheme", "http"),
        "scrape_interval": interval,
        "scrape_timeout": interval,
        "static_configs": [
            {
                "targets": [target],
                "labels": {
                    "namespace": meta["namespace"],
                    "service": f"{meta['name']}-metrics",
                    "pod": pod,
                    "container": "kserve-container",
                    "endpoint": endpoint["port"],
                },
            }
        ],
        "relabel_configs": relabelings,
    }


@dataclass
class PrometheusProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        body = response.json()
        if body.get("status") != "success":
            raise PromQLError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; the result's series (a scalar counts as one)."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


class PromQLError(AssertionError):
    pass


def start_prometheus(
    binary: str, workdir: Path, scrape: dict[str, Any], rule_files: list[Path]
) -> PrometheusProcess:
    """Prometheus on 127.0.0.1 (a free port), scraping and evaluating rules every second."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [scrape],
    }
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    log_path = workdir / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    prometheus = PrometheusProcess(process, port, log_path)
    try:
        wait_http(f"{prometheus.url}/-/ready", timeout=30, process=process)
    except Exception:
        prometheus.stop()
        raise AssertionError(f"Prometheus did not start:\n{prometheus.log()[-3000:]}") from None
    return prometheus


def wait_until(condition: Any, timeout: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if not last:
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}: {last}")
