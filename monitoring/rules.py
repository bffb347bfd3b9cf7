"""The Prometheus alert and recording rules of the predictor, as Python data.

`python -m monitoring.generate` writes them to charts/california-housing/rules/*.yaml, plain
Prometheus rule files that the chart's PrometheusRule ships (promtool checks and unit-tests
them: tests/observability). Every selector is written `{SEL...}` and becomes the job the
chart's ServiceMonitor sets plus `namespace="__RELEASE_NAMESPACE__"`, which the chart replaces
with the release's namespace: two releases in two namespaces each judge (and record) only their
own series. Each alert's runbook_url is `__RUNBOOK_URL__#<alert, lower case>`, which the chart
replaces with `metrics.prometheusRule.runbookUrl`.

Thresholds of the retraining policy are never copied here: the alerts compare the live
signals with the policy's own gauge, model_server_retrain_policy{setting=...}, so an edited
policy moves the alert with it. Metric names are the server's (model_server/metrics.py).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any

from monitoring.common import (
    DRIFT_MIN_WINDOW,
    JOB,
    NAMESPACE_PLACEHOLDER,
    RUNBOOK_PLACEHOLDER,
    SLO_LATENCY_LE,
    SLO_TARGET,
)

# What every selector of every rule matches: the ServiceMonitor's job, in the release's namespace.
SELECTOR = f'job="{JOB}", namespace="{NAMESPACE_PLACEHOLDER}"'
# The latency SLO: 1% of successful requests may take longer than SLO_LATENCY_LE seconds.
SLO_BUDGET = round(1 - SLO_TARGET, 6)
SLO_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


@dataclass(frozen=True)
class Group:
    name: str
    rules: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "rules": self.rules}


def promql(text: str) -> str:
    """A rule's expression: dedented, each `{SEL` opened with the rules' selector."""
    return textwrap.dedent(text).strip("\n").replace("{SEL", "{" + SELECTOR) + "\n"


def policy(setting: str) -> str:
    """The retraining policy's value of `setting` in force, per model (every replica exports
    the same, from the serving database)."""
    return promql(
        f"""
        max by (namespace, model_name) (
          model_server_retrain_policy{{SEL, setting="{setting}"}}
        )"""
    ).rstrip("\n")


def error_ratio(status: str, window: str, limit: float) -> str:
    """The share of requests answered with `status` (a regex) over `window`, above `limit`."""
    return f"""
(
  sum by (namespace, model_name) (
    rate(model_server_requests_total{{SEL, status=~"{status}"}}[{window}])
  )
  # 0, not "no data", while no request has failed yet
  or
  sum by (namespace, model_name) (
    rate(model_server_requests_total{{SEL}}[{window}])
  ) * 0
)
  /
sum by (namespace, model_name) (
  rate(model_server_requests_total{{SEL}}[{window}])
)
  > {limit}
"""


def indent(text: str, spaces: int) -> str:
    """`text` for a place `spaces` deep in an expression (its first line is already there)."""
    return text.replace("\n", "\n" + " " * spaces)


def alert(
    name: str,
    expr: str,
    *,
    severity: str,
    summary: str,
    description: str,
    for_: str | None = None,
) -> dict[str, Any]:
    rule: dict[str, Any] = {"alert": name, "expr": promql(expr)}
    if for_ is not None:
        rule["for"] = for_
    rule["labels"] = {"severity": severity}
    rule["annotations"] = {
        "summary": summary,
        "description": description,
        "runbook_url": f"{RUNBOOK_PLACEHOLDER}#{name.lower()}",
    }
    return rule


def record(name: str, expr: str) -> dict[str, Any]:
    return {"record": name, "expr": promql(expr)}


def slo_violations(window: str) -> dict[str, Any]:
    """Share of successful requests slower than the SLO over `window`, per namespace and model
    (the namespace label stays: the series of two releases never merge)."""
    fast = f'le="{SLO_LATENCY_LE}"'
    return record(
        f"namespace_model_name:model_server_latency_slo_violations:ratio_rate{window}",
        f"""
        1 - (
          sum by (namespace, model_name) (
            rate(model_server_request_latency_seconds_bucket{{SEL, {fast}}}[{window}])
          )
            /
          sum by (namespace, model_name) (
            rate(model_server_request_latency_seconds_count{{SEL}}[{window}])
          )
        )""",
    )


def burn(window: str, factor: float) -> str:
    """The recorded violation ratio over `window` above `factor` times the budget: of this
    release's namespace only (another release records the same names for its own)."""
    rate = f"namespace_model_name:model_server_latency_slo_violations:ratio_rate{window}"
    return f'{rate}{{namespace="{NAMESPACE_PLACEHOLDER}"}} > ({factor:g} * {SLO_BUDGET:g})'


