"""Background threads run at a lower priority than the request path (model_server/priority.py)."""

from __future__ import annotations

import threading
import time
from typing import Any

from model_server.priority import BACKGROUND_NICE, WRITER_NICE, lower_current_thread, thread_nice
from model_server.records.writer import RecordWriter
from model_server.signals import InputWindows, SignalsMonitor


def test_a_lowered_thread_is_niced_and_the_others_are_not() -> None:
    main = threading.get_native_id()
    before = thread_nice(main)
    seen: dict[str, int] = {}
    release = threading.Event()

    def background() -> None:
        lower_current_thread()
        seen["tid"] = threading.get_native_id()
        release.wait(10)

    thread = threading.Thread(target=background)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while "tid" not in seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert thread_nice(seen["tid"]) == min(before + BACKGROUND_NICE, 19)
        assert thread_nice(main) == before
    finally:
        release.set()
        thread.join()


def _wait_for_nice(tid: int, name: str) -> int:
    """The thread's nice value once it differs from this thread's."""
    deadline = time.monotonic() + 10
    while thread_nice(tid) == thread_nice(threading.get_native_id()):
        assert time.monotonic() < deadline, f"the {name} thread was never niced"
        time.sleep(0.01)
    return thread_nice(tid)


class _Unreadable:
    """A store that cannot be read: the monitor logs it and keeps going."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("no database in this test")


def test_the_signals_thread_runs_niced() -> None:
    monitor = SignalsMonitor(
        windows=InputWindows(10),
        served=lambda: [],
        records=_Unreadable(),  # type: ignore[arg-type]
        retrain=_Unreadable(),  # type: ignore[arg-type]
        metrics=_Unreadable(),  # type: ignore[arg-type]
        interval=60.0,
        live_window=10,
    )
    monitor.start()
    try:
        thread = monitor._thread
        assert thread is not None and thread.native_id is not None
        before = thread_nice(threading.get_native_id())
        niced = _wait_for_nice(thread.native_id, "signals")
        assert niced == min(before + BACKGROUND_NICE, 19)
    finally:
        monitor.stop()


def test_the_log_writer_runs_less_niced_than_the_signals() -> None:
    # It must keep up with the request path: niced, but less than the signals thread.
    assert 0 < WRITER_NICE < BACKGROUND_NICE
    writer = RecordWriter(_Unreadable())  # type: ignore[arg-type]
    writer.start()
    try:
        thread = writer._writer
        assert thread is not None and thread.native_id is not None
        before = thread_nice(threading.get_native_id())
        assert _wait_for_nice(thread.native_id, "records-writer") == min(before + WRITER_NICE, 19)
    finally:
        writer.stop(timeout=1.0)
