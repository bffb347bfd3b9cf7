"""Background threads yield the core to the request path.

Linux schedules each thread as a task of its own. A background thread running C code without
the GIL (SQLite writing the prediction log, numpy computing drift) is then an equal of the
event loop for the CPU: on a busy core the kernel shares it between them, and a request waits
for the other's time slice. A higher nice value for that thread alone lets the event loop run
first whenever it is ready; the background work still gets the rest of the core.

How much lower is the thread's own trade-off: the signals thread can wait (BACKGROUND_NICE),
the prediction log's writer cannot fall behind for long (WRITER_NICE).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

# Nice 10 weighs about a tenth of nice 0 in the kernel's fair scheduler (110 against 1024).
BACKGROUND_NICE = 10
# The log writer needs up to ~17% of a core saturated by 100-row requests. At nice 10 it gets
# under a tenth and starved (350,900 predictions behind after 8 s, bench/README.md); nice 5
# weighs 335 against 1024, a quarter of a contended core: it keeps up, and it preempts the
# event loop less (bench/serving.py, 5 alternating pairs: single-row p99 6.6-7.2 ms against
# 7.2-9.4 at nice 0, throughput up in 9 of the 10 measurements).
WRITER_NICE = 5


def lower_current_thread(by: int = BACKGROUND_NICE) -> None:
    """Raise the calling thread's nice value by `by` (capped at 19), never the process's:
    the request path keeps its own."""
    tid = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(current + by, 19))
    except OSError as exc:  # a seccomp profile may refuse it: run at the same priority
        log.warning(
            "could not lower the priority of thread %s: %s", threading.current_thread().name, exc
        )


def thread_nice(tid: int) -> int:
    """The nice value of thread `tid` of this process, from /proc (for tests and diagnostics)."""
    stat = Path(f"/proc/self/task/{tid}/stat").read_text()
    # Field 19 is nice; the command name (field 2) may contain spaces, so count after ")".
    return int(stat.rsplit(")", 1)[1].split()[16])
