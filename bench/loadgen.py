"""The asyncio load generator of the benchmarks: raw HTTP/1.1 keep-alive sockets, one request
at a time per connection, in a process of its own pinned to the client core.

- closed loop (`--rate 0`): `--connections` clients, each sending its next request when the
  answer is in (bench/serving.py's fallback without wrk; bench/load.py's peak);
- open loop (`--rate R`): request k leaves at start + k / R whatever the answers do, on an idle
  connection (bench/load.py's hold); latency from the scheduled time.

    python bench/loadgen.py --port P --path /v1/... --bodies FILE --seconds S [--rate R]

prints `LOAD_JSON {summary}`; `run(...)` starts it pinned to a core and returns the summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REQUEST_TIMEOUT = 10.0  # seconds; an answer later than this is an error
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


class Connection:
    """One HTTP/1.1 keep-alive connection: one request at a time, Content-Length answers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> int:
        self.writer.write(request)
        # The head in one read, not a readline per header: the generator's own cost per
        # request is what limits the rate it can offer (bench/README.md).
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)
        found = _CONTENT_LENGTH.search(head)
        if found is None or len(status) < 2:
            raise ConnectionError("no status line or no Content-Length")
        await self.reader.readexactly(int(found.group(1)))
        return int(status[1])

    def close(self) -> None:
        self.writer.close()


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # seconds, of every answered request
    statuses: dict[int, int] = field(default_factory=dict)
    socket_errors: int = 0
    timeouts: int = 0
    lags: list[float] = field(default_factory=list)  # open loop: send time - scheduled time
    # open loop: (second of the schedule, latency) of every answer, for the slow seconds
    timeline: list[tuple[int, float]] = field(default_factory=list)

    def summary(self, elapsed: float, **extra: Any) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def pct(p: float) -> float:
            return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1e3 if lat else 0.0

        ok = self.statuses.get(200, 0)
        lags = sorted(self.lags)
        return {
            "requests": len(lat) + self.socket_errors + self.timeouts,
            "ok": ok,
            "status_errors": sum(n for s, n in self.statuses.items() if s != 200),
            "statuses": {str(s): n for s, n in sorted(self.statuses.items())},
            "socket_errors": self.socket_errors,
            "timeouts": self.timeouts,
            "send_lag_p50_ms": lags[len(lags) // 2] * 1e3 if lags else 0.0,
            "send_lag_p99_ms": lags[min(len(lags) - 1, int(0.99 * len(lags)))] * 1e3
            if lags
            else 0.0,
            "elapsed_s": elapsed,
            "achieved_per_s": ok / elapsed if elapsed > 0 else 0.0,
            "p50_ms": pct(50),
            "p90_ms": pct(90),
            "p99_ms": pct(99),
            "max_ms": lat[-1] * 1e3 if lat else 0.0,
            "mean_ms": sum(lat) / len(lat) * 1e3 if lat else 0.0,
            "slow_seconds": self.slow_seconds(),
            **extra,
        }

    def slow_seconds(self, over: float = 0.1) -> dict[str, float]:
        """{second of the schedule: its largest latency in ms} for the seconds whose largest
        latency is over `over` s: when the server stalled, and for how long the queue lasted."""
        worst: dict[int, float] = {}
        for second, latency in self.timeline:
            worst[second] = max(worst.get(second, 0.0), latency)
        return {str(s): round(v * 1e3, 1) for s, v in sorted(worst.items()) if v > over}


def http_requests(port: int, path: str, bodies: list[str]) -> list[bytes]:
    return [
        (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body.encode())}\r\n\r\n"
        ).encode()
        + body.encode()
        for body in bodies
    ]


async def closed_loop(
    port: int, path: str, bodies: list[str], connections: int, seconds: float
) -> dict[str, Any]:
    """`connections` clients, each sending its next request when the previous answer is in.
    Requests in flight at the deadline are waited for, so each one is counted."""
    requests = http_requests(port, path, bodies)
    tally = Tally()
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + seconds

    async def client(offset: int) -> None:
        turn = offset
        connection: Connection | None = None
        while loop.time() < deadline:
            try:
                if connection is None:
                    connection = await Connection.open(port)
                turn += 1
                t0 = loop.time()
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    status = await connection.exchange(requests[turn % len(requests)])
                tally.latencies.append(loop.time() - t0)
                tally.statuses[status] = tally.statuses.get(status, 0) + 1
            except TimeoutError:
                tally.timeouts += 1
            except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError):
                tally.socket_errors += 1
            else:
                continue
            if connection is not None:
                connection.close()
                connection = None
            await asyncio.sleep(0.05)
        if connection is not None:
            connection.close()

    await asyncio.gather(*(client(i * 7) for i in range(connections)))
    return tally.summary(loop.time() - started, mode="closed", connections=connections)


