"""SIGTERM while the server loads its first version: a clean stop (exit 0, no traceback), and
the version that finishes loading afterwards is never announced as served.

The end-to-end test cannot choose when the load ends relative to the signal (before the fix it
failed only when the load ended within the 5 s the shutdown waits for the watcher); the watcher
test below can."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from model_server.loader import LoadedModel, ModelRef
from model_server.metrics import ServerMetrics
from model_server.watcher import ModelWatcher
from tests.model_server.test_watcher import FakeRegistry, Served
from tests.support.pipeline import TrainedRegistry
from tests.support.server import start_server, wait_for


def test_sigterm_while_loading_stops_cleanly_without_serving(
    trained_registry: TrainedRegistry, tmp_path: Path
) -> None:
    server = start_server(tmp_path, trained_registry.tracking_uri)
    try:
        # The load takes seconds here (download, ONNX conversion and its check): signal inside.
        wait_for(lambda: "loading california-housing version" in server.log(), 120, "loading")
        assert "serving california-housing version" not in server.log()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(60)
    finally:
        server.stop()
    time.sleep(0.5)  # a daemon thread still loading cannot write once the process is gone
    log = server.log()
    assert server.process.returncode == 0, log[-3000:]
    assert "Traceback" not in log and "Error" not in log, log[-3000:]
    assert "Stopping the model server" in log, log[-3000:]
    assert "serving california-housing version" not in log, log[-3000:]


class BlockingRegistry(FakeRegistry):
    """A registry whose load waits until the test lets it finish."""

    def __init__(self) -> None:
        super().__init__(["1"])
        self.loading = threading.Event()
        self.finish = threading.Event()

    def load(self, ref: ModelRef) -> LoadedModel:
        self.loading.set()
        assert self.finish.wait(30)
        return super().load(ref)


def test_a_version_that_finishes_loading_after_halt_is_never_published() -> None:
    """The deterministic half of the test above: halt() (what a signal calls first) while a
    load is in progress; the load then completes; nothing is published."""
    registry = BlockingRegistry()
    served = Served()
    watcher = ModelWatcher(
        registry, served.publish, served.version, ServerMetrics("m", CollectorRegistry()), 30.0
    )
    watcher.start()
    try:
        assert registry.loading.wait(30)
        watcher.halt()
        registry.finish.set()
    finally:
        watcher.stop()
    assert registry.loads == ["1"] and served.history == []
