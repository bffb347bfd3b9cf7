"""Start, watch and stop the cluster's processes (one per component, like kubeadm's static Pods).

Each runs in a session of its own with its output in ``logs/<name>.log`` and its PID in
``pids/<name>.pid``, so ``down`` (or another process) can stop what ``up`` started.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


class ClusterError(RuntimeError):
    """A step of the cluster failed; the message names it and where its log is."""


def _pid_file(state: Path, name: str) -> Path:
    return state / "pids" / f"{name}.pid"


def log_file(state: Path, name: str) -> Path:
    return state / "logs" / f"{name}.log"


def running_pid(state: Path, name: str) -> int | None:
    """The daemon's PID if it runs (the PID file holds "PID BINARY"; a reused PID is not it)."""
    try:
        pid_text, binary = _pid_file(state, name).read_text().split(maxsplit=1)
        pid = int(pid_text)
        exe = Path(f"/proc/{pid}/exe").readlink()
    except (FileNotFoundError, ValueError):
        return None
    return pid if exe == Path(binary.strip()).resolve() and _alive(pid) else None


def start(state: Path, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
    """Start `argv` as the daemon `name` unless it runs already; its PID."""
    pid = running_pid(state, name)
    if pid is not None:
        return pid
    for folder in ("pids", "logs"):
        (state / folder).mkdir(parents=True, exist_ok=True)
    with log_file(state, name).open("ab") as out:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            close_fds=True,
        )
    _pid_file(state, name).write_text(f"{process.pid} {argv[0]}")
    return process.pid


def stop(state: Path, name: str, timeout: float = 20.0) -> None:
    """SIGTERM the daemon, SIGKILL it after `timeout` s; forget its PID."""
    pid = running_pid(state, name)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            log.info("%s did not stop within %.0f s: killing it", name, timeout)
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
    _pid_file(state, name).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        status = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return status != "Z"


def wait_for(
    what: str, check: Callable[[], bool], timeout: float, state: Path, name: str | None = None
) -> None:
    """Poll `check` until true; on time-out fail with the daemon's last log lines."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: S110 - not ready yet, whatever the reason: poll again
            pass
        if name is not None and running_pid(state, name) is None:
            raise ClusterError(f"{name} exited while waiting for {what}:\n{tail(state, name)}")
        time.sleep(0.25)
    detail = f":\n{tail(state, name)}" if name else ""
    raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")


def tail(state: Path, name: str, lines: int = 15) -> str:
    try:
        text = log_file(state, name).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text[-lines:]) + f"\n(log: {log_file(state, name)})"
