"""The alias watcher, with a fake registry: retry, backoff, load once, keep serving on failure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from model_server.loader import LoadedModel, ModelRef, NotPublishedError
from model_server.metrics import ServerMetrics
from model_server.watcher import FIRST_RETRY_SECONDS, MAX_LOAD_RETRY_SECONDS, ModelWatcher

INTERVAL = 30.0


@dataclass
class FakeRegistry:
    """Answers resolve() from a script: a version string, or an exception to raise."""

    script: list[Any]
    broken: set[str] = field(default_factory=set)
    loads: list[str] = field(default_factory=list)

    def resolve(self) -> ModelRef:
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, Exception):
            raise step
        return ModelRef("m", step, f"run-{step}", f"models:/m-{step}")

    def load(self, ref: ModelRef) -> LoadedModel:
        self.loads.append(ref.version)
        if ref.version in self.broken:
            raise RuntimeError(f"corrupt {ref.version}")
        return LoadedModel(
            ref=ref,
            model=None,
            schema=None,  # type: ignore[arg-type]
            profile={},
            predictor=type("P", (), {"backend": "sklearn"})(),  # type: ignore[arg-type]
            onnx_refused=None,
            loaded_at=None,  # type: ignore[arg-type]
            load_seconds=0.0,
        )


@dataclass
class Served:
    current: LoadedModel | None = None
    history: list[str] = field(default_factory=list)

    def publish(self, loaded: LoadedModel) -> None:
        self.current = loaded
        self.history.append(loaded.version)

    def version(self) -> str | None:
        return None if self.current is None else self.current.version


def watcher_for(registry: FakeRegistry) -> tuple[ModelWatcher, Served, CollectorRegistry]:
    served, prom = Served(), CollectorRegistry()
    watcher = ModelWatcher(
        registry, served.publish, served.version, ServerMetrics("m", prom), INTERVAL
    )
    return watcher, served, prom


def sample(prom: CollectorRegistry, name: str, **labels: str) -> float:
    return prom.get_sample_value(name, {"model_name": "m", **labels}) or 0.0


def test_waits_for_a_champion_then_loads_it_once() -> None:
    registry = FakeRegistry([NotPublishedError("no alias"), NotPublishedError("no alias"), "1"])
    watcher, served, prom = watcher_for(registry)
    assert watcher.poll_once() == INTERVAL  # not a failure: nothing published yet
    assert watcher.poll_once() == INTERVAL
    assert served.current is None and watcher.last_error is not None
    assert watcher.poll_once() == INTERVAL
    assert watcher.poll_once() == INTERVAL
    assert served.history == ["1"] and registry.loads == ["1"]
    assert watcher.last_error is None
    assert sample(prom, "model_server_model_loads_total", outcome="success") == 1
    assert sample(prom, "model_server_alias_poll_failures_total") == 0
    assert sample(prom, "model_server_alias_polls_total") == 4


def test_unreachable_registry_backs_off_exponentially_up_to_the_interval() -> None:
    registry = FakeRegistry([ConnectionError("refused")] * 9 + ["1"])
    watcher, served, prom = watcher_for(registry)
    waits = [watcher.poll_once() for _ in range(9)]
    assert waits[0] == FIRST_RETRY_SECONDS
    assert waits == sorted(waits) and waits[-1] == INTERVAL
    assert served.current is None and "unreachable" in (watcher.last_error or "")
    assert sample(prom, "model_server_alias_poll_failures_total") == 9
    assert watcher.poll_once() == INTERVAL and served.history == ["1"]
    assert sample(prom, "model_server_alias_polls_total") == 10


def test_moving_alias_swaps_and_a_broken_version_keeps_the_old() -> None:
    registry = FakeRegistry(["1", "2", "3", "3", "4"], broken={"3"})
    watcher, served, prom = watcher_for(registry)
    watcher.poll_once()
    watcher.poll_once()
    assert served.history == ["1", "2"]
    first = watcher.poll_once()  # 3 fails to load: 2 stays
    second = watcher.poll_once()
    assert served.version() == "2" and "version 3 failed" in (watcher.last_error or "")
    assert FIRST_RETRY_SECONDS <= first < second <= MAX_LOAD_RETRY_SECONDS
    watcher.poll_once()
    assert served.history == ["1", "2", "4"]
    assert sample(prom, "model_server_model_loads_total", outcome="failure") == 2
    assert sample(prom, "model_server_model_loads_total", outcome="success") == 3


def test_thread_starts_and_stops_promptly() -> None:
    registry = FakeRegistry(["1"])
    watcher, served, _ = watcher_for(registry)
    watcher.start()
    try:
        import time

        deadline = time.monotonic() + 5
        while served.current is None and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        watcher.stop(timeout=2)
    assert served.history == ["1"]


@pytest.mark.parametrize("uri", ["models:/m@champion", "models:/m/3"])
def test_loader_reads_the_uri(uri: str) -> None:
    from model_server.loader import RegistryLoader

    loader = RegistryLoader("sqlite:///nowhere/mlflow.db", uri)
    assert loader.name == "m"
    assert (loader.alias, loader.pinned) in {("champion", None), (None, "3")}


def test_missing_sqlite_store_is_not_created(tmp_path: Any) -> None:
    from model_server.loader import RegistryLoader, TrackingStoreMissingError

    db = tmp_path / "state" / "mlflow.db"
    loader = RegistryLoader(f"sqlite:///{db}", "models:/m@champion")
    with pytest.raises(TrackingStoreMissingError):
        loader.resolve()
    assert not db.exists() and not db.parent.exists()


def test_the_challenger_watcher_withdraws_when_its_alias_goes() -> None:
    registry = FakeRegistry(["2", NotPublishedError("no alias"), "2"])
    served, missing = Served(), []
    watcher = ModelWatcher(
        registry,
        served.publish,
        served.version,
        ServerMetrics("m", CollectorRegistry()),
        INTERVAL,
        on_missing=lambda: missing.append(True),
    )
    watcher.poll_once()
    assert watcher.poll_once() == INTERVAL and missing == [True]
    served.current = None  # what the model does when told
    watcher.poll_once()
    assert served.history == ["2", "2"]


def test_a_version_loaded_under_the_other_alias_is_reused_not_loaded_again() -> None:
    registry = FakeRegistry(["1", "2"])
    other = FakeRegistry(["2"]).load(ModelRef("m", "2", "run-2", "models:/m-2"))
    served = Served()
    watcher = ModelWatcher(
        registry,
        served.publish,
        served.version,
        ServerMetrics("m", CollectorRegistry()),
        INTERVAL,
        reuse=lambda version: other if version == "2" else None,
    )
    watcher.poll_once()
    watcher.poll_once()
    assert registry.loads == ["1"] and served.current is other
