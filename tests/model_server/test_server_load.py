"""Under concurrent load: every request is logged (one row per instance, one per failure),
each gets the predictions of its own instances (small requests are predicted together,
model_server/coalescer.py), and a big batch does not stall the event loop (KServe issue
3950): health stays quick."""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pandas as pd

from tests.support.server import FEATURES, MAX_INSTANCES, MODEL, ROWS, ServerProcess, wait_for

V1 = f"/v1/models/{MODEL}:predict"
V2 = f"/v2/models/{MODEL}/infer"
# Bounds the big-batch test's volume: each batch is MAX_INSTANCES rows to log.
MAX_BATCHES = 16


def logged_total(server: ServerProcess) -> int:
    return int(server.get("/metrics/summary").json()["total"])


def send(client: httpx.Client, k: int) -> tuple[int, int]:
    """Request number k of the mix; (rows it adds to the log, status)."""
    rows = 1 + k % 3
    if k % 7 == 6:  # a bad one: latitude outside California
        response = client.post(V1, json={"instances": [[*ROWS[0][:6], 50.0, -120.0]]})
        return 1, response.status_code
    if k % 2:
        body = {"instances": [dict(zip(FEATURES, ROWS[1], strict=True))] * rows}
        response = client.post(V1, json=body)
    else:
        flat = [v for _ in range(rows) for v in ROWS[0]]
        tensor = {"name": "x", "shape": [rows, 8], "datatype": "FP64", "data": flat}
        response = client.post(V2, json={"inputs": [tensor]})
    return (rows if response.status_code == 200 else 1), response.status_code


def test_every_request_is_logged_under_concurrent_load(served: ServerProcess) -> None:
    before = logged_total(served)
    per_thread, threads = 30, 8

    def worker(t: int) -> list[tuple[int, int]]:
        with served.client() as client:
            return [send(client, t * per_thread + i) for i in range(per_thread)]

    with ThreadPoolExecutor(threads) as pool:
        results = [r for batch in pool.map(worker, range(threads)) for r in batch]
    statuses = {status for _, status in results}
    assert statuses == {200, 400}, statuses
    expected = before + sum(rows for rows, _ in results)
    wait_for(lambda: logged_total(served) >= expected, 15, f"{expected} rows logged")
    assert logged_total(served) == expected


def test_concurrent_requests_each_get_and_log_their_own_predictions(
    served: ServerProcess, candidates: dict[str, Any]
) -> None:
    # Distinct instances (median income from 1 to 9 by house age from 5 to 50), 1 to 3 a
    # request and some of 50 (all on the event loop), v1 and v2, from 8 threads at once:
    # requests that meet in one iteration of the event loop share a call to the model and one
    # settle of their records, and a slice given to the wrong request would show in its answer
    # or in its logged row.
    instances = [
        (income, age, *ROWS[0][2:])
        for income in np.linspace(1.0, 9.0, 20)
        for age in np.linspace(5.0, 50.0, 20)
    ]
    frame = pd.DataFrame(instances, columns=list(FEATURES))
    expected = np.asarray(candidates["lightgbm"].predict(frame))
    assert len(np.unique(np.round(expected, 2))) > 150  # a mix-up cannot go unseen
    requests = []
    start = 0
    while start < len(instances):
        count = (1, 2, 50, 3)[len(requests) % 4]
        requests.append((start, min(start + count, len(instances))))
        start += count

    def ask(k: int) -> tuple[list[float], list[str]]:
        first, end = requests[k]
        rows = [list(row) for row in instances[first:end]]
        with served.client() as client:
            if k % 2:
                response = client.post(V1, json={"instances": rows})
                assert response.status_code == 200, response.text
                return response.json()["predictions"], response.json()["prediction_ids"]
            flat = [v for row in rows for v in row]
            tensor = {"name": "x", "shape": [len(rows), 8], "datatype": "FP64", "data": flat}
            response = client.post(V2, json={"inputs": [tensor]})
            assert response.status_code == 200, response.text
            predictions, ids = response.json()["outputs"]
            return predictions["data"], ids["data"]

    answered: dict[str, tuple[int, float]] = {}  # prediction id -> (instance, prediction)
    for _ in range(3):
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(ask, range(len(requests))))
        for (first, end), (predictions, ids) in zip(requests, answers, strict=True):
            # The server's stated tolerance (ONNX until the compiled trees are verified).
            np.testing.assert_allclose(predictions, expected[first:end], rtol=0, atol=1e-4)
            answered.update(zip(ids, zip(range(first, end), predictions, strict=True), strict=True))
    assert len(answered) == 3 * len(instances)  # every prediction id its own
    wait_for(lambda: served.get("/health").json()["prediction_log_backlog"] == 0, 60, "log")
    logged = {entry["id"]: entry for entry in served.rows("status = 200")}
    for prediction_id, (index, prediction) in answered.items():
        entry = logged[prediction_id]
        assert entry["output"] == prediction, prediction_id
        assert tuple(entry["inputs"][name] for name in FEATURES) == instances[index]


def test_big_batches_do_not_block_health_checks(served: ServerProcess) -> None:
    batch = {"instances": [list(ROWS[i % 2]) for i in range(MAX_INSTANCES)]}
    stop = threading.Event()
    batch_seconds: list[float] = []

    def big_batches() -> None:
        with served.client(timeout=60) as client:
            while not stop.is_set() and len(batch_seconds) < MAX_BATCHES:
                started = time.perf_counter()
                response = client.post(V1, json=batch)
                assert response.status_code == 200
                batch_seconds.append(time.perf_counter() - started)

    senders = [threading.Thread(target=big_batches) for _ in range(2)]
    for sender in senders:
        sender.start()
    live_seconds: list[float] = []
    try:
        with served.client(timeout=2.0) as client:
            deadline = time.monotonic() + 4.0
            while time.monotonic() < deadline and len(batch_seconds) < MAX_BATCHES:
                started = time.perf_counter()
                assert client.get("/v2/health/live").status_code == 200
                live_seconds.append(time.perf_counter() - started)
                time.sleep(0.02)
    finally:
        stop.set()
        for sender in senders:
            sender.join(60)
    # Were batches computed on the event loop, two senders would keep it busy and a typical
    # live check would wait for a good part of a batch; off the loop it waits for the GIL
    # and the CPU only. No check may come near a probe's timeout.
    typical_live = statistics.median(live_seconds)
    typical_batch = statistics.median(batch_seconds)
    assert typical_live < max(0.3 * typical_batch, 0.02), (typical_live, typical_batch)
    assert max(live_seconds) < 1.0
    assert len(batch_seconds) >= 4
    # Leave the log caught up for the tests that follow.
    wait_for(lambda: served.get("/health").json()["prediction_log_backlog"] == 0, 60, "log")
