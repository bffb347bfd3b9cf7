"""model_server.logs.configure_logging: what uvicorn's access logger is left with."""

from __future__ import annotations

import subprocess
import sys

# In a child: logging's configuration is process-wide, and other tests share this process.
PROBE = """
import logging
from model_server.logs import configure_logging
configure_logging("INFO", access_log={access_log})
print(logging.getLogger("uvicorn.access").hasHandlers())
"""


def has_handlers(access_log: bool) -> bool:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(access_log=access_log)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()
    return out[-1] == "True"


def test_without_the_access_log_uvicorn_finds_no_handler_and_skips_the_line() -> None:
    # uvicorn's protocol asks hasHandlers() once per connection; False skips building the
    # line on every request (a logger merely silenced at WARNING still had it built).
    assert has_handlers(access_log=False) is False


def test_with_the_access_log_it_has_its_handler() -> None:
    assert has_handlers(access_log=True) is True
