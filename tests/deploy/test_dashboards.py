"""Grafana: provisioned data sources and dashboards, and dashboards that ask only for what
weir really records (metric names, labels and span attributes from `weir.telemetry`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from weir import telemetry

from tests.deploy.files import DEPLOY, compose, dashboards, load_yaml

PROMQL_WORDS = frozenset(
    [
        "sum",
        "avg",
        "min",
        "max",
        "count",
        "rate",
        "irate",
        "increase",
        "delta",
        "histogram_quantile",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "offset",
        "bool",
        "topk",
        "bottomk",
        "sort",
        "sort_desc",
        "abs",
        "clamp_min",
        "clamp_max",
        "label_values",
        "vector",
        "scalar",
        "time",
    ]
)
RESOURCE_LABELS = frozenset({"le", "job", "instance", "service_name", "deployment_environment"})
TRACEQL_INTRINSICS = frozenset({"name", "status", "duration", "kind", "error", "select"})

IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")


def promql_names(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) an expression uses. Grafana variables, strings, ranges and
    numbers are not names; anything else that is not PromQL is taken for a metric."""
    labels = {label.strip() for group in GROUPING.findall(expr) for label in group.split(",")}
    labels |= set(MATCHER.findall(expr))
    bare = re.sub(r"\$\{?\w+\}?", " ", expr)
    bare = re.sub(r"\"(?:[^\"\\]|\\.)*\"", " ", bare)
    bare = re.sub(r"\[[^\]]*\]", " ", bare)
    bare = GROUPING.sub(" ", bare)
    bare = re.sub(r"\b\d+(?:\.\d+)?(?:e[+-]?\d+)?\b", " ", bare)
    words = set(IDENTIFIER.findall(bare))
    metrics = words - PROMQL_WORDS - labels
    if expr.lstrip().startswith("label_values("):  # label_values(metric, label)
        metrics -= {expr.rsplit(",", 1)[1].strip(" )")}
        labels.add(expr.rsplit(",", 1)[1].strip(" )"))
    return {m for m in metrics if m}, {label for label in labels if label}


def traceql_attributes(query: str) -> set[str]:
    return set(re.findall(r"\bspan\.([A-Za-z0-9_.]+)", query))


def known_labels(metric_names: set[str]) -> set[str]:
    by_series = {s: m for m in telemetry.METRICS for s in m.prometheus_series}
    allowed = set(RESOURCE_LABELS)
    for name in metric_names:
        if name in by_series:
            allowed |= set(by_series[name].attributes)
    return allowed


def targets(dashboard: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], panel, target


def problems(dashboard: dict[str, Any]) -> list[str]:
    """Everything in a dashboard that weir does not record."""
    found: list[str] = []
    known_metrics = telemetry.metric_names()
    queries = [
        (title, target.get("datasource", panel["datasource"]), target)
        for title, panel, target in targets(dashboard)
    ]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable["type"] == "query":
            queries.append((f"${variable['name']}", variable["datasource"], variable["query"]))
    for title, datasource, target in queries:
        if datasource["type"] == "prometheus":
            metrics, labels = promql_names(target.get("expr") or target["query"])
            found += [f"{title}: unknown metric {m}" for m in sorted(metrics - known_metrics)]
            found += [
                f"{title}: {metric_list(metrics)} has no label {label}"
                for label in sorted(labels - known_labels(metrics))
            ]
        elif datasource["type"] == "tempo":
            attributes = traceql_attributes(target["query"])
            found += [
                f"{title}: unknown span attribute {a}"
                for a in sorted(attributes - telemetry.SPAN_ATTRIBUTES)
            ]
    return found


def metric_list(metrics: set[str]) -> str:
    return ", ".join(sorted(metrics)) or "the query"


def datasource_uids() -> dict[str, str]:
    provisioned = load_yaml(DEPLOY / "grafana/provisioning/datasources/datasources.yaml")
    return {d["uid"]: d["type"] for d in provisioned["datasources"]}


# The checker itself ---------------------------------------------------------------------------


def test_the_checker_reads_names_out_of_promql() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, queue) "
        '(rate(weir_task_duration_seconds_bucket{queue=~"$queue",status="failed"}[5m])))'
        " / on(instance) up * 60"
    )
    assert promql_names(expr) == (
        {"weir_task_duration_seconds_bucket", "up"},
        {"le", "queue", "status", "instance"},
    )


