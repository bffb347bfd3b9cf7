"""The Grafana dashboards of the California Housing system, built with grafana-foundation-sdk.

`python -m monitoring.generate` writes them into the chart (charts/california-housing/
dashboards/), which ships each as a ConfigMap for Grafana's dashboard sidecar. The JSON files
are generated: edit this module, never the JSON.

Conventions (tests/observability checks them): every panel reads the `${datasource}` variable,
filters on the `namespace` and `model` variables and the job the chart's ServiceMonitor sets,
has a unit and a description that tells an on-call engineer what to do, and every query returns
data against a real model server (tests/observability/test_prometheus.py). Static bands that
stand for a threshold of the retraining policy or the gate come from their owners
(monitoring.common): an edited default moves the band with it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from grafana_foundation_sdk.builders import (
    bargauge,
    heatmap,
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus as prometheus_builders
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dashboard_models
from grafana_foundation_sdk.models import heatmap as heatmap_models
from grafana_foundation_sdk.models import prometheus as prometheus_models

from monitoring.common import (
    DRIFT_MIN_WINDOW,
    JOB,
    RUNBOOK_PLACEHOLDER,
    SLO_LATENCY_LE,
    SLO_TARGET,
    gate_r2_floor,
    policy_defaults,
)

# Every query's selector: the predictor's job, the namespace and model picked in the variables.
NAMESPACE = 'namespace="$namespace"'
SELECTOR = f'job="{JOB}", {NAMESPACE}, model_name="$model"'
# Predictions are in units of $100,000: panels in dollars multiply by this.
DOLLARS = 100000
# Custom Grafana units: a burn rate reads "14.4\u00d7", a prediction bucket "2.5\u00d7$100k".
TIMES = "suffix:\u00d7"
HUNDRED_THOUSANDS = "suffix:\u00d7$100k"

DATASOURCE = dashboard_models.DataSourceRef(type_val="prometheus", uid="${datasource}")


def sel(extra: str = "") -> str:
    """The label selector of every query, with extra matchers."""
    return "{" + SELECTOR + (", " + extra if extra else "") + "}"


def query(
    expr: str, legend: str = "", *, instant: bool = False, fmt: str | None = None
) -> prometheus_builders.Dataquery:
    q = prometheus_builders.Dataquery().expr(expr).datasource(DATASOURCE)
    if legend:
        q = q.legend_format(legend)
    q = q.instant() if instant else q.range()
    if fmt is not None:
        q = q.format(prometheus_models.PromQueryFormat(fmt))
    return q


def thresholds(*steps: tuple[float | None, str]) -> dashboard_builders.ThresholdsConfig:
    return (
        dashboard_builders.ThresholdsConfig()
        .mode(dashboard_models.ThresholdsMode.ABSOLUTE)
        .steps([dashboard_models.Threshold(value=v, color=c) for v, c in steps])
    )


GREEN = (None, "green")


def describe(what: str, act: str, alert: str | None = None) -> str:
    """A panel description: what it shows, then what to do (and the runbook section)."""
    text = f"{what}\n\nWhat to do: {act}"
    if alert:
        text += f" Runbook: {RUNBOOK_PLACEHOLDER}#{alert.lower()} (alert {alert})."
    return text


@dataclass
class Spec:
    """One panel: its builder, and its size on the 24-column grid."""

    builder: object
    width: int = 12
    height: int = 8


@dataclass
class Row:
    title: str
    panels: list[Spec] = field(default_factory=list)


def _refs(targets: Iterable[prometheus_builders.Dataquery]) -> list[prometheus_builders.Dataquery]:
    return [t.ref_id(chr(ord("A") + i)) for i, t in enumerate(targets)]


def _legend(table_mode: bool = True) -> common_builders.VizLegendOptions:
    legend = (
        common_builders.VizLegendOptions()
        .show_legend(True)
        .placement(common.LegendPlacement.BOTTOM)
        .display_mode(
            common.LegendDisplayMode.TABLE if table_mode else common.LegendDisplayMode.LIST
        )
    )
    if table_mode:
        legend = legend.calcs(["lastNotNull", "max"])
    return legend


def _tooltip() -> common_builders.VizTooltipOptions:
    return (
        common_builders.VizTooltipOptions()
        .mode(common.TooltipDisplayMode.MULTI)
        .sort(common.SortOrder.DESCENDING)
    )


def ts(
    title: str,
    description: str,
    unit: str,
    targets: list[prometheus_builders.Dataquery],
    *,
    width: int = 12,
    height: int = 8,
    bars: bool = False,
    stacked: bool = False,
    lower: float | None = None,
    upper: float | None = None,
    steps: tuple[tuple[float | None, str], ...] = (),
) -> Spec:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .targets(_refs(targets))
        .legend(_legend())
        .tooltip(_tooltip())
        .line_width(1)
        .fill_opacity(60 if bars else 10)
        .draw_style(common.GraphDrawStyle.BARS if bars else common.GraphDrawStyle.LINE)
        .show_points(common.VisibilityMode.NEVER)
        .span_nulls(False)
    )
    if stacked:
        panel = panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    if lower is not None:
        panel = panel.min(lower)
    if upper is not None:
        panel = panel.max(upper)
    if steps:
        panel = panel.thresholds(thresholds(GREEN, *steps)).thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.DASHED)
        )
    return Spec(panel, width, height)


def single(
    title: str,
    description: str,
    unit: str,
    targets: list[prometheus_builders.Dataquery],
    *,
    width: int = 4,
    height: int = 5,
    steps: tuple[tuple[float | None, str], ...] = (),
    base: str = "green",
    text_mode: common.BigValueTextMode = common.BigValueTextMode.AUTO,
    mappings: list[dashboard_models.ValueMapping] | None = None,
    decimals: float | None = None,
) -> Spec:
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .targets(_refs(targets))
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .color_mode(common.BigValueColorMode.VALUE)
        .graph_mode(common.BigValueGraphMode.AREA)
        .text_mode(text_mode)
        .justify_mode(common.BigValueJustifyMode.AUTO)
        .orientation(common.VizOrientation.AUTO)
        .thresholds(thresholds((None, base), *steps))
    )
    if mappings:
        panel = panel.mappings(mappings)
    if decimals is not None:
        panel = panel.decimals(decimals)
    return Spec(panel, width, height)


def bars(
    title: str,
    description: str,
    unit: str,
    targets: list[prometheus_builders.Dataquery],
    *,
    width: int = 12,
    height: int = 8,
    steps: tuple[tuple[float | None, str], ...] = (),
    upper: float | None = None,
) -> Spec:
    panel = (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .targets(_refs(targets))
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .orientation(common.VizOrientation.HORIZONTAL)
        .show_unfilled(True)
        .min(0)
        .thresholds(thresholds(GREEN, *steps))
    )
    if upper is not None:
        panel = panel.max(upper)
    return Spec(panel, width, height)


def timeline(
    title: str,
    description: str,
    unit: str,
    targets: list[prometheus_builders.Dataquery],
    mappings: list[dashboard_models.ValueMapping],
    *,
    width: int = 12,
    height: int = 6,
    steps: tuple[tuple[float | None, str], ...] = (),
) -> Spec:
    panel = (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .targets(_refs(targets))
        .mappings(mappings)
        .show_value(common.VisibilityMode.AUTO)
        .merge_values(True)
        .legend(_legend(table_mode=False))
        .tooltip(_tooltip())
        .thresholds(thresholds(GREEN, *steps))
    )
    return Spec(panel, width, height)


def value_map(mapping: dict[str, tuple[str, str]]) -> list[dashboard_models.ValueMapping]:
    return [
        dashboard_models.ValueMap(
            options={
                key: dashboard_models.ValueMappingResult(text=text, color=color, index=i)
                for i, (key, (text, color)) in enumerate(mapping.items())
            }
        )
    ]


def version_table(
    title: str,
    description: str,
    columns: list[tuple[str, str, str]],
    *,
    mappings: dict[str, dict[str, tuple[str, str]]] | None = None,
    width: int = 24,
    height: int = 7,
) -> Spec:
    """One row per model version, one column per (header, unit, instant query by version)."""
    targets = [query(expr, instant=True, fmt="table") for _, _, expr in columns]
    refs = [chr(ord("A") + i) for i in range(len(columns))]
    rename = {f"Value #{ref}": header for ref, (header, _, _) in zip(refs, columns, strict=True)}
    rename["model_version"] = "version"
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit("none")
        .targets(_refs(targets))
        .with_transformation(dashboard_models.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            dashboard_models.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True},
                    "indexByName": {"model_version": 0},
                    "renameByName": rename,
                },
            )
        )
        .sort_by([common_builders.TableSortByFieldState().display_name("version").desc(True)])
    )
    for header, unit, _ in columns:
        properties = [dashboard_models.DynamicConfigValue(id_val="unit", value=unit)]
        if header in (mappings or {}):
            properties.append(
                dashboard_models.DynamicConfigValue(
                    id_val="mappings",
                    value=value_map(mappings[header]),  # type: ignore[index]
                )
            )
        panel = panel.override_by_name(header, properties)
    return Spec(panel, width, height)


# -- variables ------------------------------------------------------------------------------


def variables() -> list[object]:
    return [
        dashboard_builders.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .description("The Prometheus that scrapes the predictor (the chart's ServiceMonitor)."),
        dashboard_builders.QueryVariable("namespace")
        .label("Namespace")
        .description("Kubernetes namespace of the release.")
        .datasource(DATASOURCE)
        .query(f'label_values(model_server_model_ready{{job="{JOB}"}}, namespace)')
        .refresh(dashboard_models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard_models.VariableSort.ALPHABETICAL_ASC),
        dashboard_builders.QueryVariable("model")
        .label("Model")
        .description("Registered model name served (MODEL_SERVER_MODEL_NAME).")
        .datasource(DATASOURCE)
        .query(f'label_values(model_server_model_ready{{job="{JOB}", {NAMESPACE}}}, model_name)')
        .refresh(dashboard_models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard_models.VariableSort.ALPHABETICAL_ASC),
    ]


# -- shared expressions ---------------------------------------------------------------------


def rate(metric: str, extra: str = "", by: str = "", window: str = "$__rate_interval") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}{sel(extra)}[{window}]))"


def ratio(extra: str, by: str = "", window: str = "$__rate_interval") -> str:
    """Share of requests matching `extra`; 0 (not "no data") when none match."""
    total = rate("model_server_requests_total", by=by, window=window)
    return (
        f"(\n  {rate('model_server_requests_total', extra, by, window)}\n  or\n  {total} * 0\n)\n"
        f"/\n{total}"
    )


def quantile(q: float, metric: str, by: str = "") -> str:
    grouping = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({grouping}) (rate({metric}{sel()}[$__rate_interval])))"


def mean_prediction(by: str = "model_version") -> str:
    return (
        f"sum by ({by}) (rate(model_server_prediction_value_sum{sel()}[$__rate_interval]))\n"
        f"/\nsum by ({by}) (rate(model_server_prediction_value_count{sel()}[$__rate_interval]))\n"
        f"* {DOLLARS}"
    )


def slo_met(window: str) -> str:
    """Share of successful requests faster than the SLO's 100 ms over `window`."""
    fast = sel(f'le="{SLO_LATENCY_LE}"')
    return (
        f"sum(rate(model_server_request_latency_seconds_bucket{fast}[{window}]))\n/\n"
        f"sum(rate(model_server_request_latency_seconds_count{sel()}[{window}]))"
    )


