"""Fault injection for the crash-safety tests.

`TRAINING_JOB_FAILPOINT=<name>` makes the process SIGKILL itself when it reaches the point
`<name>`: the tests use it to prove that a run killed there changes nothing in the registry.
Unset (always, in production) it costs one environment lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "TRAINING_JOB_FAILPOINT"


def hit(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
