"""The alert rules (manifests/prometheusrule.yaml; the chart ships the same): promtool checks
them and runs tests/deploy/alerts.test.yaml, where every alert fires once and stays quiet once."""

from __future__ import annotations

import importlib
import pkgutil
import re
import shutil
from pathlib import Path
from typing import Any, get_args

import yaml

from agent.dns.model import Status as DnsStatus
from agent.reconcile.apply import OpStatus
from tests.deploy import render

TESTS = Path(__file__).parent / "deploy" / "alerts.test.yaml"


def _rules() -> dict[str, Any]:
    doc = yaml.safe_load((render.MANIFESTS / "prometheusrule.yaml").read_text())
    assert doc["kind"] == "PrometheusRule" and doc["apiVersion"] == "monitoring.coreos.com/v1"
    spec: dict[str, Any] = doc["spec"]
    return spec


def _alerts() -> list[dict[str, Any]]:
    return [rule for group in _rules()["groups"] for rule in group["rules"] if "alert" in rule]


def _workdir(tmp_path: Path) -> Path:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(_rules()))
    shutil.copy(TESTS, tmp_path / TESTS.name)
    return tmp_path


def test_promtool_accepts_the_rules(promtool: str, tmp_path: Path) -> None:
    work = _workdir(tmp_path)
    proc = render.run([promtool, "check", "rules", str(work / "rules.yaml")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in proc.stdout


def test_promtool_unit_tests_pass(promtool: str, tmp_path: Path) -> None:
    work = _workdir(tmp_path)
    proc = render.run([promtool, "test", "rules", TESTS.name], cwd=work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_unit_tests_can_fail(promtool: str, tmp_path: Path) -> None:
    """A rule that never fires must make the suite fail: the tests really look at the rules."""
    work = _workdir(tmp_path)
    rules = _rules()
    rules["groups"][0]["rules"][-1]["expr"] = "vector(0) > 1"
    (work / "rules.yaml").write_text(yaml.safe_dump(rules))
    proc = render.run([promtool, "test", "rules", TESTS.name], cwd=work)
    assert proc.returncode != 0
    assert "DmsAgentMailserverUnhealthy" in proc.stdout + proc.stderr


def test_every_alert_has_a_runbook_severity_and_a_firing_test() -> None:
    tests = yaml.safe_load(TESTS.read_text())["tests"]
    firing = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    quiet = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if not case.get("exp_alerts")
    }
    names = [a["alert"] for a in _alerts()]
    assert len(names) == len(set(names))
    for alert in _alerts():
        assert alert["labels"]["severity"] in {"info", "warning", "critical"}
        assert alert["annotations"]["runbook"].strip()
        assert alert["annotations"]["summary"].strip()
        assert alert["alert"] in firing, f"{alert['alert']} never fires in {TESTS.name}"
        assert alert["alert"] in quiet, f"{alert['alert']} has no quiet case in {TESTS.name}"


def test_alerts_cover_what_the_issue_asks() -> None:
    exprs = " ".join(a["expr"] for a in _alerts())
    for metric in (
        "dms_agent_sources_watch_restarts_total",
        "dms_agent_reconcile_last_success_timestamp_seconds",
        "dms_agent_reconcile_ops_total",
        "dms_agent_reconcile_refused_deletions",
        "dms_agent_reconcile_drift_accounts",
        "dms_agent_dkim_published",
        "dms_agent_dns_check_state",
        "dms_agent_check_certificate_not_after_timestamp_seconds",
        "dms_agent_lb_consecutive_failures",
        "dms_agent_mailserver_healthy",
        "dms_agent_mail_queue_messages",
        "dms_agent_mail_queue_oldest_message_age_seconds",
        "dms_agent_mail_deliveries_total",
        "dms_agent_mail_auth_failures_total",
        "dms_agent_mail_log_last_read_timestamp_seconds",
    ):
        assert metric in exprs, metric


def _live_metrics() -> dict[str, set[str]]:
    """Every series name the agent can export, with its label names: every module of the
    agent imported, so each capability's metrics are registered on the shared REGISTRY."""
    import agent

    for module in pkgutil.walk_packages(agent.__path__, "agent."):
        if not module.name.endswith("__main__"):  # that one runs the CLI
            importlib.import_module(module.name)
    from agent.metrics import REGISTRY

    names: dict[str, set[str]] = {}
    for collector in list(REGISTRY._collector_to_names):
        for family in collector.describe() if hasattr(collector, "describe") else []:
            # a metric object names its labels; a custom collector's families name their own
            labels = set(
                getattr(collector, "_labelnames", ()) or getattr(family, "_labelnames", ())
            )
            if family.type == "stateset":  # an Enum: one series per state, label = its name
                labels.add(family.name)
            suffixes = {
                "counter": ("_total",),
                "histogram": ("_bucket", "_sum", "_count"),
                "summary": ("_sum", "_count"),
            }.get(family.type, ("",))
            for suffix in suffixes:
                names[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return names


# Label values the code really emits, for the labels the rules match on.
LABEL_VALUES = {
    ("dms_agent_reconcile_ops_total", "result"): set(get_args(OpStatus)),
    # prometheus_client's Enum names the state label after the metric itself
    ("dms_agent_dns_check_state", "dms_agent_dns_check_state"): {s.value for s in DnsStatus},
    # KubeSource._one_round's reasons (agent/sources/kube.py)
    ("dms_agent_sources_watch_restarts_total", "reason"): {
        "end", "expired", "stalled", "unauthorized", "error"
    },
}  # fmt: skip

SELECTOR = re.compile(r"(dms_agent_[a-z0-9_]+)(\{[^}]*\})?")
MATCHER = re.compile(r'([a-z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def test_every_alert_uses_metrics_and_label_values_the_agent_defines() -> None:
    live = _live_metrics()
    assert "dms_agent_mailserver_healthy" in live  # the import really registered the metrics
    reasons = (Path(__file__).parents[1] / "agent" / "sources" / "kube.py").read_text()
    for value in LABEL_VALUES[("dms_agent_sources_watch_restarts_total", "reason")]:
        assert f'"{value}"' in reasons, value
    used = 0
    for alert in _alerts():
        for name, selector in SELECTOR.findall(alert["expr"]):
            used += 1
            assert name in live, f"{alert['alert']}: {name} is not a metric the agent defines"
            for label, op, value in MATCHER.findall(selector or ""):
                if label in {"namespace", "pod"}:
                    continue  # added by Prometheus's scrape
                assert label in live[name], f"{alert['alert']}: {name} has no label {label}"
                known = LABEL_VALUES.get((name, label))
                if known is None:
                    continue
                values = set(value.split("|")) if op in ("=~", "!~") else {value}
                assert values <= known, f"{alert['alert']}: {label}={value} never emitted"
        for label in re.findall(r"\$labels\.([a-z_]+)", str(alert["annotations"])):
            metric_labels = set().union(*(live[n] for n, _ in SELECTOR.findall(alert["expr"])))
            assert label in metric_labels | {"namespace", "pod"}, (alert["alert"], label)
    assert used >= len(_alerts())


def test_chart_ships_the_same_rules() -> None:
    chart = yaml.safe_load((render.CHART / "files" / "alerts.yaml").read_text())
    assert chart == _rules()