def slo_violations(window: str) -> str:
    """Share of successful requests slower than the SLO's 100 ms over `window`."""
    return f"1 - (\n{slo_met(window)}\n)"


def champion(expr: str) -> str:
    """`expr` (by model_version) for the version served as @champion."""
    return (
        f"{expr}\nand on (model_version)\nmax by (model_version) (model_server_model_info{sel()})"
    )


def challenger(expr: str) -> str:
    """`expr` (by model_version) for the @challenger loaded beside it (shadow or canary)."""
    return (
        f"{expr}\nand on (model_version)\n"
        f"max by (model_version) (model_server_challenger_info{sel()})"
    )


# -- dashboards -----------------------------------------------------------------------------


def serving() -> tuple[str, str, str, list[Row]]:
    requests = "model_server_requests_total"
    latency = "model_server_request_latency_seconds_bucket"
    rows = [
        Row(
            "Overview",
            [
                single(
                    "Ready replicas",
                    describe(
                        "Predictor replicas with a model version loaded (model_server_model_ready)."
                        " A replica that is not ready answers 503 to every prediction.",
                        "if this is 0, nothing is served: check /health on a pod (last registry"
                        " error) and the registry's @champion alias.",
                        "CaliforniaHousingModelNotReady",
                    ),
                    "short",
                    [query(f"sum(model_server_model_ready{sel()})", "ready", instant=True)],
                    steps=((1, "green"),),
                    base="red",
                ),
                single(
                    "Request rate",
                    describe(
                        "Inference requests per second over v1 and v2, every status.",
                        "a drop to 0 while clients should be sending means the route to the"
                        " predictor is broken (InferenceService, Service, NetworkPolicy).",
                    ),
                    "reqps",
                    [query(rate(requests), "requests/s")],
                ),
                single(
                    "Server error ratio (5xx)",
                    describe(
                        "Share of requests answered with a 5xx status over the last rate interval."
                        " 503 while no model is loaded counts here.",
                        "above 5% for 10 minutes pages: look at the error panels below and the"
                        " pod logs.",
                        "CaliforniaHousingHighErrorRatio",
                    ),
                    "percentunit",
                    [query(ratio('status=~"5.."'), "5xx")],
                    steps=((0.01, "orange"), (0.05, "red")),
                ),
                single(
                    "p99 latency",
                    describe(
                        "99th percentile of successful request latency (model_server_request_"
                        "latency_seconds), all protocols. The SLO: 99% of requests under 100 ms.",
                        "above 100 ms the SLO budget is burning: see the latency row.",
                        "CaliforniaHousingLatencySLOBurnFast",
                    ),
                    "s",
                    [query(quantile(0.99, latency), "p99")],
                    steps=((0.1, "orange"), (0.5, "red")),
                ),
                single(
                    "Champion version",
                    describe(
                        "The model version served (@champion), and its inference backend (onnx,"
                        " or sklearn when the ONNX graph was refused).",
                        "if it is not the version the registry's @champion names, the alias"
                        " poll or the load fails: see 'Model loads and registry failures'.",
                    ),
                    "none",
                    [
                        query(
                            f"max by (model_version, backend) (model_server_model_info{sel()})",
                            "v{{model_version}} ({{backend}})",
                            instant=True,
                        )
                    ],
                    text_mode=common.BigValueTextMode.NAME,
                ),
                single(
                    "Prediction-log backlog",
                    describe(
                        "Prediction rows accepted but not yet written to the serving database,"
                        " summed over replicas.",
                        "a backlog that keeps growing means the database is down or slow; past"
                        " 100,000 rows per replica the oldest go to the replica's spill volume.",
                        "CaliforniaHousingPredictionLogBacklog",
                    ),
                    "short",
                    [query(f"sum(model_server_prediction_log_backlog{sel()})", "rows")],
                    steps=((10000, "orange"), (100000, "red")),
                ),
            ],
        ),
        Row(
            "Traffic and errors",
            [
                ts(
                    "Requests by protocol",
                    describe(
                        "Inference requests per second, by protocol (v1: KServe v1, v2: Open"
                        " Inference Protocol), every status.",
                        "compare with the clients' expected rate; a protocol dropping to 0 alone"
                        " points at that client.",
                    ),
                    "reqps",
                    [query(rate(requests, by="protocol"), "{{protocol}}")],
                    stacked=True,
                ),
                ts(
                    "Errors by status and protocol",
                    describe(
                        "Failed requests per second by HTTP status and protocol. 400/422: bad"
                        " input (the message names the feature), 404: unknown model or"
                        " prediction id, 413: too large, 499: client gave up, 503: not ready.",
                        "4xx are the clients' doing: read the 'error' of recent failures in"
                        " GET /logs/100 and tell the client team; 5xx are ours: see the runbook.",
                        "CaliforniaHousingHighErrorRatio",
                    ),
                    "reqps",
                    [
                        query(
                            rate(requests, 'status!="200"', "status, protocol"),
                            "{{status}} {{protocol}}",
                        )
                    ],
                    bars=True,
                    stacked=True,
                ),
                ts(
                    "Error ratio by protocol",
                    describe(
                        "Share of requests failing with 5xx (ours) and 4xx (the clients'), per"
                        " protocol.",
                        "5xx above 5% pages; 4xx above 25% for 30 minutes means a client sends"
                        " requests that no longer fit the model's contract.",
                        "CaliforniaHousingClientErrorRatio",
                    ),
                    "percentunit",
                    [
                        query(ratio('status=~"5.."', "protocol"), "5xx {{protocol}}"),
                        query(ratio('status=~"4.."', "protocol"), "4xx {{protocol}}"),
                    ],
                    lower=0,
                    steps=((0.05, "red"),),
                ),
                ts(
                    "In-flight requests",
                    describe(
                        "Inference requests being processed, per replica. Each replica computes"
                        " on two threads; more in flight means requests queue.",
                        "sustained values well above 2 with rising latency: scale out (replicas"
                        " or the InferenceService's autoscaling target).",
                    ),
                    "short",
                    [query(f"sum by (pod) (model_server_inflight_requests{sel()})", "{{pod}}")],
                    lower=0,
                ),
            ],
        ),
        Row(
            "Latency",
            [
                ts(
                    "Latency p50 / p95 / p99",
                    describe(
                        "Quantiles of successful request latency, from the first byte read to"
                        " the result (batches included).",
                        "p99 above 100 ms for long burns the SLO budget: check in-flight"
                        " requests (saturation) and the batch sizes clients send.",
                        "CaliforniaHousingLatencySLOBurnFast",
                    ),
                    "s",
                    [
                        query(quantile(0.5, latency), "p50"),
                        query(quantile(0.95, latency), "p95"),
                        query(quantile(0.99, latency), "p99"),
                    ],
                    steps=((0.1, "red"),),
                ),
                ts(
                    "p95 latency by protocol",
                    describe(
                        "95th percentile latency per protocol: v2's binary tensors parse faster"
                        " than v1's JSON instances.",
                        "one protocol alone slow points at its clients' payloads (size, format).",
                    ),
                    "s",
                    [query(quantile(0.95, latency, "protocol"), "{{protocol}}")],
                    steps=((0.1, "red"),),
                ),
                ts(
                    "Requests faster than 100 ms (SLO 99%)",
                    describe(
                        "Share of successful requests answered within 100 ms, against the SLO"
                        " target of 99%.",
                        "below the dashed line the error budget is being spent; the burn-rate"
                        " alerts fire when it is spent too fast.",
                        "CaliforniaHousingLatencySLOBurnSlow",
                    ),
                    "percentunit",
                    [query(slo_met("$__rate_interval"), "within 100 ms")],
                    upper=1,
                ),
                ts(
                    "Latency SLO burn rate",
                    describe(
                        "How fast the latency error budget (1% of requests may take over 100 ms)"
                        " is spent: 1 = exactly the budget over 30 days; 14.4 over 1 hour spends"
                        " 2% of a month's budget.",
                        "the fast-burn alert pages at 14.4 (1 h and 5 min) or 6 (6 h and 30 min);"
                        " the slow one tickets at 3 (1 d and 2 h) or 1 (3 d and 6 h).",
                        "CaliforniaHousingLatencySLOBurnFast",
                    ),
                    TIMES,
                    [
                        query(f"({slo_violations(w)}) / {1 - SLO_TARGET:.2f}", f"burn rate {w}")
                        for w in ("5m", "1h", "6h")
                    ],
                    lower=0,
                    steps=((6, "orange"), (14.4, "red")),
                ),
            ],
        ),
        Row(
            "Model versions and loads",
            [
                ts(
                    "Replicas serving each model version",
                    describe(
                        "How many replicas serve each version over time (model_server_model_"
                        "info): a promotion shows as one version replacing another.",
                        "two versions side by side for long means a replica did not pick up the"
                        " new @champion: check its alias polls and loads.",
                    ),
                    "short",
                    [
                        query(
                            f"count by (model_version) (model_server_model_info{sel()})",
                            "v{{model_version}}",
                        )
                    ],
                    bars=True,
                    stacked=True,
                    lower=0,
                ),
                ts(
                    "Model loads and registry failures",
                    describe(
                        "Model version loads by outcome, and failed looks at the registry alias,"
                        " per rate interval.",
                        "load failures: the new version does not load (artifacts, signature);"
                        " the old one keeps serving. Alias poll failures: MLflow unreachable.",
                        "CaliforniaHousingModelLoadFailing",
                    ),
                    "short",
                    [
                        query(
                            f"sum by (outcome) (increase(model_server_model_loads_total{sel()}"
                            "[$__rate_interval]))",
                            "load {{outcome}}",
                        ),
                        query(
                            f"sum(increase(model_server_alias_poll_failures_total{sel()}"
                            "[$__rate_interval]))",
                            "alias poll failures",
                        ),
                    ],
                    bars=True,
                    lower=0,
                ),
            ],
        ),
        Row(
            "Predictions",
            [
                Spec(
                    heatmap.Panel()
                    .title("Distribution of predicted values")
                    .description(
                        describe(
                            "Predicted median house values per time bucket (model_server_"
                            "prediction_value, in $100,000; the training target is capped at"
                            " 5.0). Shadow predictions of a challenger count here too.",
                            "a shift of the whole distribution without a model change follows"
                            " the inputs: compare with the drift panels of Model health.",
                            "CaliforniaHousingFeatureDrift",
                        )
                    )
                    .datasource(DATASOURCE)
                    .unit("short")
                    .targets(
                        _refs(
                            [
                                query(
                                    "sum by (le) (increase(model_server_prediction_value_bucket"
                                    f"{sel()}[$__interval]))",
                                    "{{le}}",
                                    fmt="heatmap",
                                )
                            ]
                        )
                    )
                    .calculate(False)
                    .y_axis(heatmap.YAxisConfig().unit(HUNDRED_THOUSANDS).decimals(2))
                    .cell_values(heatmap.CellValues().unit("short"))
                    .color(
                        heatmap.HeatmapColorOptions()
                        .mode(heatmap_models.HeatmapColorMode.SCHEME)
                        .scheme("Spectral")
                        .scale(heatmap_models.HeatmapColorScale.EXPONENTIAL)
                        .exponent(0.5)
                        .steps(64)
                    ),
                    12,
                    9,
                ),
                ts(
                    "Predicted value quantiles",
                    describe(
                        "10th, 50th and 90th percentiles of predicted median house values, in"
                        " dollars, from the prediction histogram.",
                        "a jump here right after a promotion is the new model; without one it"
                        " is the inputs (drift).",
                    ),
                    "currencyUSD",
                    [
                        query(
                            f"{quantile(q, 'model_server_prediction_value_bucket')} * {DOLLARS}",
                            f"p{int(q * 100)}",
                        )
                        for q in (0.1, 0.5, 0.9)
                    ],
                    height=9,
                ),
                ts(
                    "Mean predicted value by version",
                    describe(
                        "Mean prediction per version in dollars (a shadow challenger predicts"
                        " the same requests as the champion).",
                        "a challenger far from the champion on the same traffic will change"
                        " what clients see if promoted: check its live error first.",
                    ),
                    "currencyUSD",
                    [query(mean_prediction(), "v{{model_version}}")],
                ),
                ts(
                    "Prediction-log backlog by replica",
                    describe(
                        "Rows waiting for the serving database per replica (in memory and in"
                        " spill files). The writer commits 500-row batches every half second;"
                        " past 100,000 rows in memory a replica spills the oldest to disk.",
                        "check the serving database (PostgreSQL) and the pod logs for"
                        " 'prediction store unavailable'.",
                        "CaliforniaHousingPredictionLogBacklog",
                    ),
                    "short",
                    [
                        query(
                            f"max by (pod) (model_server_prediction_log_backlog{sel()})",
                            "{{pod}}",
                        )
                    ],
                    lower=0,
                    steps=((10000, "orange"), (100000, "red")),
                ),
                ts(
                    "Prediction-log rows spilled and lost",
                    describe(
                        "Per replica and rate interval: rows spilled to the spill volume (memory"
                        " buffer full: the database is down or slower than the traffic; they"
                        " are written later), rows waiting there now, and rows lost (nowhere to"
                        " put them: spill files at their size limit, or the disk failing). Lost"
                        " rows are predictions missing from the log for good.",
                        "spilled rows alone only need the database back (and room for the"
                        " spill files: see the next panel); any lost row needs the database"
                        " restored now.",
                        "CaliforniaHousingPredictionLogDropping",
                    ),
                    "short",
                    [
                        query(
                            "sum by (pod) (increase(model_server_prediction_log_spilled_rows_total"
                            f"{sel()}[$__rate_interval]))",
                            "spilled {{pod}}",
                        ),
                        query(
                            f"max by (pod) (model_server_prediction_log_spilled_backlog{sel()})",
                            "waiting on disk {{pod}}",
                        ),
                        query(
                            "sum by (pod) (increase(model_server_prediction_log_dropped_rows_total"
                            f"{sel()}[$__rate_interval]))",
                            "lost {{pod}}",
                        ),
                    ],
                    lower=0,
                ),
                ts(
                    "Spill files, share of their size limit",
                    describe(
                        "Per replica: the spill files' size over their limit"
                        " (MODEL_SERVER_SPILL_MAX_BYTES, 90% of the spill volume's sizeLimit)."
                        " Past the limit the rows that do not fit are dropped and counted; a"
                        " replica without a limit is not shown.",
                        "restore the serving database; do not delete the pod, its spilled rows"
                        " would go with it.",
                        "CaliforniaHousingPredictionLogSpillFilling",
                    ),
                    "percentunit",
                    [
                        query(
                            f"max by (pod) (model_server_prediction_log_spill_bytes{sel()}"
                            f" / (model_server_prediction_log_spill_limit_bytes{sel()} > 0))",
                            "{{pod}}",
                        )
                    ],
                    lower=0,
                    upper=1,
                    steps=((0.5, "orange"), (0.8, "red")),
                ),
            ],
        ),
    ]
    return (
        "california-housing-serving",
        "California Housing / Serving",
        "Traffic, errors, latency, model versions and predictions of the model server.",
        rows,
    )


