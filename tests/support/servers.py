"""Real servers for the tests: free ports, readiness waits, PostgreSQL databases, MLflow."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

# The tests' PostgreSQL (scripts/postgres.sh starts it): role root, trusted on loopback.
PG_HOST = os.environ.get("RECORDS_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("RECORDS_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("RECORDS_TEST_PG_USER", "root")
PG_ADMIN_DSN = f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname=postgres connect_timeout=5"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll `url` until it answers 200, the process dies, or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass  # not listening yet
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def stop(process: subprocess.Popen[bytes], grace: float = 15) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def pg_url(database: str, host: str = PG_HOST, port: int = PG_PORT) -> str:
    """The SQLAlchemy URL of `database` on the test PostgreSQL (or through a proxy)."""
    return f"postgresql+psycopg://{PG_USER}@{host}:{port}/{database}"


@contextlib.contextmanager
def postgres_database(prefix: str = "test") -> Iterator[str]:
    """A new, empty database on the test PostgreSQL; its SQLAlchemy URL. Dropped, connections
    and all, afterwards."""
    import psycopg
    from psycopg import sql

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield pg_url(name)
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextlib.contextmanager
def mlflow_server(
    backend_uri: str,
    artifacts: Path,
    log: Path,
    *,
    port: int | None = None,
    serve_artifacts: bool = True,
    timeout: float = 180,
) -> Iterator[str]:
    """`mlflow server`, by default serving its own artifacts (the production shape); without
    `serve_artifacts` clients read the registry's artifact paths directly. Yields its URL;
    stopped, process group and all, on exit."""
    port = free_port() if port is None else port
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri]
    # mlflow 3 serves artifacts unless told not to: the flag both ways, not its absence.
    command += ["--serve-artifacts" if serve_artifacts else "--no-serve-artifacts"]
    command += ["--artifacts-destination", artifacts.as_uri()]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    # As the chart runs it: without MLflow 3's GenAI job runner (seven huey consumers, ~1.5 GB).
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            cwd=log.parent,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", timeout=timeout, process=process)
        yield url
    finally:
        stop(process)