def rule_files() -> dict[str, list[Group]]:
    """File name under the chart's rules/ -> its groups."""
    return {
        "predictor.yaml": predictor(),
        "model.yaml": model(),
        "retraining.yaml": retraining(),
    }


def predictor() -> list[Group]:
    return [
        Group(
            "california-housing-predictor",
            [
                alert(
                    "CaliforniaHousingPredictorDown",
                    """
up{SEL} == 0
""",
                    severity="critical",
                    for_="5m",
                    summary="Predictor {{ $labels.namespace }}/{{ $labels.pod }} cannot be scraped",
                    description=(
                        "Prometheus has failed to scrape /metrics of {{ $labels.instance }} for 5"
                        " minutes: the pod is down, restarting or unreachable. Check the pod's "
                        "status and events."
                    ),
                ),
                alert(
                    "CaliforniaHousingModelNotReady",
                    """
max by (namespace, pod, model_name) (
  model_server_model_ready{SEL}
) == 0
""",
                    severity="critical",
                    for_="10m",
                    summary=(
                        "Model {{ $labels.model_name }} not ready on {{ $labels.namespace }}/{{ "
                        "$labels.pod }}"
                    ),
                    description=(
                        "The replica has had no loaded model version for 10 minutes and answers "
                        "503 to every prediction (no @champion, MLflow unreachable, or the "
                        "version does not load). Read /health on the pod: it names the last "
                        "registry error."
                    ),
                ),
                alert(
                    "CaliforniaHousingHighErrorRatio",
                    error_ratio("5..", "5m", 0.05),
                    severity="critical",
                    for_="10m",
                    summary=(
                        "More than 5% of {{ $labels.model_name }} requests fail with a server error"
                    ),
                    description=(
                        "The 5xx ratio over 5 minutes in {{ $labels.namespace }} is {{ $value | "
                        "humanizePercentage }}. Find the status on the Serving dashboard (503: "
                        "not ready; 500: a bug, see the pod logs)."
                    ),
                ),
                alert(
                    "CaliforniaHousingClientErrorRatio",
                    error_ratio("4..", "15m", 0.25),
                    severity="warning",
                    for_="30m",
                    summary="A quarter of {{ $labels.model_name }} requests are refused as invalid",
                    description=(
                        "The 4xx ratio over 15 minutes in {{ $labels.namespace }} is {{ $value | "
                        "humanizePercentage }}: a client sends requests that do not fit the "
                        "served version's contract. GET /logs/100 shows the errors, which name "
                        "the feature."
                    ),
                ),
                alert(
                    "CaliforniaHousingModelLoadFailing",
                    """
sum by (namespace, model_name) (
  increase(model_server_model_loads_total{SEL, outcome="failure"}[15m])
) > 0
and on (namespace, model_name)
sum by (namespace, model_name) (
  increase(model_server_model_loads_total{SEL, outcome="success"}[15m])
) == 0
""",
                    severity="warning",
                    for_="15m",
                    summary="{{ $labels.model_name }} cannot load the registry's new version",
                    description=(
                        "Model loads in {{ $labels.namespace }} have failed for 30 minutes "
                        "without a success: the previous version keeps serving and the new "
                        "@champion is not served. /health and the pod logs name the error."
                    ),
                ),
                alert(
                    "CaliforniaHousingRegistryUnreachable",
                    """
sum by (namespace, model_name) (
  increase(model_server_alias_poll_failures_total{SEL}[10m])
) > 0
""",
                    severity="warning",
                    for_="20m",
                    summary="{{ $labels.model_name }} cannot reach the MLflow registry",
                    description=(
                        "Looks at the registry alias in {{ $labels.namespace }} have been failing"
                        " for 30 minutes: the served version keeps serving, but a new @champion "
                        "will not be picked up and a restarted replica cannot load any model. "
                        "Check the MLflow server."
                    ),
                ),
                alert(
                    "CaliforniaHousingPredictionLogBacklog",
                    """
max by (namespace, pod, model_name) (
  model_server_prediction_log_backlog{SEL}
) > 10000
""",
                    severity="warning",
                    for_="10m",
                    summary=(
                        "Prediction log of {{ $labels.namespace }}/{{ $labels.pod }} is falling "
                        "behind"
                    ),
                    description=(
                        "{{ $value | humanize }} prediction rows have been waiting for the "
                        "serving database for 10 minutes (healthy: a few hundred). The database "
                        "is down or too slow; past 100,000 rows in memory the replica spills the "
                        "oldest to its spill volume, up to the spill files' size limit."
                    ),
                ),
                alert(
                    "CaliforniaHousingPredictionLogDropping",
                    """
sum by (namespace, pod, model_name) (
  increase(model_server_prediction_log_dropped_rows_total{SEL}[5m])
) > 0
""",
                    severity="critical",
                    summary=(
                        "Prediction log of {{ $labels.namespace }}/{{ $labels.pod }} is losing rows"
                    ),
                    description=(
                        "{{ $value | humanize }} prediction rows were lost in the last 5 minutes:"
                        " the replica's memory buffer was full and the rows could not be spilled "
                        "to disk (spill files at their size limit, spill disk failing, or no "
                        "spill folder set). Those predictions are not in the log and feedback for"
                        " them answers 404. Restore the serving database now."
                    ),
                ),
                alert(
                    "CaliforniaHousingPredictionLogSpillFilling",
                    """
max by (namespace, pod, model_name) (
  model_server_prediction_log_spill_bytes{SEL}
    /
  (model_server_prediction_log_spill_limit_bytes{SEL} > 0)
) > 0.5
""",
                    severity="warning",
                    for_="5m",
                    summary=(
                        "Spill files of {{ $labels.namespace }}/{{ $labels.pod }} are filling up"
                    ),
                    description=(
                        "The replica's spill files take {{ $value | humanizePercentage }} of "
                        "their size limit: the serving database has been down or too slow for "
                        "long. Past the limit the rows that do not fit are dropped (and counted)."
                        " Restore the database; do not delete the pod, its spilled rows would go "
                        "with it."
                    ),
                ),
            ],
        ),
        Group(
            "california-housing-latency-slo",
            [
                *(slo_violations(window) for window in SLO_WINDOWS),
                alert(
                    "CaliforniaHousingLatencySLOBurnFast",
                    f"""
(
  {burn("1h", 14.4)}
  and
  {burn("5m", 14.4)}
)
or
(
  {burn("6h", 6)}
  and
  {burn("30m", 6)}
)
""",
                    severity="critical",
                    for_="2m",
                    summary="{{ $labels.model_name }} burns its latency SLO budget fast",
                    description=(
                        "{{ $value | humanizePercentage }} of successful requests in {{ "
                        "$labels.namespace }} took over 100 ms (SLO: 1%), fast enough to spend 2%"
                        " of the month's budget in an hour (or 5% in 6 hours). Check saturation "
                        "(in-flight requests) and batch sizes; scale out."
                    ),
                ),
                alert(
                    "CaliforniaHousingLatencySLOBurnSlow",
                    f"""
(
  {burn("1d", 3)}
  and
  {burn("2h", 3)}
)
or
(
  {burn("3d", 1)}
  and
  {burn("6h", 1)}
)
""",
                    severity="warning",
                    for_="15m",
                    summary="{{ $labels.model_name }} burns its latency SLO budget steadily",
                    description=(
                        "{{ $value | humanizePercentage }} of successful requests in {{ "
                        "$labels.namespace }} took over 100 ms (SLO: 1%): at this pace the "
                        "month's error budget runs out before the month does. Plan capacity or "
                        "find the slow requests."
                    ),
                ),
            ],
        ),
    ]