def model_health() -> tuple[str, str, str, list[Row]]:
    policy = policy_defaults()
    # The policy's drift_threshold is the "significant shift" band (PSI 0.2 by convention);
    # half of it is the conventional "moderate" band (0.1).
    drift, moderate = policy.drift_threshold, policy.drift_threshold / 2
    psi_thresholds = ((moderate, "orange"), (drift, "red"))
    rows = [
        Row(
            "Input drift",
            [
                ts(
                    "PSI per feature",
                    describe(
                        "Population stability index of each feature over the drift window (the"
                        " newest inputs) against the model's training profile."
                        f" < {moderate:g} no shift, {moderate:g}-{drift:g} moderate,"
                        f" > {drift:g} significant (the retraining policy's default"
                        " drift_threshold, the retraining trigger).",
                        "above the policy's drift_threshold for 15 minutes: find which features"
                        " moved and whether the"
                        " clients' population changed (a new region) or a client sends broken"
                        " values; retraining on new data is the fix for a real shift.",
                        "CaliforniaHousingFeatureDrift",
                    ),
                    "none",
                    [
                        query(
                            f"max by (feature) (model_server_feature_drift_psi{sel()})",
                            "{{feature}}",
                        )
                    ],
                    lower=0,
                    steps=psi_thresholds,
                ),
                bars(
                    "PSI per feature now",
                    describe(
                        "The latest PSI of each feature (the highest over served versions).",
                        "the longest bars are the features to look at first.",
                        "CaliforniaHousingFeatureDrift",
                    ),
                    "none",
                    [
                        query(
                            f"max by (feature) (model_server_feature_drift_psi{sel()})",
                            "{{feature}}",
                            instant=True,
                        )
                    ],
                    steps=psi_thresholds,
                ),
                ts(
                    "Kolmogorov-Smirnov statistic per feature",
                    describe(
                        "KS distance between the drift window and the profile's reference"
                        " sample, for context: with windows of a thousand rows it flags"
                        " differences too small to matter, so it triggers nothing.",
                        "use it to confirm a PSI alert, not on its own.",
                    ),
                    "none",
                    [
                        query(
                            f"max by (feature) (model_server_feature_drift_ks{sel()})",
                            "{{feature}}",
                        )
                    ],
                    lower=0,
                    upper=1,
                ),
                single(
                    "Drift window",
                    describe(
                        "Validated inputs in each version's drift window (at most"
                        " MODEL_SERVER_DRIFT_WINDOW). PSI over a few rows is noise: the drift"
                        f" alert waits for {DRIFT_MIN_WINDOW}.",
                        "a small window after a restart or a new version fills with traffic.",
                    ),
                    "short",
                    [
                        query(
                            f"max by (model_version) (model_server_drift_window_size{sel()})",
                            "v{{model_version}}",
                        )
                    ],
                    width=12,
                    height=8,
                    text_mode=common.BigValueTextMode.VALUE_AND_NAME,
                ),
            ],
        ),
        Row(
            "Live error (from feedback)",
            [
                ts(
                    "Live R² vs offline R²",
                    describe(
                        "R² of the newest predictions that received ground truth, per version,"
                        " beside the version's test R² from training (dashed).",
                        f"live R² below offline R² - {policy.degradation_margin:g}, or below"
                        f" {policy.r2_floor:g} (the retraining policy's defaults of"
                        " degradation_margin and r2_floor), is degraded: check drift and the"
                        " feedback itself, then retrain.",
                        "CaliforniaHousingLiveErrorDegraded",
                    ),
                    "none",
                    [
                        query(
                            f"max by (model_version) (model_server_live_r2{sel()})",
                            "live R² v{{model_version}}",
                        ),
                        query(
                            f"max by (model_version) (model_server_model_offline_r2{sel()})",
                            "offline R² v{{model_version}}",
                        ),
                    ],
                    upper=1,
                    steps=((policy.r2_floor, "transparent"),),
                ),
                ts(
                    "Live RMSE and MAE",
                    describe(
                        "Root mean squared and mean absolute error of the newest predictions"
                        " with feedback, in dollars.",
                        "a rise with a steady R² means prices moved as a whole (the target"
                        " drifts): retrain on recent data.",
                        "CaliforniaHousingLiveErrorDegraded",
                    ),
                    "currencyUSD",
                    [
                        query(
                            f"max by (model_version) (model_server_live_rmse{sel()}) * {DOLLARS}",
                            "RMSE v{{model_version}}",
                        ),
                        query(
                            f"max by (model_version) (model_server_live_mae{sel()}) * {DOLLARS}",
                            "MAE v{{model_version}}",
                        ),
                    ],
                    lower=0,
                ),
                ts(
                    "Feedback coverage",
                    describe(
                        "Share of the newest predictions of each version that received ground"
                        " truth on POST /feedback.",
                        "0 while predictions flow: the labelling pipeline stopped sending"
                        " feedback, and live error can no longer be judged.",
                        "CaliforniaHousingNoFeedback",
                    ),
                    "percentunit",
                    [
                        query(
                            f"max by (model_version) (model_server_feedback_coverage{sel()})",
                            "v{{model_version}}",
                        )
                    ],
                    lower=0,
                    upper=1,
                ),
                ts(
                    "Feedback received",
                    describe(
                        "Ground-truth values received per second, by the version served when"
                        " they came, and the labelled predictions live error is computed over.",
                        "live error is judged with at least"
                        f" {policy.min_feedback} labelled predictions; below"
                        " that the live panels are noise.",
                        "CaliforniaHousingNoFeedback",
                    ),
                    "reqps",
                    [
                        query(
                            rate("model_server_feedback_total", by="model_version"),
                            "feedback/s v{{model_version}}",
                        )
                    ],
                    lower=0,
                ),
            ],
        ),
        Row(
            "Champion vs challenger",
            [
                version_table(
                    "Champion and challenger side by side",
                    describe(
                        "The @champion and the @challenger loaded beside it (MODEL_SERVER_"
                        "CHALLENGER_MODE shadow or canary), one row per version: offline and"
                        " live error on the same traffic and feedback.",
                        "a challenger with better live R² over a few hundred labelled rows is"
                        " a candidate for promotion (the retraining gate decides); a worse one"
                        " should not be promoted.",
                    ),
                    [
                        (
                            "role",
                            "none",
                            f"max by (model_version) (model_server_model_info{sel()}) * 1"
                            f"\nor\nmax by (model_version) (model_server_challenger_info{sel()})"
                            " * 2",
                        ),
                        (
                            "offline R²",
                            "none",
                            f"max by (model_version) (model_server_model_offline_r2{sel()})",
                        ),
                        (
                            "live R²",
                            "none",
                            f"max by (model_version) (model_server_live_r2{sel()})",
                        ),
                        (
                            "live RMSE",
                            "currencyUSD",
                            f"max by (model_version) (model_server_live_rmse{sel()}) * {DOLLARS}",
                        ),
                        (
                            "labelled",
                            "short",
                            f"max by (model_version) (model_server_live_feedback_samples{sel()})",
                        ),
                        (
                            "coverage",
                            "percentunit",
                            f"max by (model_version) (model_server_feedback_coverage{sel()})",
                        ),
                        (
                            "max PSI",
                            "none",
                            f"max by (model_version) (model_server_feature_drift_psi{sel()})",
                        ),
                    ],
                    mappings={"role": {"1": ("champion", "green"), "2": ("challenger", "blue")}},
                ),
                ts(
                    "Live R²: champion vs challenger",
                    describe(
                        "Live R² of the champion and of the challenger on the same feedback.",
                        "the challenger consistently above the champion: let the next"
                        " retraining decision promote it, or promote it by hand.",
                    ),
                    "none",
                    [
                        query(
                            champion(f"max by (model_version) (model_server_live_r2{sel()})"),
                            "champion v{{model_version}}",
                        ),
                        query(
                            challenger(f"max by (model_version) (model_server_live_r2{sel()})"),
                            "challenger v{{model_version}}",
                        ),
                    ],
                    upper=1,
                ),
                ts(
                    "Mean prediction: champion vs challenger",
                    describe(
                        "Mean predicted value in dollars of each, on the same requests in"
                        " shadow mode (a subset each in canary mode).",
                        "a large gap: promoting the challenger would change answers that much.",
                    ),
                    "currencyUSD",
                    [
                        query(champion(mean_prediction()), "champion v{{model_version}}"),
                        query(challenger(mean_prediction()), "challenger v{{model_version}}"),
                    ],
                ),
                ts(
                    "Challenger traffic",
                    describe(
                        "Requests the challenger predicted: in shadow mode by outcome (ok,"
                        " refused by its contract, failed), in canary mode the requests it"
                        " answered.",
                        "shadow 'failed' or 'refused' above 0: the challenger cannot serve"
                        " this traffic; do not promote it.",
                    ),
                    "reqps",
                    [
                        query(
                            rate(
                                "model_server_shadow_predictions_total",
                                by="model_version, outcome",
                            )
                            + "\nor\nlabel_replace(\n"
                            + challenger(rate("model_server_requests_total", by="model_version"))
                            + ',\n  "outcome", "canary", "", ""\n)',
                            "v{{model_version}} {{outcome}}",
                        ),
                    ],
                    lower=0,
                ),
                ts(
                    "Drift: champion vs challenger",
                    describe(
                        "Highest feature PSI over each version's drift window.",
                        "in shadow mode both see the same inputs and should match.",
                        "CaliforniaHousingFeatureDrift",
                    ),
                    "none",
                    [
                        query(
                            champion(
                                f"max by (model_version) (model_server_feature_drift_psi{sel()})"
                            ),
                            "champion v{{model_version}}",
                        ),
                        query(
                            challenger(
                                f"max by (model_version) (model_server_feature_drift_psi{sel()})"
                            ),
                            "challenger v{{model_version}}",
                        ),
                    ],
                    lower=0,
                    steps=psi_thresholds,
                ),
            ],
        ),
    ]
    return (
        "california-housing-model-health",
        "California Housing / Model health",
        "Input drift, live error from feedback, and champion vs challenger.",
        rows,
    )


