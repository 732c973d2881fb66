"""The knobs operators expect, each from values.yaml through the schema into the rendered
objects (tests/deploy/values/knobs.yaml sets them all), and the schema refusing what the API
server or the pod would refuse."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import render
from tests.deploy.fixtures import rendered
from tests.deploy.objects import container, kinds, one, pod_spec

KNOBS = yaml.safe_load((render.VALUES / "knobs.yaml").read_text())


@pytest.fixture(scope="module")
def knobs(helm: str) -> list[dict[str, Any]]:
    return rendered(helm, "knobs")


def test_scheduling_knobs_reach_the_pod(knobs: list[dict[str, Any]]) -> None:
    spec = pod_spec(knobs)
    for key in (
        "nodeSelector",
        "tolerations",
        "affinity",
        "topologySpreadConstraints",
        "priorityClassName",
        "imagePullSecrets",
    ):
        assert spec[key] == KNOBS[key], key
    meta = one(knobs, "StatefulSet")["spec"]["template"]["metadata"]
    assert meta["labels"]["team"] == "mail"
    assert meta["labels"]["app.kubernetes.io/name"] == "mailserver"  # the selector's stay
    assert meta["annotations"]["backup.velero.io/backup-volumes"] == "mail-data"
    assert "checksum/env" in meta["annotations"]


def test_defaults_set_no_scheduling_knob(helm: str) -> None:
    spec = pod_spec(rendered(helm, "defaults"))
    assert not {"nodeSelector", "tolerations", "affinity", "priorityClassName"} & set(spec)
    assert "securityContext" not in container(rendered(helm, "defaults"), "mailserver")


def test_service_knobs(knobs: list[dict[str, Any]]) -> None:
    service = one(knobs, "Service", "mailserver-external")
    assert service["metadata"]["annotations"] == KNOBS["service"]["annotations"]
    assert service["metadata"]["labels"]["exposure"] == "public"
    spec = service["spec"]
    assert spec["ipFamilyPolicy"] == "PreferDualStack" and spec["ipFamilies"] == ["IPv4", "IPv6"]
    assert spec["externalTrafficPolicy"] == "Local"
    assert spec["loadBalancerSourceRanges"] == ["198.51.100.0/24", "2001:db8::/32"]


def test_mailserver_container_knobs(knobs: list[dict[str, Any]]) -> None:
    ms = container(knobs, "mailserver")
    assert ms["securityContext"] == {"capabilities": {"add": ["NET_ADMIN"]}}  # fail2ban
    assert ms["env"] == KNOBS["extraEnv"]
    assert KNOBS["extraVolumeMounts"][0] in ms["volumeMounts"]
    assert KNOBS["extraVolumes"][0] in pod_spec(knobs)["volumes"]
    assert {"name": "mail-log", "mountPath": "/var/log/mail"} in ms["volumeMounts"]


def test_persistence_per_volume_and_existing_claims(helm: str, knobs: list[dict[str, Any]]) -> None:
    templates = {
        c["metadata"]["name"]: c for c in one(knobs, "StatefulSet")["spec"]["volumeClaimTemplates"]
    }
    assert set(templates) == {"mail-state", "mail-log"}
    state, log = templates["mail-state"]["spec"], templates["mail-log"]["spec"]
    assert (state["resources"]["requests"]["storage"], state["storageClassName"]) == ("2Gi", "slow")
    assert (log["resources"]["requests"]["storage"], log["storageClassName"]) == ("3Gi", "fast")
    assert templates["mail-log"]["metadata"]["annotations"] == {"backup": "daily"}
    volumes = {v["name"]: v for v in pod_spec(knobs)["volumes"]}
    assert volumes["mail-data"]["persistentVolumeClaim"] == {"claimName": "mail-data-from-helm"}
    assert volumes["mail-config"]["persistentVolumeClaim"] == {"claimName": "mail-config-from-helm"}
    # defaults: the three claim templates the chart always had, sizes unchanged, no log volume
    default = one(rendered(helm, "defaults"), "StatefulSet")["spec"]["volumeClaimTemplates"]
    sizes = {c["metadata"]["name"]: c["spec"]["resources"]["requests"]["storage"] for c in default}
    assert sizes == {"mail-data": "10Gi", "mail-state": "1Gi", "mail-config": "1Gi"}


def test_certificate_with_several_names(knobs: list[dict[str, Any]]) -> None:
    names = one(knobs, "Certificate")["spec"]["dnsNames"]
    assert names == ["mail.example.com", "imap.example.com", "smtp.example.com"]


def test_pdb_and_network_policy(helm: str, knobs: list[dict[str, Any]]) -> None:
    assert not {"PodDisruptionBudget", "NetworkPolicy"} & set(kinds(rendered(helm, "defaults")))
    pdb = one(knobs, "PodDisruptionBudget")["spec"]
    sts = one(knobs, "StatefulSet")
    assert pdb["maxUnavailable"] == 0
    assert pdb["selector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
    policy = one(knobs, "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
    mail, metrics = policy["ingress"]
    open_ports = {p["port"] for p in mail["ports"]}
    container_ports = {p["containerPort"] for p in container(knobs, "mailserver")["ports"]}
    assert open_ports == container_ports  # every mail port and PROXY twin, from anywhere
    assert "from" not in mail
    assert metrics["ports"] == [{"protocol": "TCP", "port": 9425}]
    assert metrics["from"] == [
        {"podSelector": {}},  # this namespace
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
    ]


def test_dms_config_files_are_merged_never_overwritten(
    knobs: list[dict[str, Any]], tmp_path: Path
) -> None:
    files = one(knobs, "ConfigMap", "mailserver-files")["data"]
    patches = files["user-patches.sh"]
    assert "twin smtp 12525" in patches and patches.endswith('echo "operator patch" >&2\n')
    assert "haproxy = yes" in files["dovecot.cf"]
    assert "mail_max_userip_connections = 50" in files["dovecot.cf"]
    assert files["postfix-main.cf"] == "message_size_limit = 52428800\n"
    assert "[DEFAULT]" in files["fail2ban-jail.cf"]
    # nested paths: a flat key, put back in its folder by the volume's items
    items = {i["key"]: i["path"] for i in _volume(knobs, "files")["configMap"]["items"]}
    assert items["rspamd.override.d.actions.conf"] == "rspamd/override.d/actions.conf"
    assert set(items) == set(files)
    # ... and the prepare script copies them there, as kubelet mounts them
    mounted = tmp_path / "files"
    data = mounted / "..2026_01_01"
    for key, path in items.items():
        (data / path).parent.mkdir(parents=True, exist_ok=True)
        (data / path).write_text(files[key])
    (mounted / "..data").symlink_to(data.name)
    for top in {p.split("/")[0] for p in items.values()}:
        (mounted / top).symlink_to(f"..data/{top}")
    config = tmp_path / "config"
    config.mkdir()
    script = container(knobs, "prepare")["command"][2]
    script = script.replace("/tmp/docker-mailserver", str(config))
    script = script.replace("/etc/dms-files", str(mounted))
    script = "\n".join(line for line in script.splitlines() if "chown" not in line)  # not root
    proc = subprocess.run(["/bin/sh", "-ec", script], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    for key, path in items.items():
        assert (config / path).read_text() == files[key]
    assert not list(config.glob("..*"))


def test_pop3_and_no_one_dir(helm: str, knobs: list[dict[str, Any]]) -> None:
    assert "ONE_DIR" not in one(rendered(helm, "defaults"), "ConfigMap", "mailserver-env")["data"]
    names = {p["name"] for p in container(knobs, "mailserver")["ports"]}
    assert {"pop3", "pop3s", "pop3-proxy", "pop3s-proxy"} <= names


def _volume(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(v for v in pod_spec(docs)["volumes"] if v["name"] == name)


# --- the schema refuses what the API server or the pod would refuse ------------------------


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["service.nodePorts.smtp=25"], "service.nodePorts.smtp"),  # outside 30000-32767
        (["service.nodePorts.imap=40000"], "service.nodePorts.imap"),
        (["agent.port=25"], "agent.port"),  # Postfix's port in the shared network namespace
        (["agent.port=12525"], "agent.port"),  # a PROXY twin
        (["agent.port=80"], "agent.port"),  # the agent is not root
        (["resources.limits.memory=lots"], "resources.limits.memory"),
        (["agent.resources.requests.cpu=fast"], "agent.resources.requests.cpu"),
        (["service.loadBalancer.publicIp=not-an-ip"], "service.loadBalancer.publicIp"),
        (["service.loadBalancer.allowedIps={10.0.0.0/33}"], "service.loadBalancer.allowedIps.0"),
        (["ssl.issuer.name=le", "env.SSL_TYPE=letsencrypt"], "env: Must not validate"),
        (["env.SSL_TYPE=lets-encrypt"], "env.SSL_TYPE"),
        (["env.ONE_DIR=1"], "env.ONE_DIR"),
        (["persistence.mailState.size=big"], "persistence.mailState.size"),
        (["persistence.mailData.existingClaim=Not_A_Name"], "persistence.mailData.existingClaim"),
        (["priorityClassName=High Priority"], "priorityClassName"),
        (["service.ipFamilyPolicy=DualStack"], "service.ipFamilyPolicy"),
        (["podLabels.team=not a label value"], "podLabels.team"),
        (["securityContext.capabilities.add={net_admin}"], "securityContext.capabilities.add.0"),
        (["extraVolumeMounts[0].name=x"], "mountPath"),
        (["--set-string=dmsConfig.\\.\\./etc/passwd=x"], "dmsConfig"),
        (["ssl.extraDnsNames={not a name}"], "ssl.extraDnsNames.0"),
        (["podDisruptionBudget.maxUnavailable=-1"], "podDisruptionBudget.maxUnavailable"),
    ],
)
def test_schema_refuses_what_kubernetes_would(helm: str, sets: list[str], message: str) -> None:
    argv = [helm, "template", "x", str(render.CHART)]
    for item in sets:
        argv += [item] if item.startswith("--") else ["--set", item]
    proc = render.run(argv)
    assert proc.returncode != 0, f"{sets} accepted"
    assert message in proc.stderr, proc.stderr


def test_schema_accepts_every_documented_knob_and_ipv6(helm: str) -> None:
    sets = ["service.loadBalancer.publicIp=2001:db8::25", "agent.port=9500"]
    assert render.helm_template(helm, [*render.COMBINATIONS["knobs"], *sets])


# --- persistence changes on an installed release ---------------------------------------------


def _chart_with_installed(tmp_path: Path, installed: dict[str, Any]) -> Path:
    """A copy of the chart whose `lookup` of the StatefulSet returns ``installed`` (Helm's
    lookup needs a cluster; the comparison and the refusal are the chart's own code)."""
    chart = tmp_path / "chart"
    shutil.copytree(render.CHART, chart)
    helpers = chart / "templates" / "_helpers.tpl"
    text = helpers.read_text()
    call = 'lookup "apps/v1" "StatefulSet" .Release.Namespace (include "mailserver.fullname" .)'
    assert call in text
    (chart / "installed.json").write_text(yaml.safe_dump(installed))
    helpers.write_text(text.replace(call, '(.Files.Get "installed.json" | fromYaml)'))
    return chart


def _installed(helm: str, sets: list[str]) -> dict[str, Any]:
    return one(render.load_docs(render.helm_template(helm, sets)), "StatefulSet")


@pytest.mark.parametrize(
    ("change", "refused"),
    [
        ([], False),  # an upgrade with the same persistence goes through
        (["persistence.size=20Gi"], True),
        (["persistence.mailLog.enabled=true"], True),
        (["persistence.storageClass=fast"], True),
        (["persistence.annotations.backup=daily"], True),
        (["persistence.mailData.existingClaim=old-mail"], True),
        (["agent.logLevel=debug"], False),  # anything else is no concern of this check
    ],
)
def test_persistence_change_on_an_installed_release_is_refused_before_anything_is_applied(
    helm: str, tmp_path: Path, change: list[str], refused: bool
) -> None:
    chart = _chart_with_installed(tmp_path, _installed(helm, []))
    argv = [helm, "template", render.RELEASE, str(chart)]
    for item in change:
        argv += ["--set", item]
    proc = render.run(argv)
    assert (proc.returncode != 0) is refused, proc.stderr
    if refused:
        assert "claim templates cannot change in place" in proc.stderr
        assert "kubectl delete statefulset mailserver --cascade=orphan" in proc.stderr
        assert "docs/migrate-pvcs.md" in proc.stderr


def test_upgrade_from_chart_0_1_0_defaults_keeps_its_claim_templates(
    helm: str, tmp_path: Path
) -> None:
    """The claim templates 0.1.0 installed (same names, order, sizes): an upgrade with default
    values is not refused, and its StatefulSet update would be accepted."""
    installed = yaml.safe_load((render.VALUES / "installed-0.1.0.yaml").read_text())
    chart = _chart_with_installed(tmp_path, installed)
    proc = render.run([helm, "template", render.RELEASE, str(chart)])
    assert proc.returncode == 0, proc.stderr
    now = one(render.load_docs(proc.stdout), "StatefulSet")["spec"]["volumeClaimTemplates"]
    assert now == installed["spec"]["volumeClaimTemplates"]
    reordered = yaml.safe_load(yaml.safe_dump(installed))
    reordered["spec"]["volumeClaimTemplates"].reverse()
    chart = _chart_with_installed(tmp_path / "reordered", reordered)
    assert render.run([helm, "template", render.RELEASE, str(chart)]).returncode != 0
