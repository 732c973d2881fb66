"""The lite Helm chart rendered by real Helm: lint, schema, every option and combination,
each render valid against the schemas of Kubernetes 1.29 to 1.34 (kubernetes-validate, strict)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.errors import InvalidDocument
from tests.deploy import render
from tests.deploy.fixtures import rendered
from tests.deploy.objects import (
    agent_settings,
    container,
    kinds,
    load_pod_settings,
    one,
    pod_spec,
)

kubernetes_validate = render.require_module("kubernetes_validate", "pip install '.[test]'")

# Kinds from CRDs: kubernetes-validate has no schema for them (it only warns).
CRD_KINDS = {"Certificate", "ServiceMonitor", "PrometheusRule"}


def test_helm_lint_strict_defaults_and_everything_on(helm: str) -> None:
    for sets in ([], render.COMBINATIONS["full"], render.COMBINATIONS["knobs"]):
        argv = [helm, "lint", "--strict", str(render.CHART)]
        for item in sets:
            argv += [item] if item.startswith("--") else ["--set", item]
        proc = render.run(argv)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "0 chart(s) failed" in proc.stdout


# The Kubernetes versions an operator's CI would check: the chart's kubeVersion floor (1.29,
# native sidecars) to the newest release it is tested with.
KUBE_VERSIONS = ["1.29.0", "1.30.0", "1.31.0", "1.32.0", "1.33.0", "1.34.0"]


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_render_is_valid_kubernetes_strictly(helm: str, kube_version: str) -> None:
    """Every value set ("knobs" sets every operator knob), strict: no unknown field."""
    checked: set[str] = set()
    for combination in sorted(render.COMBINATIONS):
        for doc in rendered(helm, combination):
            if doc["kind"] in CRD_KINDS:
                assert doc["apiVersion"] in ("cert-manager.io/v1", "monitoring.coreos.com/v1")
                continue
            key = json.dumps(doc, sort_keys=True)
            if key in checked:  # the same object from another value set
                continue
            try:
                kubernetes_validate.validate(doc, kube_version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                name = f"{doc['kind']}/{doc['metadata']['name']}"
                pytest.fail(f"{kube_version} {combination}: {name}: {exc.message}")
            checked.add(key)
    assert len(checked) > 3 * len(render.COMBINATIONS)


def test_strict_validation_is_not_blind() -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": 25, "targetPrt": 25}]},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, "1.29.0", strict=True)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["typo=1"], "Additional property typo is not allowed"),
        (["service.typ=NodePort"], "Additional property typ is not allowed"),
        (["service.type=ExternalName"], "service.type"),
        (["haproxy.trusted_networks=everyone"], "trusted_networks"),
        (["poor_mans_k8s_lb.enabled=true"], "webhook_url"),
        (["domains={Not A Domain}"], "domains.0"),
        (["env.BAD-NAME=1"], "env"),
    ],
)
def test_values_schema_refuses_typos_and_bad_values(
    helm: str, sets: list[str], message: str
) -> None:
    argv = [helm, "template", "x", str(render.CHART)]
    for item in sets:
        argv += ["--set", item]
    proc = render.run(argv)
    assert proc.returncode != 0
    assert message in proc.stderr


def test_env_passthrough_turns_booleans_into_1_and_0(helm: str, tmp_path: Path) -> None:
    sets = ["env.ENABLE_FOO=true", "env.ENABLE_BAR=false", "env.POSTFIX_MESSAGE_SIZE_LIMIT=5"]
    text = render.helm_template(helm, [*sets, "--set-string=env.SRS_X=TRUE"])
    docs = render.load_docs(text)
    env = one(docs, "ConfigMap", "mailserver-env")["data"]
    assert env["ENABLE_FOO"] == "1"
    assert env["ENABLE_BAR"] == "0"
    assert env["SRS_X"] == "1"  # the string "TRUE" too: DMS only understands 1/0
    assert env["POSTFIX_MESSAGE_SIZE_LIMIT"] == "5"
    assert env["ENABLE_CLAMAV"] == "1"  # a default
    assert all(isinstance(v, str) for v in env.values())
    assert "true" not in {v.lower() for v in env.values()}
    # The agent reads this same ConfigMap (no copy of its own in its settings).
    assert "environment" not in agent_settings(docs)["dms"]
    assert load_pod_settings(docs, tmp_path).dms.environment == env


def test_defaults_have_no_proxy_ports_and_target_the_plain_ones(helm: str) -> None:
    docs = rendered(helm, "defaults")
    ports = {p["containerPort"] for p in container(docs, "mailserver")["ports"]}
    assert ports == {25, 143, 465, 587, 993}  # no POP3: DMS serves it only with ENABLE_POP3
    external = one(docs, "Service", "mailserver-external")["spec"]
    assert external["type"] == "NodePort"
    assert {p["name"]: p["nodePort"] for p in external["ports"]} == {
        "smtp": 30025,
        "imap": 30143,
        "smtps": 30465,
        "submission": 30587,
        "imaps": 30993,
    }
    assert all(p["targetPort"] == p["port"] for p in external["ports"])
    files = one(docs, "ConfigMap", "mailserver-files")["data"]
    assert (
        "haproxy_trusted_networks" not in files["dovecot.cf"]
        and "postconf" not in files["user-patches.sh"]
    )


def test_pop3_ports_only_with_enable_pop3(helm: str) -> None:
    docs = render.load_docs(
        render.helm_template(helm, ["env.ENABLE_POP3=true", "haproxy.enabled=true"])
    )
    ports = {p["name"]: p["containerPort"] for p in container(docs, "mailserver")["ports"]}
    assert (ports["pop3"], ports["pop3s"], ports["pop3-proxy"], ports["pop3s-proxy"]) == (
        110,
        995,
        10110,
        10995,
    )
    external = {p["name"]: p for p in one(docs, "Service", "mailserver-external")["spec"]["ports"]}
    assert external["pop3"]["nodePort"] == 30110 and external["pop3s"]["targetPort"] == 10995
    assert "pop3-login" in one(docs, "ConfigMap", "mailserver-files")["data"]["dovecot.cf"]
    plain = rendered(helm, "haproxy")
    assert "pop3-login" not in one(plain, "ConfigMap", "mailserver-files")["data"]["dovecot.cf"]
    for service in ("mailserver", "mailserver-external"):
        names = {p["name"] for p in one(plain, "Service", service)["spec"]["ports"]}
        assert not names & {"pop3", "pop3s"}


def test_haproxy_adds_proxy_twins_for_the_external_service_only(helm: str) -> None:
    docs = rendered(helm, "haproxy")
    ports = {p["name"]: p["containerPort"] for p in container(docs, "mailserver")["ports"]}
    # SMTP's twin is 12525: 10025 is Amavis' reinjection port in DMS's master.cf
    assert ports["smtp-proxy"] == 12525 and ports["subm-proxy"] == 10587
    assert ports["imaps-proxy"] == 10993 and ports["imap-proxy"] == 10143
    twins = {p["name"]: p["containerPort"] for p in container(docs, "mailserver")["ports"]}
    external = one(docs, "Service", "mailserver-external")["spec"]["ports"]
    for port in external:
        proxy_name = "subm-proxy" if port["name"] == "submission" else f"{port['name']}-proxy"
        assert port["targetPort"] == twins[proxy_name]
    internal = one(docs, "Service", "mailserver")["spec"]
    assert internal["clusterIP"] == "None"
    assert all(p["targetPort"] == p["port"] for p in internal["ports"])  # webmail keeps working
    dovecot = one(docs, "ConfigMap", "mailserver-files")["data"]["dovecot.cf"]
    assert "haproxy_trusted_networks = 10.0.0.0/8 192.168.0.0/16 172.16.0.0/12" in dovecot


def test_demo_mode_adds_a_demo_account_with_its_password(helm: str) -> None:
    docs = rendered(helm, "demo")
    state = yaml.safe_load(one(docs, "ConfigMap", "mailserver-state")["data"]["mailserver.yaml"])
    assert "demo@example.com" in state["accounts"]
    assert "admin@example.com" in state["accounts"]
    passwords = yaml.safe_load(
        one(docs, "Secret", "mailserver-secrets")["stringData"]["passwords.yaml"]
    )
    assert passwords["demo@example.com"] == {"password": "demo-password-change-me"}
    assert "demo@example.com" not in str(rendered(helm, "defaults"))


def test_webhook_wires_url_secret_and_node_ip(helm: str) -> None:
    docs = rendered(helm, "webhook")
    lb = agent_settings(docs)["lb"]
    assert lb["enabled"] is True
    (target,) = lb["targets"]
    assert target["url"] == "https://lb.example.net/hooks/mail"
    secret = one(docs, "Secret", "mailserver-agent-secrets")
    assert secret["stringData"]["webhook-secret"] == "EXAMPLE-hook-secret"
    items = {i["key"] for i in _volume(docs, "agent-secrets")["secret"]["items"]}
    assert items == {"ledger.key", "webhook-secret"}
    assert target["secretFile"] == "/etc/dms-agent/secrets/webhook-secret"
    assert lb["address"] == {"source": "env", "env": "NODE_IP"}
    smtp = next(p for p in lb["ports"] if p["name"] == "smtp")
    assert (smtp["frontend"], smtp["backend"]) == (25, 30025)
    assert (
        "EXAMPLE-hook-secret"
        not in one(docs, "ConfigMap", "mailserver-agent")["data"]["settings.yaml"]
    )
    env = {
        e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container(docs, "agent")["env"]
    }
    assert env["NODE_IP"] == "status.hostIP"


def test_webhook_address_from_the_node_object_adds_its_one_cluster_wide_grant(
    helm: str,
) -> None:
    docs = rendered(helm, "lbnode")
    lb = agent_settings(docs)["lb"]
    assert lb["address"] == {"source": "node", "nodeAddressType": "ExternalIP"}
    env = {
        e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container(docs, "agent")["env"]
    }
    assert env["NODE_NAME"] == "spec.nodeName"  # the agent finds its Node by this name
    (role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]
    (binding,) = [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    assert (
        binding["roleRef"]["name"] == role["metadata"]["name"] == "mailserver-default-agent-nodes"
    )
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "mailserver", "namespace": "default"}
    ]
    for combination in ("defaults", "webhook"):  # the downward API needs no grant
        assert not {"ClusterRole", "ClusterRoleBinding"} & set(kinds(rendered(helm, combination)))
        assert "NODE_NAME" not in {
            e["name"] for e in container(rendered(helm, combination), "agent")["env"]
        }


def test_webhook_fixed_address(helm: str) -> None:
    sets = [*render.COMBINATIONS["webhook"], "poor_mans_k8s_lb.address=fixed"]
    proc = render.run([helm, "template", "x", str(render.CHART), *_set_args(sets)])
    assert proc.returncode != 0 and "needs poor_mans_k8s_lb.fixedAddress" in proc.stderr
    docs = render.load_docs(
        render.helm_template(helm, [*sets, "poor_mans_k8s_lb.fixedAddress=192.0.2.10"])
    )
    assert agent_settings(docs)["lb"]["address"] == {"source": "fixed", "value": "192.0.2.10"}
    bad = render.run(
        [helm, "template", "x", str(render.CHART),
         *_set_args([*sets, "poor_mans_k8s_lb.fixedAddress=lb.example.net"])]
    )  # fmt: skip
    assert bad.returncode != 0 and "fixedAddress" in bad.stderr


def _set_args(sets: list[str]) -> list[str]:
    return [a for item in sets for a in ("--set", item)]


def test_cert_manager_certificate_mounted_as_a_folder(helm: str) -> None:
    docs = rendered(helm, "certmanager")
    cert = one(docs, "Certificate")["spec"]
    assert cert["dnsNames"] == ["mx.example.com"]
    assert cert["issuerRef"] == {"name": "letsencrypt", "kind": "ClusterIssuer"}
    mounts = {m["name"]: m for m in container(docs, "mailserver")["volumeMounts"]}
    assert mounts["tls"]["mountPath"] == "/tmp/dms/custom-certs" and "subPath" not in mounts["tls"]
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == cert["secretName"]
    env = one(docs, "ConfigMap", "mailserver-env")["data"]
    assert env["SSL_TYPE"] == "manual"
    assert env["SSL_CERT_PATH"] == "/tmp/dms/custom-certs/tls.crt"
    assert "Certificate" not in kinds(rendered(helm, "defaults"))
    # Without ssl.dnsname the certificate is for the hostname.
    full = render.load_docs(render.helm_template(helm, ["ssl.issuer.name=le"]))
    assert one(full, "Certificate")["spec"]["dnsNames"] == ["mail.example.com"]


def test_load_balancer_and_cluster_ip(helm: str) -> None:
    spec = one(rendered(helm, "loadbalancer"), "Service", "mailserver-external")["spec"]
    assert spec["type"] == "LoadBalancer"
    assert spec["loadBalancerIP"] == "192.0.2.10"
    assert spec["loadBalancerSourceRanges"] == ["198.51.100.0/24", "203.0.113.7/32"]
    assert spec["externalTrafficPolicy"] == "Local"
    spec = one(rendered(helm, "clusterip"), "Service", "mailserver-external")["spec"]
    assert spec["type"] == "ClusterIP"
    assert "externalTrafficPolicy" not in spec
    assert all("nodePort" not in p for p in spec["ports"])


def test_metrics_toggles_service_monitor_and_rules(helm: str) -> None:
    assert not CRD_KINDS & set(kinds(rendered(helm, "defaults")))
    docs = rendered(helm, "metrics")
    monitor = one(docs, "ServiceMonitor")["spec"]
    service = one(docs, "Service", "mailserver-metrics")
    labels = service["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in monitor["selector"]["matchLabels"].items())
    # Only the metrics Service matches, not the mail Services.
    for other in ("mailserver", "mailserver-external"):
        other_labels = one(docs, "Service", other)["metadata"]["labels"]
        assert not all(
            other_labels.get(k) == v for k, v in monitor["selector"]["matchLabels"].items()
        )
    assert monitor["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    rules = one(docs, "PrometheusRule")["spec"]
    plain = yaml.safe_load((render.MANIFESTS / "prometheusrule.yaml").read_text())["spec"]
    assert rules == plain


def test_existing_secret_is_used_everywhere_and_none_is_rendered(helm: str) -> None:
    docs = rendered(helm, "existingsecret")
    assert "Secret" not in kinds(docs)
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    assert volumes["agent-secrets"]["secret"]["secretName"] == "my-agent-keys"
    role = one(docs, "Role")
    secret_rule = next(r for r in role["rules"] if r["resources"] == ["secrets"])
    assert secret_rule["resourceNames"] == ["my-mail-secrets"]  # the keys are never read by API
    sources = agent_settings(docs)["sources"]
    assert {"kind": "secret", "name": "my-mail-secrets"} in sources


def test_release_name_renames_everything_rbac_included(helm: str) -> None:
    proc = render.run([helm, "template", "mx", str(render.CHART)])
    assert proc.returncode == 0, proc.stderr
    docs = render.load_docs(proc.stdout)
    rules = {r["resources"][0]: r for r in one(docs, "Role")["rules"]}
    assert rules["pods/exec"]["resourceNames"] == ["mx-0"]
    assert rules["configmaps"]["resourceNames"] == ["mx-state"]
    assert one(docs, "StatefulSet")["metadata"]["name"] == "mx"


def _volume(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(v for v in pod_spec(docs)["volumes"] if v["name"] == name)


@pytest.mark.parametrize("combination", sorted(render.COMBINATIONS))
def test_agent_settings_of_every_render_load(helm: str, combination: str, tmp_path: Path) -> None:
    """Every rendered settings file is valid for the agent as built: no unknown field, no
    guessed name (the loader refuses both), no path the pod does not provide."""
    docs = rendered(helm, combination)
    try:
        settings = load_pod_settings(docs, tmp_path)
    except InvalidDocument as exc:
        pytest.fail(f"{combination}: " + "; ".join(str(e) for e in exc.errors))
    agent = container(docs, "agent")
    mounts = [m["mountPath"] for m in agent["volumeMounts"]]
    # DMS's environment: the folder the agent's dms-env volume (the env ConfigMap) mounts
    env_mount = next(m for m in agent["volumeMounts"] if m["name"] == "dms-env")
    assert agent_settings(docs)["dms"]["environmentFrom"] == env_mount["mountPath"]
    files = [
        settings.reconcile.ledger_path,
        settings.reconcile.ledger_key_file,
        settings.dkim.state_file,
        settings.checks.verdict_file,
        settings.lb.state_file,
        *(t.secret_file for t in settings.lb.targets),
    ]
    for file in files:
        if file is not None:
            assert any(str(file).startswith(m + "/") for m in mounts), f"{file} not mounted"
    items = {i["path"] for i in _volume(docs, "agent-secrets")["secret"]["items"]}
    for file in (settings.reconcile.ledger_key_file, *(t.secret_file for t in settings.lb.targets)):
        assert file is not None and file.name in items
    assert settings.dms.executor.container == "mailserver"


def test_liveness_commands_become_an_exec_check_and_dms_defaults_follow_env(
    helm: str, tmp_path: Path
) -> None:
    from agent.checks.defaults import effective_checks

    full = agent_settings(rendered(helm, "full"))
    (own,) = full["checks"]["checks"]
    assert own == {"name": "commands", "kind": "exec", "commands": ["supervisorctl status postfix"]}
    for combination, expected in (
        ("defaults", ["smtp", "submission", "imap", "clamd", "rspamd"]),
        ("minimal", ["smtp", "submission", "imap"]),
        ("full", ["smtp", "submission", "imap", "clamd", "rspamd", "commands"]),
    ):
        docs = rendered(helm, combination)
        settings = load_pod_settings(docs, tmp_path / combination)
        names = [c.name for c in effective_checks(settings.checks, settings.dms.environment)]
        assert names == expected, combination
        # clamd's socket folder is shared exactly when the clamd check exists
        for name in ("agent", "mailserver"):
            paths = {m["mountPath"] for m in container(docs, name)["volumeMounts"]}
            assert ("/var/run/clamav" in paths) is ("clamd" in names), (combination, name)
    assert agent_settings(rendered(helm, "minimal"))["checks"]["enabled"] is False


def test_mailserver_liveness_probe_is_the_agents_own(helm: str) -> None:
    """The probe is exactly `dms-agent probe-script --exec` for the verdict file the agent is
    told to write, and the chart's copy of the script is the agent's."""
    from agent.checks.probe import PROBE_SCRIPT, exec_command

    assert render.PROBE_FILE.read_text() == PROBE_SCRIPT, (
        "python -m tests.deploy.render --write-manifests"
    )
    for combination in ("defaults", "full"):
        docs = rendered(helm, combination)
        settings = agent_settings(docs)
        verdict = settings["checks"]["verdictFile"]
        probe = container(docs, "mailserver")["livenessProbe"]["exec"]["command"]
        assert probe == exec_command(Path(verdict), 60)
        cli = render.run(
            [sys.executable, "-m", "agent", "probe-script", "--exec", "--file", verdict]
        )
        assert cli.returncode == 0, cli.stderr
        assert json.loads(cli.stdout) == probe
        folder = str(Path(verdict).parent)
        for name in ("agent", "mailserver"):
            assert folder in {m["mountPath"] for m in container(docs, name)["volumeMounts"]}


def test_dns_values_reach_the_settings(helm: str) -> None:
    dns = agent_settings(rendered(helm, "dns"))["dns"]
    assert dns == {
        "enabled": True,
        "mxHost": "mail.example.com",
        "ipv4": ["203.0.113.25"],
        "ipv6": ["2001:db8::25"],
        "egress": ["203.0.113.26"],
        "nameservers": ["10.0.0.10:53"],
    }
    assert agent_settings(rendered(helm, "full"))["dns"]["mxHost"] == "mx.example.com"
    assert agent_settings(rendered(helm, "defaults"))["dns"] == {"enabled": False}
