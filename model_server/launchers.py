"""How POST /retrain/trigger starts a retraining run: one interface, two launchers.

- `LocalLauncher`: `python -m training_job retrain --source api [--force]` as a detached
  process with the server's environment (on one machine).
- `KubernetesLauncher`: a Job created from the retraining CronJob, exactly as
  `kubectl create job --from=cronjob/NAME` builds it (in a cluster).

Either way the run itself takes the lease in the serving database, decides, and records its
decision; the launcher only starts it.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from housing.urls import absolute_sqlite_url
from model_server.auth import KEY_ENV
from model_server.errors import ConflictError, ModelServerError
from model_server.settings import ServerSettings

log = logging.getLogger(__name__)

# The training job reads the serving database from this variable (training_job/settings.py).
SERVING_DATABASE_ENV = "TRAINING_SERVING_DATABASE_URL"
# What kubectl sets on a Job it creates from a CronJob by hand.
INSTANTIATE_ANNOTATION = "cronjob.kubernetes.io/instantiate"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# Seconds each Kubernetes API call may take.
API_TIMEOUT = 10.0
# The name the API server records in the Job's managedFields: who made it, at a glance.
FIELD_MANAGER = "california-housing-predictor"
# Longest Job name whose pods' job-name label (<= 63) still fits.
MAX_JOB_NAME = 63


class LaunchError(ModelServerError):
    """The run could not be started (the launcher's own problem, not the request's)."""

    status_code = 502


class Launcher(Protocol):
    kind: str

    def launch(self, force: bool) -> dict[str, Any]:
        """Start a run; what was started (JSON-ready). ConflictError if this launcher knows
        that a run it started is still going, LaunchError if it cannot start one."""
        ...


def retrain_args(force: bool) -> list[str]:
    """The arguments after `python -m training_job` for a run the API asked for."""
    return ["retrain", "--source", "api", *(["--force"] if force else [])]


class LocalLauncher:
    """Spawns the training job as a detached process (its own session: it outlives a server
    restart), output appended to a file under the log folder."""

    kind = "local"

    def __init__(self, workdir: Path, log_dir: Path, database_url: str) -> None:
        self.workdir = workdir.resolve()
        self.log_dir = log_dir if log_dir.is_absolute() else self.workdir / log_dir
        self.database_url = absolute_sqlite_url(database_url)
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def launch(self, force: bool) -> dict[str, Any]:
        # One at a time from this server, even before the run takes the lease.
        with self._lock:
            process = self._process
            if process is not None and process.poll() is None:
                raise ConflictError(
                    f"a retraining run started from this server is going: process {process.pid}"
                )
            launched, process = self._spawn(force)
            self._process = process
        # Reap it when it ends (no zombie), and say how it ended.
        threading.Thread(
            target=self._reap, args=(process,), name="retrain-reaper", daemon=True
        ).start()
        return launched

    def _spawn(self, force: bool) -> tuple[dict[str, Any], subprocess.Popen[bytes]]:
        command = [sys.executable, "-m", "training_job", *retrain_args(force)]
        # The server's API keys stay with the server: a training run needs none.
        env = {name: value for name, value in os.environ.items() if name not in KEY_ENV}
        # The run must use the database the server reads its lease and decisions from.
        env.setdefault(SERVING_DATABASE_ENV, self.database_url)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        log_file = self.log_dir / f"retrain-{stamp}-{secrets.token_hex(3)}.log"
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            with log_file.open("ab") as output:
                process = subprocess.Popen(
                    command,
                    cwd=self.workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as exc:
            raise LaunchError(f"could not start the retraining process: {exc}") from exc
        log.info("started retraining process %d: %s (output %s)", process.pid, command, log_file)
        launched = {
            "launcher": self.kind,
            "pid": process.pid,
            "command": command,
            "cwd": str(self.workdir),
            "log_file": str(log_file),
        }
        return launched, process

    @staticmethod
    def _reap(process: subprocess.Popen[bytes]) -> None:
        code = process.wait()
        log.info("retraining process %d exited %d", process.pid, code)


def job_from_cronjob(
    cronjob: dict[str, Any], name: str, namespace: str | None, force: bool
) -> dict[str, Any]:
    """The Job `kubectl create job NAME --from=cronjob/CRONJOB` creates, as a JSON body.

    As kubectl (pkg/cmd/create/create_job.go, createJobFromCronJob): the job template's spec,
    labels and annotations (over cronjob.kubernetes.io/instantiate=manual), and a controller
    reference to the CronJob without blockOwnerDeletion (which would need the
    cronjobs/finalizers permission). One addition: the training container's arguments get
    `--source api` (and `--force`), so that the run records who asked.
    """
    template = cronjob["spec"]["jobTemplate"]
    template_meta = template.get("metadata") or {}
    annotations = {INSTANTIATE_ANNOTATION: "manual", **(template_meta.get("annotations") or {})}
    metadata: dict[str, Any] = {
        "name": name,
        "annotations": annotations,
        "ownerReferences": [
            {
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "name": cronjob["metadata"]["name"],
                "uid": cronjob["metadata"]["uid"],
                "controller": True,
            }
        ],
    }
    if template_meta.get("labels"):
        metadata["labels"] = dict(template_meta["labels"])
    if namespace:
        metadata["namespace"] = namespace
    spec = json.loads(json.dumps(template["spec"]))  # a deep copy, JSON all the way
    _mark_retrain_containers(spec, force)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}


def _mark_retrain_containers(job_spec: dict[str, Any], force: bool) -> None:
    """Append the API's retrain arguments to each container that runs `training_job retrain`."""
    pod = job_spec.get("template", {}).get("spec", {})
    for container in pod.get("containers", []):
        words = [*(container.get("command") or []), *(container.get("args") or [])]
        if "training_job" not in words or "retrain" not in words:
            continue
        args = list(container.get("args") or [])
        if "--source" in args:  # replace the schedule's own source
            at = args.index("--source")
            del args[at : at + 2]
        args += retrain_args(force)[1:]
        container["args"] = args


