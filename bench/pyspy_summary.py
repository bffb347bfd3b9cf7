"""Summarize a py-spy raw profile (`py-spy record --format raw --threads`) by request step.

    python bench/pyspy_summary.py PROFILE.raw [--cpu '{"MainThread": 508, "inference": 187}']

Each sample is charged to the first frame, from the innermost outwards, that matches a rule
below (so a log line written while sending a response counts as logging); samples whose
innermost frame is a wait (a condition, the executor's queue, epoll, the GIL taken back after
os.urandom, SQLite's fsync at COMMIT) are idle. Other calls that release the GIL (socket and
log writes, sqlite3 steps, onnxruntime) still include the wait to take it back: read those as
upper bounds. Given each thread's measured CPU time per request (bench/serving.py reads it
from /proc), each thread's samples are scaled to it: microseconds per request by step (an
estimate within each thread: sampling, not tracing).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

# Innermost frames that are waiting, not computing (py-spy's idle detection misses them
# in --nonblocking mode).
IDLE_LEAVES = (
    "Condition.wait ",
    "Event.wait ",
    "_worker (concurrent/futures/thread.py",
    "EpollSelector.select ",
    "BaseSelector.select ",
    "Thread._wait_for_tstate_lock ",
    "uuid4 (uuid.py",  # os.urandom releases the GIL: the sample is the wait to take it back
    # SQLite's COMMIT in WAL mode with synchronous=FULL: an fsync of the WAL, then the GIL.
    "DefaultDialect.do_commit ",
)

# (category, substrings of a frame), tried on each frame from the innermost outwards.
RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ONNX predict (onnxruntime)", ("onnxruntime/", "OnnxPredictor.predict")),
    (
        "compiled trees (lleaves + geo features)",
        ("lleaves/", "model_server/compiled_trees.py", "housing/estimator.py"),
    ),
    ("sklearn predict", ("sklearn/", "SklearnPredictor.predict")),
    ("logging (access log lines)", ("logging/__init__.py", "kserve/logging", "timing_asgi/")),
    ("metrics (prometheus_client)", ("prometheus_client/", "model_server/metrics.py")),
    (
        "records + ids (accounting, writer.submit)",
        ("model_server/accounting.py", "model_server/records/", "model_server/ids.py"),
    ),
    ("our middleware / error wiring", ("model_server/middleware.py", "protocol_of ")),
    ("validation (v1_features, ranges)", ("model_server/protocol.py", "model_server/validation")),
    ("drift window", ("model_server/signals.py",)),
    ("response serialization", ("fastapi/responses.py", "orjson", "render ", "postprocess ")),
    ("JSON decode (KServe DataPlane.decode)", ("DataPlane.decode", "Request.body", "json.")),
    (
        "thread hop (executor, futures, GIL hand-off)",
        ("concurrent/futures", "run_in_executor", "threading.py", "_write_to_self", "threadsafe"),
    ),
    ("our error wiring", ("model_server/errors.py",)),
    ("our model code (preprocess, Job)", ("model_server/model.py",)),
    ("KServe model + dataplane", ("kserve/",)),
    ("FastAPI / Starlette routing, middleware", ("fastapi/", "starlette/", "pydantic")),
    ("uvicorn HTTP (httptools)", ("uvicorn/", "httptools")),
    ("asyncio loop, sockets", ("asyncio/", "selectors.py", "socket.py")),
)
# Background threads, charged whole.
THREADS = {
    "records-writer": "SQLite writer thread (records-writer)",
    "signals": "signals thread (drift, live error)",
    "champion-watcher": "registry watcher thread",
}


def thread_of(frames: list[str]) -> str:
    """The Python thread of a --threads sample ("thread (TID): NAME"), pool index dropped."""
    if not frames[0].startswith("thread ("):
        return "all threads"
    return re.sub(r"_\d+$", "", frames[0].split(": ", 1)[-1])


def classify(frames: list[str]) -> str:
    if frames[0].startswith("thread ("):
        name = thread_of(frames)
        frames = frames[1:]
        if frames and frames[-1].startswith(IDLE_LEAVES):
            return "idle"
        for prefix, category in THREADS.items():
            if name.startswith(prefix):
                return category
    elif frames and frames[-1].startswith(IDLE_LEAVES):
        return "idle"
    for frame in reversed(frames):
        for category, needles in RULES:
            if any(needle in frame for needle in needles):
                return category
    return "other (interpreter, unknown)"


def summarize(path: Path) -> dict[str, Counter[str]]:
    """On-CPU samples by thread, then by category."""
    counts: dict[str, Counter[str]] = {}
    for line in path.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        frames = stack.split(";")
        category = classify(frames)
        if category != "idle":
            counts.setdefault(thread_of(frames), Counter())[category] += int(number)
    return counts


def report(path: Path, cpu_us_by_thread: Mapping[str, float] | None = None) -> str:
    """Categories as shares of the on-CPU samples; with each thread's measured CPU us per
    request, each thread's samples are scaled to its own CPU time (sampling alone
    over-counts threads that wait for the GIL inside calls that release it)."""
    counts = summarize(path)
    busy = sum(sum(c.values()) for c in counts.values())
    micro: Counter[str] = Counter()
    if cpu_us_by_thread:
        for thread, categories in counts.items():
            total = sum(categories.values())
            for category, count in categories.items():
                micro[category] += cpu_us_by_thread.get(thread, 0.0) * count / total
    merged: Counter[str] = sum(counts.values(), Counter())
    lines = [f"{path.name}: {busy} samples on CPU in threads {', '.join(sorted(counts))}"]
    order = micro.most_common() if micro else merged.most_common()
    for category, _ in order:
        share = merged[category] / busy if busy else 0.0
        scaled = f"{micro[category]:8.0f} us/req" if micro else ""
        lines.append(f"  {category:<46} {share * 100:5.1f}% of samples {scaled}")
    if micro:
        lines.append(
            f"  {'total (measured CPU per request)':<46} {'':>17} {sum(micro.values()):8.0f} us/req"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument(
        "--cpu",
        type=json.loads,
        default=None,
        help='measured CPU us per request by thread, as JSON: {"MainThread": 508, ...}',
    )
    args = parser.parse_args(argv)
    print(report(args.profile, args.cpu))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
