"""Property-based fuzzing of every operation of the server's own OpenAPI document.

schemathesis reads `/openapi.json` from a real server (`python -m model_server` on 127.0.0.1,
serving the session's registry) and sends it generated requests, schema-valid and
schema-violating, for every operation: its examples, its coverage cases (boundaries, missing
and wrong-typed values, unexpected methods) and its fuzzed cases. Every response must pass
schemathesis' checks: no 5xx, a documented status code, content type and headers, a body that
fits the documented schema, schema-violating requests rejected and schema-valid ones accepted.
The run is deterministic (no seed, no example database) and must generate at least 10,000
cases; it prints their number and the status codes the server answered, and then the server
must still be healthy and predict.

Two documented exceptions, each for one operation and a stated reason (see FUZZ_CONFIG):
the v2 inference body is not all expressible in JSON Schema (a tensor's `shape` must hold as
many values as its `data`), so schema-valid v2 requests may be refused with a 400; and a
schema-violating request over the instance limit is refused with 413, which schemathesis does
not count among rejections by default.

POST /retrain/trigger starts a real process: here the server's retraining workdir holds a
stand-in `training_job` package that exits at once, so the fuzzer starts no real retraining.
POST /retrain/config changes this server's own policy only (its own database).

Cost: generating a case costs schemathesis ~15 ms of CPU, more than the server spends answering
it, so the run is two schemathesis processes side by side (see SHARDS). Measured here: 10,589
cases in 184 s on the 2 cores while other jobs kept the load average at 5-6; the machine to
itself should take about half that.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests.support.server import MODEL, ROWS, ServerProcess, start_server

pytestmark = pytest.mark.slow

MIN_CASES = 10_000
V1_PREDICT = "/v1/models/{model_name}:predict"
# The fuzz server's instance limit: small, so that generated bodies stay small (and fast to
# generate) and the limit itself is exercised (more instances: 413).
FUZZ_MAX_INSTANCES = 2

# schemathesis.toml of the run. Examples per operation, weighted towards the inference
# routes; operations without parameters have a handful of distinct cases whatever the limit.
FUZZ_CONFIG = """
workers = 1
request-timeout = 30

[generation]
deterministic = true
max-examples = 1100

# Stateful sequences: the API has no resource a request creates and a later one uses, bar
# feedback for a prediction id, which the hostile-input tests cover by hand.
[phases.stateful]
enabled = false

# 413 (more than MODEL_SERVER_MAX_INSTANCES instances, maxItems in the document) is a
# rejection too; schemathesis' default list lacks it.
[checks.negative_data_rejection]
expected-statuses = [400, 404, 405, 406, 409, 413, 422]

# What JSON Schema cannot express: AveBedrms may not exceed AveRooms (housing.contract's
# physical bounds). Schema-valid requests that break it are a 400, by design.
[[operations]]
include-path = "/v1/models/{model_name}:predict"
generation.max-examples = 2400
checks.positive_data_acceptance.enabled = false

# What JSON Schema cannot express: a tensor's shape must match its data, one [N, 8] tensor or
# one [N] tensor per feature. Schema-valid requests that break it are a 400, by design.
[[operations]]
include-path = "/v2/models/{model_name}/infer"
generation.max-examples = 700
checks.positive_data_acceptance.enabled = false

# Each case may read up to 10,000 rows of the prediction log.
[[operations]]
include-path = "/logs/{limit}"
generation.max-examples = 60

# Each accepted trigger starts a (stand-in) process.
[[operations]]
include-path = "/retrain/trigger"
generation.max-examples = 150
"""

STAND_IN = 'print("stand-in training_job: the fuzz test starts no real retraining")\n'


@pytest.fixture(scope="module")
def fuzz_server(
    trained_registry: object, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("fuzz")
    workdir = root / "retrain-work"
    (workdir / "training_job").mkdir(parents=True)
    (workdir / "training_job" / "__init__.py").write_text("")
    (workdir / "training_job" / "__main__.py").write_text(STAND_IN)
    server = start_server(
        root / "server",
        trained_registry.tracking_uri,  # type: ignore[attr-defined]
        max_instances=str(FUZZ_MAX_INSTANCES),
        retrain_workdir=str(workdir),
        access_log="true",  # off by default; the statuses below are read from it
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


# uvicorn's access log line: `"POST /feedback HTTP/1.1" 404`.
ACCESS_LINE = re.compile(r'"([A-Z]+) (\S+) HTTP/[\d.]+" (\d{3})')


def operation_of(target: str, method: str) -> str:
    """A request's operation, by its path with the path parameters' values collapsed."""
    path = unquote(urlsplit(target).path)  # the client sends `:predict` as `%3Apredict`
    path = re.sub(r"^/(logs|retrain/logs)/[^/]+$", r"/\1/{limit}", path)
    path = re.sub(r"^/(v[12])/models/[^/:]+", r"/\1/models/{model_name}", path)
    return f"{method} {path}"


# The run is split in two processes, one per core (schemathesis' workers are threads, and
# generating the cases costs more CPU than answering them): the two inference routes (fewer
# cases, but larger), and all the others.
INFERENCE = r"^/v[12]/models/\{model_name\}(:predict|/infer)$"
SHARDS = {
    "inference": ["--include-path-regex", INFERENCE],
    "operations": ["--exclude-path-regex", INFERENCE],
}


def start_shard(name: str, url: str, config: Path, folder: Path) -> subprocess.Popen[str]:
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        f"{url}/openapi.json",
        *SHARDS[name],
        "--continue-on-failure",
        "--no-color",
    ]
    output = (folder / f"{name}.txt").open("w")
    return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, text=True, cwd=folder)


def test_fuzz_every_operation(fuzz_server: ServerProcess, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(FUZZ_CONFIG)
    log_start = len(fuzz_server.log())
    started = time.monotonic()
    shards = {name: start_shard(name, fuzz_server.url, config, tmp_path) for name in SHARDS}
    codes = {name: shard.wait(timeout=900) for name, shard in shards.items()}
    elapsed = time.monotonic() - started

    generated = 0
    outputs = {}
    for name in SHARDS:
        outputs[name] = output = (tmp_path / f"{name}.txt").read_text()
        count = re.search(r"(\d+) generated", output)
        assert count is not None, f"shard {name}:\n{output[-4000:]}"
        generated += int(count.group(1))
    # What the server answered, from its access log (one line per request it took).
    answered = ACCESS_LINE.findall(fuzz_server.log()[log_start:])
    statuses = Counter(int(status) for _, _, status in answered)
    operations = Counter(operation_of(path, method) for method, path, _ in answered)
    print(f"\nschemathesis: {generated} cases generated in {elapsed:.1f}s")
    print(f"requests: {len(answered)}; status codes: {dict(sorted(statuses.items()))}")
    for operation, count in operations.most_common(20):
        print(f"  {count:6d}  {operation}")

    for name, code in codes.items():
        assert code == 0, f"shard {name}:\n{outputs[name][-20000:]}"
    assert generated >= MIN_CASES
    assert len(answered) >= generated, "the server's access log does not show the requests"
    assert not [s for s in statuses if s >= 500], statuses
    # The server took all of it: still ready, still predicting, nothing logged as a crash.
    assert fuzz_server.get("/health").status_code == 200
    predict = V1_PREDICT.replace("{model_name}", MODEL)
    response = fuzz_server.post(predict, json={"instances": [list(ROWS[0])]})
    assert response.status_code == 200, response.text
    log = fuzz_server.log()
    assert "Traceback" not in log and "internal error" not in log, log[-4000:]
