"""SIGTERM while the server loads its first version: a clean stop (exit 0, no traceback), and
the version that finishes loading afterwards is never announced as served."""

from __future__ import annotations

import signal
import time
from pathlib import Path

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