async def open_loop(
    port: int, path: str, bodies: list[str], rate: float, seconds: float, max_connections: int
) -> dict[str, Any]:
    """Request k is due at start + k / rate, whatever the answers to the others do; it leaves
    on the first idle one of `max_connections` keep-alive connections (a due request that finds
    none idle waits in line: its send lag). Latency runs from the due time. Every request is
    waited for (or times out).

    One task per connection takes due requests from a queue (before 2026-12-04: a task, a
    condition variable and a wait_for per request, which capped the offered rate near
    3,500 req/s on a busy client core)."""
    requests = http_requests(port, path, bodies)
    tally = Tally()
    loop = asyncio.get_running_loop()
    total = round(rate * seconds)
    due: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    opened = 0

    async def connection_worker() -> None:
        nonlocal opened
        connection: Connection | None = None
        while (item := await due.get()) is not None:
            k, scheduled = item
            tally.lags.append(loop.time() - scheduled)
            try:
                left = scheduled + REQUEST_TIMEOUT - loop.time()
                async with asyncio.timeout(max(0.001, left)):
                    if connection is None:
                        connection = await Connection.open(port)
                        opened += 1
                    status = await connection.exchange(requests[k % len(requests)])
            except TimeoutError:
                tally.timeouts += 1
            except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError):
                tally.socket_errors += 1
            else:
                latency = loop.time() - scheduled
                tally.latencies.append(latency)
                tally.timeline.append((int(scheduled - start), latency))
                tally.statuses[status] = tally.statuses.get(status, 0) + 1
                continue
            if connection is not None:  # a broken or late connection is not reused
                connection.close()
                connection = None
        if connection is not None:
            connection.close()

    start = loop.time() + 0.05
    workers = [asyncio.ensure_future(connection_worker()) for _ in range(max_connections)]
    k = 0
    while k < total:
        now = loop.time()
        while k < total and start + k / rate <= now:  # every request due by now, in order
            due.put_nowait((k, start + k / rate))
            k += 1
        if k < total:
            await asyncio.sleep(max(0.0, start + k / rate - loop.time()))
    sent_until = loop.time()
    for _ in workers:
        due.put_nowait(None)
    await asyncio.gather(*workers)
    return tally.summary(
        loop.time() - start,
        mode="open",
        target_per_s=rate,
        offered_per_s=total / (sent_until - start),
        connections_opened=opened,
    )


def main(argv: list[str]) -> None:
    """One run of the generator; prints LOAD_JSON {summary}."""
    parser = argparse.ArgumentParser(prog="loadgen.py")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--bodies", type=Path, required=True, help="a JSON list of bodies")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rate", type=float, default=0.0, help="0: closed loop")
    args = parser.parse_args(argv)
    bodies = json.loads(args.bodies.read_text())
    if args.rate > 0:
        load = open_loop(args.port, args.path, bodies, args.rate, args.seconds, args.connections)
    else:
        load = closed_loop(args.port, args.path, bodies, args.connections, args.seconds)
    print("LOAD_JSON " + json.dumps(asyncio.run(load)), flush=True)


def run(
    core: str,
    port: int,
    path: str,
    bodies_file: Path,
    seconds: float,
    connections: int,
    rate: float = 0.0,
) -> dict[str, Any]:
    """The generator in its own process pinned to `core`; its summary."""
    command = ["taskset", "-c", core, sys.executable, str(Path(__file__).resolve())]
    command += ["--port", str(port), "--path", path, "--bodies", str(bodies_file)]
    command += ["--seconds", str(seconds), "--connections", str(connections), "--rate", str(rate)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("LOAD_JSON "):
            return dict(json.loads(line.removeprefix("LOAD_JSON ")))
    raise RuntimeError(f"load generator failed ({done.returncode}): {done.stdout}{done.stderr}")


if __name__ == "__main__":
    main(sys.argv[1:])