def model() -> list[Group]:
    return [
        Group(
            "california-housing-model",
            [
                alert(
                    "CaliforniaHousingFeatureDrift",
                    f"""
# The decision's own rule (housing/drift.py): a feature's KS statistic above its critical
# value at the policy's drift_alpha (the server exports both, one-to-one), or its PSI above
# the policy's drift_threshold (editable at run time), not a copy of either.
(
  max by (namespace, model_name, feature) (
    model_server_feature_drift_ks{{SEL}}
      > model_server_feature_drift_ks_critical{{SEL}}
  )
  or
  max by (namespace, model_name, feature) (
    model_server_feature_drift_psi{{SEL}}
  )
    > on (namespace, model_name) group_left
  {indent(policy("drift_threshold"), 2)}
)
and on (namespace, model_name)
max by (namespace, model_name) (
  model_server_drift_window_size{{SEL}}
) >= {DRIFT_MIN_WINDOW}
""",
                    severity="warning",
                    for_="15m",
                    summary="Input drift on {{ $labels.feature }} for {{ $labels.model_name }}",
                    description=(
                        "{{ $labels.feature }} has drifted over the drift window in {{ "
                        "$labels.namespace }} for 15 minutes: its KS statistic is above its "
                        "critical value at the retraining policy's drift_alpha, or its PSI above "
                        'drift_threshold (value {{ $value | printf "%.2f" }}). Find out whether '
                        "the population changed or a client sends broken values; the retraining "
                        "decision treats this as a trigger."
                    ),
                ),
                alert(
                    "CaliforniaHousingLiveErrorDegraded",
                    f"""
(
  max by (namespace, model_name, model_version) (
    model_server_live_r2{{SEL}}
  )
    < on (namespace, model_name, model_version)
  (
    max by (namespace, model_name, model_version) (
      model_server_model_offline_r2{{SEL}}
    )
      - on (namespace, model_name) group_left
    {indent(policy("degradation_margin"), 4)}
  )
  or
  max by (namespace, model_name, model_version) (
    model_server_live_r2{{SEL}}
  )
    < on (namespace, model_name) group_left
  {indent(policy("r2_floor"), 2)}
)
# Judged only once enough predictions have feedback (the policy's min_feedback).
and on (namespace, model_name, model_version)
max by (namespace, model_name, model_version) (
  model_server_live_feedback_samples{{SEL}}
)
  >= on (namespace, model_name) group_left
{policy("min_feedback")}
""",
                    severity="warning",
                    for_="30m",
                    summary=(
                        "Live R² of {{ $labels.model_name }} v{{ $labels.model_version }} is "
                        "degraded"
                    ),
                    description=(
                        "Live R² over the newest predictions with feedback in {{ "
                        '$labels.namespace }} is {{ $value | printf "%.3f" }}: below the '
                        "version's offline test R² minus the retraining policy's "
                        "degradation_margin, or below its r2_floor (GET /retrain/config shows "
                        "both). Check drift and the feedback itself, then retrain."
                    ),
                ),
                alert(
                    "CaliforniaHousingNoFeedback",
                    """
(
  sum by (namespace, model_name) (
    increase(model_server_feedback_total{SEL}[6h])
  )
  or
  sum by (namespace, model_name) (
    increase(model_server_requests_total{SEL}[6h])
  ) * 0
) == 0
and on (namespace, model_name)
sum by (namespace, model_name) (
  increase(model_server_requests_total{SEL, status="200"}[6h])
) > 0
""",
                    severity="warning",
                    for_="30m",
                    summary="No feedback for {{ $labels.model_name }} in 6 hours",
                    description=(
                        "Predictions are served in {{ $labels.namespace }} but no ground truth "
                        "arrived on POST /feedback for 6 hours: live error and the live-error "
                        "retraining triggers are blind. Check the labelling pipeline that sends "
                        "feedback."
                    ),
                ),
            ],
        ),
    ]