def manual_job_name(cronjob: str) -> str:
    """NAME-manual-<6 hex>, the CronJob's name shortened so that the whole fits 63."""
    suffix = f"-manual-{secrets.token_hex(3)}"
    return cronjob[: MAX_JOB_NAME - len(suffix)].rstrip("-.") + suffix


class KubernetesLauncher:
    """Creates a Job from the retraining CronJob through the Kubernetes API.

    Configured lazily, at the first trigger: in a pod from its service account
    (KUBERNETES_SERVICE_HOST), else from the kubeconfig (KUBECONFIG or ~/.kube/config).
    Needs get on that CronJob and create on Jobs in its namespace (the chart's Role). Only
    the lease says whether a run is going: listing Jobs would need more permissions.
    """

    kind = "kubernetes"

    def __init__(self, cronjob: str, namespace: str | None = None) -> None:
        self.cronjob = cronjob
        self._namespace = namespace
        self._api: Any = None
        self._lock = threading.Lock()

    def _connect(self) -> tuple[Any, str]:
        with self._lock:
            if self._api is None:
                from kubernetes import client, config

                configuration = client.Configuration()
                namespace = self._namespace
                if os.environ.get("KUBERNETES_SERVICE_HOST"):
                    config.load_incluster_config(client_configuration=configuration)
                    if namespace is None and SERVICE_ACCOUNT_NAMESPACE.exists():
                        namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
                else:
                    # Read KUBECONFIG now: the client reads it once, when first imported.
                    path = os.environ.get("KUBECONFIG") or None
                    config.load_kube_config(config_file=path, client_configuration=configuration)
                    if namespace is None:
                        _, active = config.list_kube_config_contexts(config_file=path)
                        namespace = (active or {}).get("context", {}).get("namespace")
                self._namespace = namespace or "default"
                self._api = client.BatchV1Api(client.ApiClient(configuration))
            return self._api, self._namespace or "default"

    def launch(self, force: bool) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException
        from kubernetes.config.config_exception import ConfigException
        from urllib3.exceptions import HTTPError

        try:
            api, namespace = self._connect()
        except (ConfigException, OSError) as exc:
            raise LaunchError(f"no Kubernetes configuration: {exc}") from exc
        try:
            # Raw JSON, not the client's models: fields newer than the client are kept.
            response = api.read_namespaced_cron_job(
                self.cronjob, namespace, _preload_content=False, _request_timeout=API_TIMEOUT
            )
            cronjob = json.loads(response.data)
            try:
                body = job_from_cronjob(cronjob, manual_job_name(self.cronjob), namespace, force)
            except (KeyError, TypeError, AttributeError) as exc:
                raise LaunchError(f"{self.cronjob} is not a usable CronJob: {exc!r}") from exc
            response = api.create_namespaced_job(
                namespace,
                body,
                field_manager=FIELD_MANAGER,
                _preload_content=False,
                _request_timeout=API_TIMEOUT,
            )
            created = json.loads(response.data)
        except ApiException as exc:
            raise LaunchError(
                f"the Kubernetes API refused ({exc.status} {exc.reason}): {_api_message(exc)}"
            ) from exc
        except (HTTPError, OSError) as exc:
            raise LaunchError(f"the Kubernetes API is unreachable: {exc}") from exc
        job = created.get("metadata", {})
        log.info("created Job %s/%s from CronJob %s", namespace, job.get("name"), self.cronjob)
        return {
            "launcher": self.kind,
            "namespace": namespace,
            "cronjob": self.cronjob,
            "job": job.get("name"),
            "uid": job.get("uid"),
            "args": retrain_args(force),
        }


def _api_message(exc: Any) -> str:
    try:
        return str(json.loads(exc.body).get("message") or exc.body)
    except (TypeError, ValueError, AttributeError):
        return str(exc.body or exc)


def make_launcher(settings: ServerSettings) -> Launcher:
    if settings.retrain_launcher == "kubernetes":
        return KubernetesLauncher(settings.retrain_cronjob, settings.retrain_namespace)
    return LocalLauncher(settings.retrain_workdir, settings.retrain_log_dir, settings.database_url)