def test_a_dashboard_using_an_unknown_metric_or_label_is_caught() -> None:
    bad = {
        "panels": [
            {
                "title": "oops",
                "datasource": {"type": "prometheus", "uid": "prometheus"},
                "targets": [
                    {"expr": "sum(rate(weir_tasks_exploded_total[5m]))"},
                    {"expr": "sum by (colour) (weir_queue_depth)"},
                ],
            },
            {
                "title": "trace",
                "datasource": {"type": "tempo", "uid": "tempo"},
                "targets": [{"query": '{ span.weir.flowid = "x" }'}],
            },
        ]
    }
    assert problems(bad) == [
        "oops: unknown metric weir_tasks_exploded_total",
        "oops: weir_queue_depth has no label colour",
        "trace: unknown span attribute weir.flowid",
    ]


# The dashboards -------------------------------------------------------------------------------


def test_the_three_dashboards_are_provisioned() -> None:
    titles = {d["title"] for d in dashboards().values()}
    assert titles == {"Flows overview", "Task latency and failures", "Flow traces"}
    uids = [d["uid"] for d in dashboards().values()]
    assert len(set(uids)) == len(uids)
    provider = load_yaml(DEPLOY / "grafana/provisioning/dashboards/dashboards.yaml")
    path = provider["providers"][0]["options"]["path"]
    grafana_volumes = compose()["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in grafana_volumes


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_dashboard_queries_use_only_what_telemetry_defines(name: str) -> None:
    assert problems(dashboards()[name]) == []


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_dashboard_panels_use_provisioned_datasources_and_fit_the_grid(name: str) -> None:
    uids = datasource_uids()
    dashboard = dashboards()[name]
    assert dashboard["panels"]
    for title, panel, target in targets(dashboard):
        for source in (panel["datasource"], target.get("datasource", panel["datasource"])):
            assert uids.get(source["uid"]) == source["type"], f"{name}: {title}: {source}"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(set(ids)) == len(ids)
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, f"{name}: {panel['title']} is wider than the grid"


def test_every_metric_appears_on_a_dashboard() -> None:
    used: set[str] = set()
    for dashboard in dashboards().values():
        for _, _, target in targets(dashboard):
            if "expr" in target:
                used |= promql_names(target["expr"])[0]
    missing = [m.name for m in telemetry.METRICS if not set(m.prometheus_series) & used]
    assert missing == []


def test_flow_traces_are_found_by_the_flow_id_attribute() -> None:
    traces = next(d for d in dashboards().values() if d["title"] == "Flow traces")
    variables = {v["name"] for v in traces["templating"]["list"]}
    assert "flow_id" in variables
    queries = [t["query"] for _, _, t in targets(traces) if t.get("queryType") == "traceql"]
    assert f'{{ span.{telemetry.ATTR_FLOW_ID} = "$flow_id" }}' in queries


# The pipeline behind them -------------------------------------------------------------------


def test_collector_pipelines_use_only_declared_components() -> None:
    collector = load_yaml(DEPLOY / "otel/collector.yaml")
    pipelines = collector["service"]["pipelines"]
    assert set(pipelines) == {"traces", "metrics"}
    for name, pipeline in pipelines.items():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline[kind]:
                assert component in collector[kind], f"{name}: {kind} {component} undeclared"


def test_traces_reach_tempo_and_metrics_reach_prometheus() -> None:
    collector = load_yaml(DEPLOY / "otel/collector.yaml")
    tempo = load_yaml(DEPLOY / "tempo/tempo.yaml")
    prometheus = load_yaml(DEPLOY / "prometheus/prometheus.yml")
    [trace_exporter] = collector["service"]["pipelines"]["traces"]["exporters"]
    tempo_grpc = tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert collector["exporters"][trace_exporter]["endpoint"] == (
        "tempo:" + tempo_grpc.rsplit(":", 1)[1]
    )
    [metric_exporter] = collector["service"]["pipelines"]["metrics"]["exporters"]
    port = collector["exporters"][metric_exporter]["endpoint"].rsplit(":", 1)[1]
    scraped = {
        t
        for job in prometheus["scrape_configs"]
        for c in job["static_configs"]
        for t in c["targets"]
    }
    assert f"otel-collector:{port}" in scraped
    datasources = load_yaml(DEPLOY / "grafana/provisioning/datasources/datasources.yaml")
    urls = {d["type"]: d["url"] for d in datasources["datasources"]}
    assert urls["tempo"] == f"http://tempo:{tempo['server']['http_listen_port']}"
    assert urls["prometheus"] == "http://prometheus:9090"
