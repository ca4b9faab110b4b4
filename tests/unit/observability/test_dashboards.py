"""The Grafana dashboards and Prometheus alert rules in deploy/ use only metrics and labels the gateway exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tollgate.api.app import TollgateApp, create_app
from tollgate.api.metrics import find_recorder
from tollgate.config.loader import parse_config
from tollgate.context import Principal, RequestContext
from tollgate.observability.metrics import GatewayMetrics
from tollgate.providers.base import Deployment
from tollgate.wire.openai import Usage

ROOT = Path(__file__).resolve().parents[3]
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DOC = ROOT / "docs" / "observability.md"

# Series Prometheus itself adds to every scrape target, and the labels it adds to every series.
PROMETHEUS_SERIES = {"up"}
TARGET_LABELS = {"job", "instance"}

# PromQL words that are not metric names.
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset", "bool"}
_KEYWORDS |= {"inf", "nan", "le"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$[A-Za-z_]\w*")
_RANGE = re.compile(r"\[[^\]]*\]")
_OFFSET = re.compile(r"\boffset\s+-?\w+")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_]\w*)\s*(=~|!~|!=|=)")
_NUMBER = re.compile(r"(?<![\w:])\d+(\.\d+)?([eE][+-]?\d+)?")
_IDENT = re.compile(r"(?<![\w:])([A-Za-z_:][\w:]*)(\s*\()?")


def parse_promql(expr: str) -> tuple[set[str], list[tuple[str, set[str]]], set[str]]:
    """A small PromQL scanner: the metric names an expression selects, each selector's matcher labels
    (with its metric name, "" when bare), and the labels of its ``by``/``without``/``on`` clauses."""
    text = _VARIABLE.sub("x", _STRING.sub('""', expr))
    text = _OFFSET.sub(" ", _RANGE.sub(" ", text))
    selectors = [
        (m.group(1) or "", {lm.group(1) for lm in _MATCHER.finditer(m.group(2))}) for m in _SELECTOR.finditer(text)
    ]
    grouping = {label.strip() for m in _GROUPING.finditer(text) for label in m.group(2).split(",") if label.strip()}
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = _NUMBER.sub(" ", text)
    names = set()
    for m in _IDENT.finditer(text):
        word, call = m.group(1), m.group(2)
        if call or word in _KEYWORDS:  # a function call or a keyword
            continue
        names.add(word)
    return names, selectors, grouping


def test_the_scanner_reads_promql() -> None:
    names, selectors, grouping = parse_promql(
        'histogram_quantile(0.95, sum by (le, provider) (rate(tollgate_request_duration_seconds_bucket{provider!="",'
        ' team=~"$team|a,b}"}[$__rate_interval]))) / on(instance) group_left up{job="tollgate"} > 1e-3 and '
        "sum(rate(x_total[5m] offset 1d)) * 86400"
    )
    assert names == {"tollgate_request_duration_seconds_bucket", "up", "x_total"}
    assert selectors == [("tollgate_request_duration_seconds_bucket", {"provider", "team"}), ("up", {"job"})]
    assert grouping == {"le", "provider", "instance"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> TollgateApp:
    env = {"TOLLGATE_MASTER_KEY": "tg-master-test-key-0123456789", "TOLLGATE_DATABASE_URL": "memory://"}
    env["TOLLGATE_DATA_DIR"] = str(tmp_path_factory.mktemp("data"))
    application, _, _ = create_app(parse_config("", "<test>", env), env)
    return application


def _requests() -> Iterator[RequestContext]:
    """A handful of finished requests of every kind the recorder distinguishes."""
    team = Principal(key_id="k", name="k", role="user", team_id="t", org_id="o")
    dep = Deployment("openai", "openai", "gpt-4o-mini", "http://upstream/v1")
    for status, error, deployment, stream in (
        (200, None, dep, False),
        (200, None, dep, True),
        (429, "rate_limit_error", None, False),
        (402, "insufficient_quota", None, False),
        (502, "upstream_error", dep, False),
        (499, None, dep, True),
    ):
        ctx = RequestContext(request_id="r", front_door="openai", endpoint="chat", config_version="v")
        ctx.principal, ctx.requested_model, ctx.deployment = team, "fast", deployment
        ctx.status, ctx.error_type, ctx.stream = status, error, stream
        ctx.client_disconnected = status == 499
        ctx.attempts, ctx.fallback = (2, True) if deployment else (0, False)
        ctx.usage, ctx.cost_usd = Usage(prompt_tokens=10, completion_tokens=5), 0.001
        if stream:
            ctx.first_byte_at = ctx.started + 0.01
        yield ctx


@pytest.fixture(scope="module")
def exported(app: TollgateApp) -> dict[str, set[str]]:
    """Sample name → label names, from the exposition of the assembled gateway after real finalizes."""
    recorder = find_recorder(app.gateway)
    assert recorder is not None
    for ctx in _requests():
        app.gateway.finalize(ctx)
    text = recorder.metrics.render().decode()
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    # Families that exist but have no series yet (guardrails, cache: incremented once that work lands)
    # are declared in the catalog with their labels.
    for info in recorder.metrics.catalog:
        for name in info.sample_names:
            labels = set(info.labels) | ({"le"} if name.endswith("_bucket") else set())
            out.setdefault(name, set()).update(labels)
    return out


def test_driven_requests_fill_the_core_metrics(exported: dict[str, set[str]], app: TollgateApp) -> None:
    recorder = find_recorder(app.gateway)
    assert recorder is not None
    text = recorder.metrics.render().decode()
    with_samples = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    for name in (
        "tollgate_requests_total",
        "tollgate_request_errors_total",
        "tollgate_request_duration_seconds_bucket",
        "tollgate_time_to_first_byte_seconds_bucket",
        "tollgate_tokens_total",
        "tollgate_cost_usd_total",
        "tollgate_rate_limit_rejections_total",
        "tollgate_budget_rejections_total",
        "tollgate_provider_errors_total",
        "tollgate_retries_total",
        "tollgate_fallbacks_total",
        "tollgate_client_disconnects_total",
        "tollgate_requests_in_flight",
        "tollgate_build_info",
        "tollgate_config_info",
    ):
        assert name in with_samples, name


def _dashboard_queries(board: dict) -> Iterator[tuple[str, str]]:  # type: ignore[type-arg]
    def panels(items: list) -> Iterator[dict]:  # type: ignore[type-arg]
        for p in items:
            yield p
            yield from panels(p.get("panels", []))

    for panel in panels(board["panels"]):
        for target in panel.get("targets", []):
            if "expr" in target:
                yield f"panel {panel['title']!r}", target["expr"]
    for var in board.get("templating", {}).get("list", []):
        query = var.get("query")
        if var["type"] == "query":
            yield f"variable {var['name']!r}", query["query"] if isinstance(query, dict) else query


def _alert_queries() -> Iterator[tuple[str, str]]:
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            yield f"alert {rule['alert']}", rule["expr"]


def _all_queries() -> list[tuple[str, str, str]]:
    out = [
        (path.name, where, expr)
        for path in DASHBOARDS
        for where, expr in _dashboard_queries(json.loads(path.read_text()))
    ]
    return out + [(ALERTS.name, where, expr) for where, expr in _alert_queries()]


def _check(expr: str, exported: dict[str, set[str]]) -> list[str]:
    """Unknown metric names, and labels a selector or grouping names that its metrics do not carry."""
    label_values = re.fullmatch(r"\s*label_values\((?:(.*),\s*)?(\w+)\)\s*", expr)
    if label_values:  # a Grafana variable query: label_values(selector, label)
        selector, label = label_values.group(1) or "", label_values.group(2)
        names, _, _ = parse_promql(selector)
        problems = _check(selector, exported) if selector else []
        if not any(label in exported.get(n, set()) for n in names):
            problems.append(f"label {label!r} is on none of {sorted(names)}")
        return problems
    names, selectors, grouping = parse_promql(expr)
    problems = [f"unknown metric {n}" for n in sorted(names) if n not in exported and n not in PROMETHEUS_SERIES]
    for name, labels in selectors:
        if name in exported:
            problems += [f"{name} has no label {label!r}" for label in sorted(labels - exported[name] - TARGET_LABELS)]
    available = set().union(*(exported.get(n, set()) for n in names)) | TARGET_LABELS
    problems += [
        f"grouping by {label!r}, which none of {sorted(names)} carries" for label in sorted(grouping - available)
    ]
    return problems


def test_there_are_dashboards_and_alerts() -> None:
    assert {p.stem for p in DASHBOARDS} == {"overview", "cost", "provider-health", "guardrails"}
    assert len(_all_queries()) > 60


@pytest.mark.parametrize(("file", "where", "expr"), _all_queries(), ids=lambda v: str(v)[:60])
def test_every_query_uses_exported_metrics_and_labels(
    file: str, where: str, expr: str, exported: dict[str, set[str]]
) -> None:
    names, _, _ = parse_promql(expr)
    assert names, f"{file} {where}: no metric found in {expr!r}"
    problems = _check(expr, exported)
    assert not problems, f"{file} {where}: {problems}\n{expr}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboards_are_importable_grafana_json(path: Path) -> None:
    board = json.loads(path.read_text())
    assert board["uid"] == f"tollgate-{path.stem}" and board["title"].startswith("Tollgate / ")
    assert "tollgate" in board["tags"] and board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids: set[int] = set()
    for panel in board["panels"]:
        assert panel["id"] not in ids, f"duplicate panel id {panel['id']}"
        ids.add(panel["id"])
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24 and pos["h"] > 0
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids))
        # Every variable a query uses is defined on the board (Grafana's own ones start with __).
        for target in panel["targets"]:
            for var in re.findall(r"\$\{?(\w+)", target["expr"]):
                assert var.startswith("__") or var in variables, f"{panel['title']}: undefined ${var}"


def test_alert_rules_file_is_well_formed() -> None:
    doc = yaml.safe_load(ALERTS.read_text())
    assert set(doc) == {"groups"}
    names: set[str] = set()
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"} and group["name"] and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}, rule
            assert rule["alert"] not in names, f"duplicate alert {rule['alert']}"
            names.add(rule["alert"])
            assert re.fullmatch(r"[A-Za-z_]\w*", rule["alert"])
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            assert rule["expr"].count("(") == rule["expr"].count(")")
            if "for" in rule:
                assert re.fullmatch(r"(\d+[smhdwy])+", rule["for"]), rule["for"]
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}
            assert {"summary", "description"} <= set(rule["annotations"])
    # The list: error rate, p95 latency, budget burn, provider error rate, retry ratio, fallback share.
    wanted = {
        "TollgateHighErrorRate",
        "TollgateHighLatencyP95",
        "TollgateBudgetBurn",
        "TollgateProviderErrorRate",
        "TollgateHighRetryRatio",
        "TollgateHighFallbackShare",
    }
    assert wanted <= names


def test_prometheus_example_loads_the_rules() -> None:
    doc = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert doc["rule_files"] == ["alerts.yml"]
    job = doc["scrape_configs"][0]
    assert job["job_name"] == "tollgate" and job["metrics_path"] == "/metrics"
    provisioning = yaml.safe_load(
        (ROOT / "deploy" / "grafana" / "provisioning" / "dashboards" / "tollgate.yml").read_text()
    )
    assert provisioning["providers"][0]["type"] == "file"


def test_every_metric_is_documented() -> None:
    text = DOC.read_text()
    missing = [info.name for info in GatewayMetrics().catalog if f"`{info.name}`" not in text]
    assert not missing, f"not in docs/observability.md: {missing}"