def retraining() -> list[Group]:
    return [
        Group(
            "california-housing-retraining",
            [
                alert(
                    "CaliforniaHousingRetrainFailed",
                    """
max by (namespace, model_name, outcome) (
  increase(model_server_retrain_decisions{SEL, outcome=~"failed|abandoned"}[12h])
) > 0
""",
                    severity="warning",
                    summary=(
                        "A retraining run of {{ $labels.model_name }} ended {{ $labels.outcome }}"
                    ),
                    description=(
                        "A retraining run in {{ $labels.namespace }} ended {{ $labels.outcome }} "
                        "in the last 12 hours (failed: an error in the pipeline; abandoned: the "
                        "run died and its lease expired). The champion is unchanged. Read the "
                        "decision's error in GET /retrain/logs/5 and the Job's log."
                    ),
                ),
                alert(
                    "CaliforniaHousingRetrainNotRunning",
                    """
time() - max by (namespace, model_name) (
  model_server_retrain_last_decision_timestamp_seconds{SEL}
) > 86400
""",
                    severity="warning",
                    for_="15m",
                    summary="No retraining decision for {{ $labels.model_name }} in a day",
                    description=(
                        "The newest retraining decision in {{ $labels.namespace }} is {{ $value |"
                        " humanizeDuration }} old; the CronJob decides every 6 hours. It is "
                        "suspended, cannot start, or cannot reach the serving database."
                    ),
                ),
                alert(
                    "CaliforniaHousingRetrainNeverRan",
                    """
max by (namespace, model_name) (
  sum without (outcome) (
    model_server_retrain_decisions{SEL}
  )
) == 0
""",
                    severity="warning",
                    for_="1d",
                    summary="Retraining of {{ $labels.model_name }} has never decided anything",
                    description=(
                        "The serving database in {{ $labels.namespace }} has held no retraining "
                        "decision for a day since the server started reporting: the retraining "
                        "CronJob has never run (disabled, suspended, or failing before it records"
                        " its decision)."
                    ),
                ),
                alert(
                    "CaliforniaHousingRetrainStale",
                    """
time() - max by (namespace, model_name) (
  model_server_retrain_last_success_timestamp_seconds{SEL}
) > 8 * 86400
""",
                    severity="warning",
                    for_="1h",
                    summary="No retraining of {{ $labels.model_name }} reached a verdict in 8 days",
                    description=(
                        "The newest retraining run in {{ $labels.namespace }} that reached the "
                        "gate finished {{ $value | humanizeDuration }} ago, although the interval"
                        " trigger asks for one a week. Runs fail, are skipped (disabled, blocked)"
                        " or never start."
                    ),
                ),
                alert(
                    "CaliforniaHousingRetrainStuck",
                    """
max by (namespace, model_name) (
  model_server_retrain_running{SEL}
) == 1
""",
                    severity="warning",
                    for_="2h",
                    summary=(
                        "A retraining run of {{ $labels.model_name }} has held the lease for 2 "
                        "hours"
                    ),
                    description=(
                        "A retraining run in {{ $labels.namespace }} has held the lease for over "
                        "2 hours, although the Job's deadline is 1 hour: the process is stuck but"
                        " alive (its heartbeat renews the lease), and it blocks every other run."
                    ),
                ),
                alert(
                    "CaliforniaHousingChampionNotPromoted",
                    """
max by (namespace, model_name) (
  model_server_retrain_last_go_unpromoted{SEL}
) == 1
""",
                    severity="warning",
                    for_="15m",
                    summary=(
                        "Retraining of {{ $labels.model_name }} went but the champion is unchanged"
                    ),
                    description=(
                        "The newest retraining run in {{ $labels.namespace }} that a decision "
                        "sent ahead finished without promoting its model (the gate refused it, or"
                        " it failed): whatever triggered it (drift, degraded live error, new "
                        "data) still stands. Read the gate's reasons in GET /retrain/logs/5."
                    ),
                ),
            ],
        ),
    ]