def retraining() -> tuple[str, str, str, list[Row]]:
    decisions = f"model_server_retrain_decisions{sel()}"
    runs = 'outcome=~"promoted|not_promoted|failed|abandoned"'
    rows = [
        Row(
            "Now",
            [
                single(
                    "Champion and its offline R²",
                    describe(
                        "The version served as @champion and its test R² from training (the"
                        " gate's score).",
                        "compare with live R² on Model health: a large gap is degradation.",
                    ),
                    "none",
                    [
                        query(
                            champion(
                                f"max by (model_version) (model_server_model_offline_r2{sel()})"
                            ),
                            "champion v{{model_version}}",
                            instant=True,
                        )
                    ],
                    text_mode=common.BigValueTextMode.VALUE_AND_NAME,
                    decimals=3,
                    base="red",
                    # the promotion gate's floor on test R²
                    steps=((gate_r2_floor(), "green"),),
                    width=6,
                ),
                single(
                    "Last successful retrain",
                    describe(
                        "When the newest retraining run that reached a verdict (promoted or"
                        " not promoted) finished.",
                        "older than 8 days: runs are failing or not going (see decisions).",
                        "CaliforniaHousingRetrainStale",
                    ),
                    "dateTimeFromNow",
                    [
                        query(
                            "max(model_server_retrain_last_success_timestamp_seconds"
                            f"{sel()}) * 1000",
                            "last success",
                            instant=True,
                        )
                    ],
                    width=5,
                ),
                single(
                    "Last decision",
                    describe(
                        "When the newest retraining decision (taken or skipped) was recorded."
                        " The CronJob decides every 6 hours.",
                        "older than a day: the CronJob does not run (suspended, failing to"
                        " start, or cannot reach the serving database).",
                        "CaliforniaHousingRetrainNotRunning",
                    ),
                    "dateTimeFromNow",
                    [
                        query(
                            "max(model_server_retrain_last_decision_timestamp_seconds"
                            f"{sel()}) * 1000",
                            "last decision",
                            instant=True,
                        )
                    ],
                    width=5,
                ),
                single(
                    "Retraining now",
                    describe(
                        "1 while a retraining run holds the lease in the serving database.",
                        "running for more than 2 hours: the run is stuck (the Job's deadline is"
                        " 1 hour).",
                        "CaliforniaHousingRetrainStuck",
                    ),
                    "none",
                    [query(f"max(model_server_retrain_running{sel()})", "running", instant=True)],
                    mappings=value_map({"0": ("idle", "green"), "1": ("running", "blue")}),
                    width=4,
                ),
                single(
                    "Last go run promoted?",
                    describe(
                        "1 when the newest run that went and finished did not promote its model"
                        " (not promoted by the gate, failed, or abandoned): the champion is"
                        " unchanged although a decision said go.",
                        "read the gate's reasons on the newest decision (GET /retrain/logs/5).",
                        "CaliforniaHousingChampionNotPromoted",
                    ),
                    "none",
                    [
                        query(
                            f"max(model_server_retrain_last_go_unpromoted{sel()})",
                            "unpromoted",
                            instant=True,
                        )
                    ],
                    mappings=value_map(
                        {"0": ("promoted", "green"), "1": ("not promoted", "orange")}
                    ),
                    width=4,
                ),
            ],
        ),
        Row(
            "Decisions and runs",
            [
                ts(
                    "Decisions over time by outcome",
                    describe(
                        "New retraining decisions per interval by outcome: skipped (no trigger,"
                        " disabled or too soon), already_running, running, promoted,"
                        " not_promoted, failed, abandoned (the run died). The triggers and"
                        " reasons of each are in GET /retrain/logs/20.",
                        "a run of failed or abandoned: read the run's log and the decision's"
                        " error; many skipped with drift or degraded live error: check the"
                        " policy (enabled, min_interval_hours).",
                        "CaliforniaHousingRetrainFailed",
                    ),
                    "short",
                    [
                        query(
                            f"sum by (outcome) (\n  clamp_min({decisions} - {decisions} offset"
                            " $__interval, 0)\n)",
                            "{{outcome}}",
                        )
                    ],
                    bars=True,
                    stacked=True,
                    lower=0,
                ),
                bars(
                    "Decisions in the time range",
                    describe(
                        "Decisions recorded in the dashboard's time range, by outcome.",
                        "outcomes other than skipped and promoted deserve a look at their reasons.",
                        "CaliforniaHousingRetrainFailed",
                    ),
                    "short",
                    [
                        query(
                            f"max by (outcome) (max_over_time({decisions}[$__range]))\n-\n"
                            f"max by (outcome) (min_over_time({decisions}[$__range]))",
                            "{{outcome}}",
                            instant=True,
                        )
                    ],
                ),
                timeline(
                    "Retraining runs",
                    describe(
                        "When a retraining run held the lease: each 'running' band is one run,"
                        " its width the run's duration.",
                        "bands longer than the Job's 1-hour deadline mean a stuck run.",
                        "CaliforniaHousingRetrainStuck",
                    ),
                    "none",
                    [query(f"max(model_server_retrain_running{sel()})", "run")],
                    value_map({"0": ("idle", "transparent"), "1": ("running", "blue")}),
                    width=12,
                ),
                single(
                    "Time spent retraining in the range",
                    describe(
                        "Total time a run held the lease in the dashboard's time range (the share"
                        " of samples with a run, times the range): divided by the finished runs"
                        " it is the mean run duration.",
                        "a growing time per run: the data or the candidates grew; check the"
                        " Job's activeDeadlineSeconds.",
                    ),
                    "s",
                    [
                        query(
                            f"max(avg_over_time(model_server_retrain_running{sel()}[$__range]))"
                            " * $__range_s",
                            "retraining",
                            instant=True,
                        )
                    ],
                    width=6,
                    height=6,
                ),
                single(
                    "Finished runs in the range",
                    describe(
                        "Runs that went and finished in the time range (promoted, not"
                        " promoted, failed, abandoned).",
                        "0 over a week: no trigger fired and the interval trigger did not"
                        " either; see the last decision.",
                    ),
                    "short",
                    [
                        query(
                            f"sum(\n  max by (outcome) (max_over_time(model_server_retrain_"
                            f"decisions{sel(runs)}[$__range]))\n  -\n  max by (outcome)"
                            f" (min_over_time(model_server_retrain_decisions{sel(runs)}"
                            "[$__range]))\n)",
                            "runs",
                            instant=True,
                        )
                    ],
                    width=6,
                    height=6,
                ),
                ts(
                    "Champion version and offline R² over time",
                    describe(
                        "The champion's test R² over time, one series per version: each"
                        " promotion starts a new series.",
                        "a promotion that lowered the offline score should not have passed the"
                        " gate: check its decision.",
                    ),
                    "none",
                    [
                        query(
                            champion(
                                f"max by (model_version) (model_server_model_offline_r2{sel()})"
                            ),
                            "champion v{{model_version}}",
                        )
                    ],
                    upper=1,
                    width=24,
                ),
            ],
        ),
    ]
    return (
        "california-housing-retraining",
        "California Housing / Retraining",
        "Retraining decisions and their outcomes, runs, and the champion they produced.",
        rows,
    )


