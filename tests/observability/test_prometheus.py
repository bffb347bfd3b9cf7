"""The dashboards and alert rules against real data: a real Prometheus scrapes a real model
server (`python -m model_server` on the session's trained registry, with a challenger in
shadow mode) every second while the test sends v1 and v2 traffic, bad requests, feedback and
a drifted batch, and records retraining decisions as a retraining run would. Then every query
of every dashboard panel and every rule expression is evaluated through Prometheus's HTTP API:
each must parse and return at least one series.

Prometheus is configured as the chart's ServiceMonitor configures the operator's (job label
by its relabeling, the operator's target labels namespace, pod, service, container, endpoint)
and loads the rules of the rendered PrometheusRule.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.observability.conftest import alert_rules, dashboards, panels, recording_rules
from tests.observability.promql import as_signal, grouping_labels, selectors
from tests.support.prometheus import (
    PrometheusProcess,
    PromQLError,
    scrape_config,
    start_prometheus,
    wait_until,
)
from tests.support.server import (
    FEATURES,
    MODEL,
    ServerProcess,
    copy_registry,
    mlflow_client,
    register_candidate,
    start_server,
    wait_for,
)

pytestmark = pytest.mark.slow

POD = "ch-california-housing-predictor-00001-deployment-5c9d7b8f4-x2x7q"
# Grafana's built-in variables, as Grafana would fill them for a short time range. Longer
# names first ($__range_s before $__range).
GRAFANA_VARIABLES = (
    ("$__range_s", "300"),
    ("$__rate_interval", "1m"),
    ("$__interval", "5s"),
    ("$__range", "5m"),
)
# Labels Prometheus adds to every series of the scrape: the operator's target labels and job.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "container", "endpoint"}
# Alerts whose condition this scenario makes true (pending or firing), and those it must not.
EXPECTED_ACTIVE = {
    "CaliforniaHousingFeatureDrift",  # the southern batch: PSI of Latitude/Longitude ~3
    "CaliforniaHousingClientErrorRatio",  # 24 refused requests of 45
    "CaliforniaHousingRetrainFailed",  # a failed run recorded while Prometheus watched
    "CaliforniaHousingChampionNotPromoted",  # the newest go run did not promote
}
EXPECTED_QUIET = {
    "CaliforniaHousingPredictorDown",
    "CaliforniaHousingModelNotReady",
    "CaliforniaHousingHighErrorRatio",
    "CaliforniaHousingModelLoadFailing",
    "CaliforniaHousingRegistryUnreachable",
    "CaliforniaHousingPredictionLogBacklog",
    "CaliforniaHousingPredictionLogDropping",
    "CaliforniaHousingPredictionLogSpillFilling",  # no spill files
    "CaliforniaHousingLiveErrorDegraded",  # 150 labelled predictions: under the 200 it needs
    "CaliforniaHousingNoFeedback",
    "CaliforniaHousingRetrainNotRunning",
    "CaliforniaHousingRetrainNeverRan",
    "CaliforniaHousingRetrainStale",
    "CaliforniaHousingRetrainStuck",
}
FEEDBACK = 150
DRIFTED_ROWS = 1000  # fills the drift window (MODEL_SERVER_DRIFT_WINDOW, 1000) entirely


@dataclass
class Scenario:
    server: ServerProcess
    prometheus: PrometheusProcess
    namespace: str
    at: float  # every query is evaluated at this instant
    metrics: str  # the server's /metrics at the end
    rules: dict[str, Any]  # the rendered PrometheusRule's spec
    challenger: str
    report: list[str] = field(default_factory=list)

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.prometheus.query(expr, at=self.at)


# -- the scenario ---------------------------------------------------------------------------


def add_challenger(tracking_uri: str) -> str:
    """Register the decision tree as a new version with its test R², alias it @challenger."""
    client = mlflow_client(tracking_uri)
    version = register_candidate(tracking_uri, "decision_tree")
    run = client.get_run(client.get_model_version(MODEL, version).run_id)
    client.set_model_version_tag(MODEL, version, "test_r2", str(run.data.metrics["test_r2"]))
    client.set_registered_model_alias(MODEL, "challenger", version)
    return version


def predict_v1(client: httpx.Client, rows: list[list[float]]) -> dict[str, Any]:
    response = client.post(f"/v1/models/{MODEL}:predict", json={"instances": rows})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def predict_v2(client: httpx.Client, rows: list[list[float]]) -> list[str]:
    tensor = {"name": "input-0", "shape": [len(rows), 8], "datatype": "FP64", "data": rows}
    response = client.post(f"/v2/models/{MODEL}/infer", json={"inputs": [tensor]})
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    return list(outputs["prediction_id"]["data"])


def bad_requests(client: httpx.Client) -> int:
    """Requests the server must refuse (4xx); how many were sent."""
    good = [8.3252, 41.0, 6.98, 1.02, 322.0, 2.55, 37.88, -122.23]
    north = dict(zip(FEATURES, good, strict=True)) | {"Latitude": 47.6}
    sent = [
        client.post(f"/v1/models/{MODEL}:predict", json={"instances": [north]}),  # 400
        client.post(f"/v1/models/{MODEL}:predict", json={"instances": [good[:7]]}),  # 400
        client.post(f"/v1/models/{MODEL}:predict", json={"instances": []}),  # 400
        client.post(
            f"/v1/models/{MODEL}:predict",
            content=b"{not json",
            headers={"content-type": "application/json"},
        ),  # 400
        client.post(f"/v1/models/{MODEL}:predict", json={"instances": [[None] * 8]}),  # 400
        client.post(
            f"/v1/models/{MODEL}:predict", json={"instances": [good] * 2001}
        ),  # 413: more than MAX_INSTANCES
        client.post(
            f"/v2/models/{MODEL}/infer",
            json={
                "inputs": [{"name": "x", "shape": [1, 7], "datatype": "FP64", "data": [good[:7]]}]
            },
        ),  # 400: wrong shape
        client.post(
            f"/v2/models/{MODEL}/infer",
            json={
                "inputs": [{"name": "x", "shape": [1, 8], "datatype": "BYTES", "data": [["a"] * 8]}]
            },
        ),  # 400: datatype
        client.post(f"/v2/models/{MODEL}/infer", json={"inputs": "nope"}),  # 422
        client.post(
            f"/v2/models/{MODEL}/infer",
            json={
                "inputs": [{"name": "x", "shape": [1, 8], "datatype": "FP64", "data": [[1e9] * 8]}]
            },
        ),  # 400: out of range
        client.post(f"/v1/models/{MODEL}:predict", json={"instances": [north, good]}),  # 400
        client.post(f"/v2/models/{MODEL}/infer", json={"inputs": [{"name": "x"}]}),  # 422
    ]
    statuses = [r.status_code for r in sent]
    assert all(400 <= s < 500 for s in statuses), statuses
    return len(statuses)


def send_feedback(client: httpx.Client, pairs: list[tuple[str, float]]) -> None:
    for prediction_id, actual in pairs:
        for _ in range(50):  # 503 while the prediction's row is still being written
            response = client.post(
                "/feedback", json={"prediction_id": prediction_id, "actual": actual}
            )
            if response.status_code != 503:
                break
            time.sleep(0.1)
        assert response.status_code == 200, response.text


def record_decision(store: Any, outcome: str, go: bool, triggers: list[str]) -> None:
    """What a retraining run records: the decision, then (when it went) its end."""
    decision = store.record_decision(
        source="cron",
        forced=False,
        go=go,
        triggers=triggers,
        reasons=[f"{t} (observability test)" for t in triggers] or ["no trigger fired"],
        signals={"test": True},
        policy={},
        outcome="running" if go else outcome,
    )
    if go:
        store.finish_decision(
            decision, outcome, None, error="test" if outcome == "failed" else None
        )


@pytest.fixture(scope="module")
def scenario(
    trained_registry: Any,
    tmp_path_factory: pytest.TempPathFactory,
    prometheus_binary: str,
    rendered_rule: dict[str, Any],
    rendered_rules_file: Path,
    service_monitor: dict[str, Any],
) -> Iterator[Scenario]:
    from housing.servingdb import RecordStore
    from housing.servingdb.retrain import RetrainStore

    work = tmp_path_factory.mktemp("observability")
    tracking_uri = copy_registry(trained_registry.state_dir / "mlflow.db", work / "registry")
    # Before the server starts: a registry written while the server polls it may answer
    # "database is locked" (SQLite), which would count as a poll failure.
    challenger = add_challenger(tracking_uri)
    server = start_server(
        work / "server",
        tracking_uri,
        max_instances="2000",
        signals_interval_seconds="1",
        challenger_mode="shadow",
        spill_max_bytes=str(966_367_641),  # as the chart sets it for its 1Gi spill volume
    )
    namespace = service_monitor["metadata"]["namespace"]
    prometheus: PrometheusProcess | None = None
    records: Any = None
    try:
        prometheus = start_prometheus(
            prometheus_binary,
            work / "prometheus",
            scrape_config(service_monitor, f"127.0.0.1:{server.port}", POD),
            [rendered_rules_file],
        )
        server.wait_ready()
        wait_for(
            lambda: (
                (server.get("/health").json().get("challenger") or {}).get("model_version")
                == challenger
            ),
            90,
            "the challenger in shadow",
        )
        records = RecordStore(f"sqlite:///{server.database}")
        retrain = RetrainStore(records)
        record_decision(retrain, "skipped", go=False, triggers=[])
        record_decision(retrain, "not_promoted", go=True, triggers=["drift"])

        test = pd.read_parquet(trained_registry.workspace / "data" / "prepared" / "test.parquet")
        normal = test.sample(400, random_state=7)
        pairs: list[tuple[str, float]] = []
        with server.client() as client:
            for i in range(10):
                chunk = normal.iloc[i * 20 : (i + 1) * 20]
                ids = predict_v1(client, chunk[list(FEATURES)].values.tolist())["prediction_ids"]
                pairs += zip(ids, chunk["MedHouseVal"], strict=True)
            for i in range(10, 20):
                chunk = normal.iloc[i * 20 : (i + 1) * 20]
                ids = predict_v2(client, chunk[list(FEATURES)].values.tolist())
                pairs += zip(ids, chunk["MedHouseVal"], strict=True)
            # Twice: a counter series appears with its first increment, which rate() cannot
            # see; the second round is counted in full.
            refused = bad_requests(client)
            time.sleep(2)
            refused += bad_requests(client)
            time.sleep(1.5)  # the writer commits every 0.5 s: the shadows' rows too
            # The feedback counter's series appears with its first increment, which rate() and
            # increase() cannot see: one first, the rest after a scrape or two.
            send_feedback(client, pairs[:1])
            time.sleep(2)
            send_feedback(client, pairs[1:FEEDBACK])

            # A failed run recorded while Prometheus watches (its count goes 0 -> 1).
            wait_until(
                lambda: (
                    not prometheus.query(  # type: ignore[union-attr]
                        'model_server_retrain_decisions{outcome="not_promoted"} == 1'
                    )
                ),
                30,
                "the first decisions in Prometheus",
            )
            record_decision(retrain, "failed", go=True, triggers=["data_changed"])

            south = test[test["Latitude"] < 34.2]
            assert len(south) >= DRIFTED_ROWS
            predict_v1(client, south[list(FEATURES)].head(DRIFTED_ROWS).values.tolist())

        sentinels = [
            'model_server_feature_drift_psi{feature="Latitude"} > 1',
            'model_server_retrain_decisions{outcome="failed"} == 1',
            f'model_server_live_r2{{model_version="{challenger}"}}',
            f'model_server_feedback_total{{model_version="1"}} == {FEEDBACK}',
            'ALERTS{alertname="CaliforniaHousingFeatureDrift"}',
        ]

        def missing() -> list[str]:
            assert prometheus is not None
            return [s for s in sentinels if not prometheus.query(s)]

        wait_until(missing, 60, "the scenario's end state in Prometheus")
        # `offset $__interval` (5 s) needs the newest series to be older than that.
        time.sleep(6)
        scenario = Scenario(
            server=server,
            prometheus=prometheus,
            namespace=namespace,
            at=time.time(),
            metrics=server.get("/metrics").text,
            rules=rendered_rule["spec"],
            challenger=challenger,
        )
        scenario.report.append(
            f"scenario: {len(pairs)} predictions (v1+v2), {refused} refused, {FEEDBACK} "
            f"feedback, {DRIFTED_ROWS} southern rows, 3 decisions; challenger v{challenger}"
        )
        yield scenario
        print("\n".join(scenario.report))
    finally:
        if records is not None:
            records.close()
        if prometheus is not None:
            prometheus.stop()
        server.stop()


# -- the checks -----------------------------------------------------------------------------


def substitute(expr: str, namespace: str) -> str:
    """A dashboard query as Grafana sends it: variables filled, datasource gone (it is the
    panel's, not the query's)."""
    for name, value in (*GRAFANA_VARIABLES, ("$namespace", namespace), ("$model", MODEL)):
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def dashboard_queries() -> list[tuple[str, str, str]]:
    return [
        (board, panel["title"], target["expr"])
        for board, data in dashboards().items()
        for panel in panels(data)
        for target in panel["targets"]
    ]


def test_every_dashboard_query_returns_series(scenario: Scenario) -> None:
    queries = dashboard_queries()
    empty, failed = [], []
    for board, title, expr in queries:
        try:
            result = scenario.query(substitute(expr, scenario.namespace))
        except PromQLError as error:
            failed.append(f"{board} / {title}: {error}\n{expr}")
            continue
        if not result:
            empty.append(f"{board} / {title}:\n{expr}")
    scenario.report.append(
        f"dashboard queries: {len(queries)} evaluated, {len(queries) - len(empty) - len(failed)} "
        f"returned series, {len(empty)} empty, {len(failed)} errors"
    )
    assert not failed, "\n\n".join(failed)
    assert not empty, "no series:\n\n" + "\n\n".join(empty)


def test_dashboard_variables_find_the_namespace_and_model(scenario: Scenario) -> None:
    for board, data in dashboards().items():
        for variable in data["templating"]["list"]:
            if variable["type"] != "query":
                continue
            match = re.fullmatch(r"label_values\((.*), *(\w+)\)", variable["query"])
            assert match, f"{board}: {variable['query']}"
            selector = substitute(match.group(1), scenario.namespace)
            values = {s["metric"].get(match.group(2)) for s in scenario.query(selector)}
            wanted = scenario.namespace if variable["name"] == "namespace" else MODEL
            assert wanted in values, f"{board}: ${variable['name']} would offer {values}"


def test_every_rule_expression_returns_series(scenario: Scenario) -> None:
    """Recording rules: the expression and the recorded series. Alerts: the expression parses
    and evaluates, and its signal (each comparison made a `bool` comparison: the condition
    for every series the alert watches, 0 or 1) returns series. An alert's own expression
    returns series only while its condition holds; which ones do is reported."""
    empty, failed, holding = [], [], []
    records = recording_rules(scenario.rules)
    alerts = alert_rules(scenario.rules)
    for rule in records:
        for expr in (rule["expr"], rule["record"]):
            try:
                if not scenario.query(expr):
                    empty.append(f"{rule['record']}: {expr}")
            except PromQLError as error:
                failed.append(f"{rule['record']}: {error}")
    for rule in alerts:
        name = rule["alert"]
        try:
            if scenario.query(rule["expr"]):
                holding.append(name)
            if not scenario.query(as_signal(rule["expr"])):
                empty.append(f"{name}: {as_signal(rule['expr'])}")
        except PromQLError as error:
            failed.append(f"{name}: {error}")
    total = len(records) + len(alerts)
    scenario.report.append(
        f"rule expressions: {total} evaluated ({len(records)} recording, {len(alerts)} alerts), "
        f"{total - len(empty) - len(failed)} returned series (alerts: their signal), "
        f"{len(empty)} empty, {len(failed)} errors; alert conditions true now: "
        f"{', '.join(sorted(holding))}"
    )
    assert not failed, "\n".join(failed)
    assert not empty, "no series:\n" + "\n".join(empty)


def test_prometheus_evaluates_every_rule_without_error(scenario: Scenario) -> None:
    loaded = scenario.prometheus.api("rules")["groups"]
    names = [r["name"] for g in loaded for r in g["rules"]]
    wanted = [r.get("alert") or r["record"] for g in scenario.rules["groups"] for r in g["rules"]]
    assert sorted(names) == sorted(wanted)
    for group in loaded:
        for rule in group["rules"]:
            assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"


def test_the_scenario_raises_the_alerts_it_should(scenario: Scenario) -> None:
    active = {a["labels"]["alertname"] for a in scenario.prometheus.api("alerts")["alerts"]}
    scenario.report.append(f"alerts pending or firing: {', '.join(sorted(active))}")
    assert active >= EXPECTED_ACTIVE, f"missing: {EXPECTED_ACTIVE - active}"
    assert not active & EXPECTED_QUIET, f"should be quiet: {active & EXPECTED_QUIET}"
    drifted = {
        a["labels"]["feature"]
        for a in scenario.prometheus.api("alerts")["alerts"]
        if a["labels"]["alertname"] == "CaliforniaHousingFeatureDrift"
    }
    assert {"Latitude", "Longitude"} <= drifted


def exported(metrics: str) -> dict[str, set[str]]:
    """Sample name -> label names, as the server exports them."""
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def test_rules_and_dashboards_use_only_exported_metrics_and_labels(scenario: Scenario) -> None:
    """Every metric a rule or a panel selects is in a real scrape of /metrics, matched on labels
    the server exports (or the target labels Prometheus adds), and every grouping label exists
    on some selected metric."""
    names = exported(scenario.metrics)
    records = {r["record"] for r in recording_rules(scenario.rules)}
    record_labels = {"namespace", "model_name"}
    problems = []
    exprs = [
        (r.get("alert") or r["record"], r["expr"])
        for g in scenario.rules["groups"]
        for r in g["rules"]
    ]
    exprs += [
        (title, substitute(expr, scenario.namespace)) for _, title, expr in dashboard_queries()
    ]
    for where, expr in exprs:
        available: set[str] = set()
        for selector in selectors(expr):
            if selector.metric == "up":
                labels = set(TARGET_LABELS)
            elif selector.metric in records:
                labels = record_labels
            elif selector.metric in names:
                labels = names[selector.metric] | TARGET_LABELS
            else:
                problems.append(f"{where}: {selector.metric} is not exported")
                continue
            available |= labels
            unknown = set(selector.labels) - labels
            if unknown:
                problems.append(f"{where}: {selector.metric} has no label {sorted(unknown)}")
        unknown = grouping_labels(expr) - available
        if unknown:
            problems.append(f"{where}: grouping by labels no selected metric has: {unknown}")
    assert not problems, "\n".join(problems)


def test_server_exports_what_the_brief_names(scenario: Scenario) -> None:
    names = exported(scenario.metrics)
    for metric, labels in {
        "model_server_feature_drift_psi": {"model_name", "model_version", "feature"},
        "model_server_feature_drift_ks": {"model_name", "model_version", "feature"},
        "model_server_drift_window_size": {"model_name", "model_version"},
        "model_server_live_r2": {"model_name", "model_version"},
        "model_server_live_rmse": {"model_name", "model_version"},
        "model_server_live_mae": {"model_name", "model_version"},
        "model_server_live_feedback_samples": {"model_name", "model_version"},
        "model_server_feedback_coverage": {"model_name", "model_version"},
        "model_server_model_offline_r2": {"model_name", "model_version"},
        "model_server_retrain_running": {"model_name"},
        "model_server_retrain_last_success_timestamp_seconds": {"model_name"},
        "model_server_retrain_last_decision_timestamp_seconds": {"model_name"},
        "model_server_retrain_decisions": {"model_name", "outcome"},
        "model_server_retrain_last_go_unpromoted": {"model_name"},
        "model_server_retrain_policy": {"model_name", "setting"},
    }.items():
        assert names.get(metric) == labels, metric