DASHBOARDS: dict[str, Callable[[], tuple[str, str, str, list[Row]]]] = {
    "california-housing-serving.json": serving,
    "california-housing-model-health.json": model_health,
    "california-housing-retraining.json": retraining,
}


def build(spec: Callable[[], tuple[str, str, str, list[Row]]]) -> dashboard_models.Dashboard:
    uid, title, description, rows = spec()
    board = (
        dashboard_builders.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["california-housing", "mlops"])
        .editable()
        .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR)
        .time("now-6h", "now")
        .timezone("browser")
        .refresh("30s")
        .variables(variables())
        .link(
            dashboard_builders.DashboardLink("California Housing")
            .type(dashboard_models.DashboardLinkType.DASHBOARDS)
            .tags(["california-housing"])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )
    panel_id = 0
    for row in rows:
        panel_id += 1
        board = board.with_row(dashboard_builders.Row(row.title).id(panel_id))
        for spec_ in row.panels:
            panel_id += 1
            builder = spec_.builder.id(panel_id).span(spec_.width).height(spec_.height)  # type: ignore[attr-defined]
            board = board.with_panel(builder)
    return board.build()


def render(spec: Callable[[], tuple[str, str, str, list[Row]]]) -> str:
    """The dashboard as the JSON text the chart ships."""
    return json.dumps(build(spec), cls=JSONEncoder, indent=2, ensure_ascii=False) + "\n"


def generate() -> dict[str, str]:
    """Every dashboard: file name -> JSON text."""
    return {name: render(spec) for name, spec in DASHBOARDS.items()}
