"""manifests/ (the kustomize base): builds offline, is valid Kubernetes 1.30, equals the chart's
default render after the documented normalisation, and wires the agent correctly: its settings
load, RBAC is least privilege, health is fail-open, no subPath anywhere."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.dms.observe import AGENT_LOCK
from agent.reconcile.apply import ApplyLock
from tests.deploy import render
from tests.deploy.fixtures import rendered
from tests.deploy.objects import (
    agent_settings,
    all_volume_mounts,
    container,
    load_pod_settings,
    one,
    pod_spec,
)
from tests.rig.proc import require_binary

kubernetes_validate = render.require_module("kubernetes_validate", "pip install '.[test]'")

EXPECTED_KINDS = {
    ("ServiceAccount", "mailserver"),
    ("Role", "mailserver-agent"),
    ("RoleBinding", "mailserver-agent"),
    ("ConfigMap", "mailserver-env"),
    ("ConfigMap", "mailserver-files"),
    ("ConfigMap", "mailserver-state"),
    ("ConfigMap", "mailserver-agent"),
    ("Secret", "mailserver-secrets"),
    ("Secret", "mailserver-agent-secrets"),
    ("Service", "mailserver"),
    ("Service", "mailserver-external"),
    ("Service", "mailserver-metrics"),
    ("StatefulSet", "mailserver"),
}


def test_kustomize_builds_offline_with_every_object(kustomized: list[dict[str, Any]]) -> None:
    assert {(d["kind"], d["metadata"]["name"]) for d in kustomized} == EXPECTED_KINDS


def test_every_manifest_validates_strictly_against_1_30(kubectl: str, tmp_path: Path) -> None:
    """The built kustomization (generated ConfigMaps included) and the CRD-free files apart."""
    built = tmp_path / "built.yaml"
    built.write_text(render.kustomize_build(kubectl, render.MANIFESTS))
    cli = render.require_tool("kubernetes-validate", "pip install '.[test]'")
    proc = render.run([cli, "--strict", "-k", render.KUBE_VERSION, str(built)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("passed for resource") == len(EXPECTED_KINDS)
    # Only the PrometheusRule (a CRD, outside the kustomization) lacks a schema.
    rule = render.run(
        [cli, "--strict", "-k", render.KUBE_VERSION, str(render.MANIFESTS / "prometheusrule.yaml")]
    )
    assert "passed for resource" not in rule.stdout


def test_chart_defaults_equal_manifests_after_normalisation(
    helm: str, kustomized: list[dict[str, Any]]
) -> None:
    chart = render.by_kind_name(rendered(helm, "defaults"))
    plain = render.by_kind_name(kustomized)
    assert chart.keys() == plain.keys()
    for key, obj in chart.items():
        assert obj == plain[key], f"{key} differs: python -m tests.deploy.render --write-manifests"


def test_normalisation_drops_only_what_helm_adds(helm: str) -> None:
    raw = one(rendered(helm, "defaults"), "StatefulSet")
    norm = render.normalise(raw)
    assert "helm.sh/chart" in raw["metadata"]["labels"]
    assert set(norm["metadata"]["labels"]) == {
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/part-of",
    }
    assert "annotations" not in norm["spec"]["template"]["metadata"]
    assert norm["spec"]["template"]["spec"] == raw["spec"]["template"]["spec"]


def test_agent_settings_load_with_the_agents_own_loader(
    kustomized: list[dict[str, Any]], tmp_path: Path
) -> None:
    settings = load_pod_settings(kustomized, tmp_path)
    assert settings.logging.format == "json"
    assert settings.dms.executor.kind == "kube"
    assert settings.dms.executor.container == "mailserver"
    # The executor names the mailserver container that exists in the pod.
    assert container(kustomized, settings.dms.executor.container)["image"].startswith(
        "docker.io/mailserver/docker-mailserver:"
    )
    # The agent serves on the port the probe, the container and the metrics Service use.
    agent = container(kustomized, "agent")
    assert agent["ports"][0]["containerPort"] == settings.server.port
    metrics = one(kustomized, "Service", "mailserver-metrics")["spec"]["ports"][0]
    assert metrics["port"] == settings.server.port
    # A number: before Kubernetes 1.32 a named port of a native sidecar gave no endpoints.
    assert metrics["targetPort"] == settings.server.port
    assert settings.server.host == "0.0.0.0"  # kubelet probes the pod IP
    # The settings file is where the container's args say, in the mounted ConfigMap.
    mounts = {m["name"]: m["mountPath"] for m in agent["volumeMounts"]}
    assert agent["args"] == ["--config", f"{mounts['agent-settings']}/settings.yaml"]
    # The ledger key comes from the Secret's mounted item; the ledger lives in the agent's own
    # folder of the config volume (prepared for uid 10001 by the prepare init container).
    assert str(settings.reconcile.ledger_key_file).startswith(mounts["agent-secrets"] + "/")
    items = {i["path"] for i in _volume(kustomized, "agent-secrets")["secret"]["items"]}
    assert settings.reconcile.ledger_key_file is not None
    assert settings.reconcile.ledger_key_file.name in items
    assert str(settings.reconcile.ledger_path).startswith(mounts["mail-config"] + "/.dms-agent/")
    assert "/tmp/docker-mailserver/.dms-agent" in container(kustomized, "prepare")["command"][2]
    # The agent reads DMS's environment from the very ConfigMap DMS's envFrom names.
    env = one(kustomized, "ConfigMap", "mailserver-env")["data"]
    assert settings.dms.environment == env
    (env_from,) = container(kustomized, "mailserver")["envFrom"]
    assert env_from["configMapRef"]["name"] == _volume(kustomized, "dms-env")["configMap"]["name"]


def test_agent_sources_are_exactly_what_rbac_allows(kustomized: list[dict[str, Any]]) -> None:
    settings = agent_settings(kustomized)
    rules = {r["resources"][0]: r for r in one(kustomized, "Role")["rules"]}
    for source in settings["sources"]:
        kind = {"configmap": "ConfigMap", "secret": "Secret"}[source["kind"]]
        one(kustomized, kind, source["name"])  # the object exists
        assert source["name"] in rules[f"{source['kind']}s"]["resourceNames"]
    state = one(kustomized, "ConfigMap", "mailserver-state")["data"]["mailserver.yaml"]
    assert yaml.safe_load(state)["apiVersion"] == "dms-agent/v1"


@pytest.mark.parametrize("combination", sorted(render.COMBINATIONS))
def test_rbac_is_least_privilege(helm: str, combination: str) -> None:
    docs = rendered(helm, combination)
    kinds = {d["kind"] for d in docs}
    assert "Namespace" not in kinds
    # the one cluster-wide grant: reading Nodes, only when the LB address comes from one
    cluster_rules = [r for d in docs if d["kind"] == "ClusterRole" for r in d["rules"]]
    if combination == "lbnode":
        assert cluster_rules == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]
    else:
        assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    role = one(docs, "Role")
    pod = one(docs, "StatefulSet")["metadata"]["name"] + "-0"
    named = {"configmaps", "secrets", "pods", "pods/exec"}
    for rule in role["rules"]:
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(field, []), rule
        assert not set(rule["verbs"]) & {"delete", "deletecollection", "update", "escalate", "bind"}
        if set(rule["resources"]) & named:
            assert rule.get("resourceNames"), f"unnamed rule {rule}"
    by_resource = {res: r for r in role["rules"] for res in r["resources"]}
    assert by_resource["pods/exec"]["resourceNames"] == [pod]
    assert sorted(by_resource["pods/exec"]["verbs"]) == ["create", "get"]
    assert by_resource["pods"]["verbs"] == ["get"]
    assert sorted(by_resource["configmaps"]["verbs"]) == ["get", "list", "watch"]
    assert sorted(by_resource["secrets"]["verbs"]) == ["get", "list", "watch"]
    assert sorted(by_resource["events"]["verbs"]) == ["create", "patch"]
    assert set(by_resource) == named | {"events"}
    binding = one(docs, "RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    spec = pod_spec(docs)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": spec["serviceAccountName"]}]
    # The token reaches the agent only.
    assert spec["automountServiceAccountToken"] is False
    assert one(docs, "ServiceAccount")["automountServiceAccountToken"] is False
    token_users = [
        c["name"]
        for c in [*spec["initContainers"], *spec["containers"]]
        if any(m["name"] == "agent-token" for m in c.get("volumeMounts", []))
    ]
    assert token_users == ["agent"]


@pytest.mark.parametrize("combination", sorted(render.COMBINATIONS))
def test_folders_are_volumes_never_subpath(helm: str, combination: str) -> None:
    docs = rendered(helm, combination)
    mounts = all_volume_mounts(docs)
    assert mounts and not [m for m in mounts if "subPath" in m or "subPathExpr" in m]
    ms = {m["mountPath"]: m["name"] for m in container(docs, "mailserver")["volumeMounts"]}
    assert ms["/var/mail"] == "mail-data"
    assert ms["/var/mail-state"] == "mail-state"
    assert ms["/tmp/docker-mailserver"] == "mail-config"
    # each persistent folder is a claim template or the operator's own claim, never both
    claims = {
        c["metadata"]["name"] for c in one(docs, "StatefulSet")["spec"]["volumeClaimTemplates"]
    }
    own = {v["name"] for v in pod_spec(docs)["volumes"] if "persistentVolumeClaim" in v}
    assert not claims & own
    assert claims | own >= {"mail-data", "mail-state", "mail-config"}


def test_pod_shape_sidecar_health_and_limits(kustomized: list[dict[str, Any]]) -> None:
    sts = one(kustomized, "StatefulSet")
    assert sts["spec"]["replicas"] == 1
    spec = pod_spec(kustomized)
    assert [c["name"] for c in spec["initContainers"]] == ["prepare", "agent"]
    agent = container(kustomized, "agent")
    assert agent["restartPolicy"] == "Always"  # native sidecar: starts first, stops last
    assert agent["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert "readinessProbe" not in agent  # pod readiness never depends on the agent
    assert "startupProbe" not in agent  # nor does DMS's start
    sc = agent["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in agent["env"]}
    assert env == {
        "POD_NAME": "metadata.name",
        "POD_NAMESPACE": "metadata.namespace",
        "NODE_IP": "status.hostIP",
    }
    ms = container(kustomized, "mailserver")
    assert ms["resources"]["requests"]["memory"] == "1536Mi"
    assert "ss --listening" in ms["readinessProbe"]["exec"]["command"][2]  # local, no traffic
    startup = ms["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300  # ClamAV: minutes
    # The verdict folder is shared: the agent writes, the mailserver's probe reads.
    verdict = _volume(kustomized, "verdict")
    assert "emptyDir" in verdict
    for c in (agent, ms):
        assert {"name": "verdict", "mountPath": "/var/run/dms-agent"} in c["volumeMounts"]
    # Grace period above the longest setup command, and above what preStop may wait.
    timeout = agent_settings(kustomized)["dms"]["commandTimeout"]
    assert spec["terminationGracePeriodSeconds"] > timeout + 30
    pre_stop = ms["lifecycle"]["preStop"]["exec"]["command"][2]
    assert f"limit={timeout + 10}\n" in pre_stop
    assert spec["terminationGracePeriodSeconds"] > timeout + 10


def _volume(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(v for v in pod_spec(docs)["volumes"] if v["name"] == name)


# --- the probe scripts, run for real with /bin/sh ------------------------------------------


def _sh(script: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", "-c", script], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.parametrize(
    ("first_line", "age", "fails"),
    [
        (None, 0, False),  # no verdict yet: never restart
        ("unhealthy {t}\nclamd: no PONG\n", 0, True),  # the only failing case: fresh unhealthy
        ("unhealthy {t}", 5, True),  # no final newline
        ("unhealthy {t}\n", 300, False),  # stale: the agent is gone, fail open
        ("healthy {t}\n", 0, False),
        ("unknown {t}\n", 0, False),
        ("unhealthy\n", 0, False),  # no timestamp: not affirmative
        ("", 0, False),
        ("garbage\n", 0, False),
    ],
)
def test_mailserver_liveness_fails_only_on_a_fresh_unhealthy_verdict(
    kustomized: list[dict[str, Any]],
    tmp_path: Path,
    first_line: str | None,
    age: int,
    fails: bool,
) -> None:
    """The rendered probe, run for real with /bin/sh against a verdict file in the agent's
    format (first line `<verdict> <unix time>`)."""
    command = container(kustomized, "mailserver")["livenessProbe"]["exec"]["command"]
    assert command[:2] == ["sh", "-c"]
    verdict = tmp_path / "verdict"
    assert command[4] == agent_settings(kustomized)["checks"]["verdictFile"]
    if first_line is not None:
        verdict.write_text(first_line.format(t=int(time.time()) - age))
    argv = ["/bin/sh", *command[1:4], str(verdict), command[5]]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    assert (proc.returncode != 0) is fails, proc.stdout + proc.stderr


def _pre_stop(docs: list[dict[str, Any]], tmp: Path, wait: int | None = None) -> str:
    text: str = container(docs, "mailserver")["lifecycle"]["preStop"]["exec"]["command"][2]
    text = text.replace("/var/run/dms-agent/", f"{tmp}/run/")
    text = text.replace("/tmp/docker-mailserver/", f"{tmp}/config/")
    if wait is not None:
        text = re.sub(r"^limit=\d+$", f"limit={wait}", text, flags=re.M)
    return text


def _holder(tmp: Path) -> int | None:
    mark = tmp / "run" / "stopping"
    return int(mark.read_text()) if mark.exists() and mark.read_text().strip() else None


def _kill(pid: int | None) -> None:
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


@pytest.fixture
def lock_rig(tmp_path: Path) -> Any:
    require_binary("flock", "util-linux")
    require_binary("setsid", "util-linux")
    (tmp_path / "run").mkdir()
    (tmp_path / "config").mkdir()
    lock = tmp_path / "config" / AGENT_LOCK
    lock.touch()
    yield tmp_path, lock
    _kill(_holder(tmp_path))


def test_pre_stop_holds_the_agents_apply_lock(
    kustomized: list[dict[str, Any]], lock_rig: Any
) -> None:
    """Nothing applying: preStop returns at once, holding the agent's real apply lock, so the
    agent starts no `setup` on the stopping DMS until this container (and the holder) is gone."""
    tmp, lock = lock_rig
    assert _sh(_pre_stop(kustomized, tmp)).returncode == 0
    pid = _holder(tmp)
    assert pid is not None
    assert ApplyLock(lock).try_acquire() is False
    _kill(pid)  # the container ends: its processes die, the lock is free again
    deadline = time.monotonic() + 5
    agent = ApplyLock(lock)
    while not agent.try_acquire():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    agent.release()


def test_pre_stop_waits_for_the_pass_in_progress(
    kustomized: list[dict[str, Any]], lock_rig: Any
) -> None:
    tmp, lock = lock_rig
    agent = ApplyLock(lock)
    assert agent.try_acquire()  # the agent is applying
    proc = subprocess.Popen(["/bin/sh", "-c", _pre_stop(kustomized, tmp)])
    time.sleep(0.6)
    assert proc.poll() is None  # still waiting for the pass
    agent.release()
    assert proc.wait(timeout=10) == 0
    assert _holder(tmp) is not None and ApplyLock(lock).try_acquire() is False


def test_pre_stop_wait_is_bounded_and_absent_lock_is_no_wait(
    kustomized: list[dict[str, Any]], lock_rig: Any
) -> None:
    tmp, lock = lock_rig
    agent = ApplyLock(lock)
    assert agent.try_acquire()  # a pass that outlives the bound
    # returns although the lock stays held: the wait is bounded (its figure: bench/deadlines.py)
    assert _sh(_pre_stop(kustomized, tmp, wait=1), timeout=20).returncode == 0
    assert _holder(tmp) is None
    agent.release()
    lock.unlink()  # no lock file (no agent ever ran): nothing to wait for
    assert _sh(_pre_stop(kustomized, tmp)).returncode == 0
    assert _holder(tmp) is None
    # A restarted container (preStop also runs before a liveness restart) clears the mark.
    post_start = container(kustomized, "mailserver")["lifecycle"]["postStart"]["exec"]["command"]
    assert post_start == ["rm", "-f", "/var/run/dms-agent/stopping"]


def test_prepare_script_readies_the_config_folder(
    kustomized: list[dict[str, Any]], tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("the prepare script chowns to uid 10001: needs root, as in the pod")
    config, files = tmp_path / "config", tmp_path / "files"
    config.mkdir()
    files.mkdir()
    data = one(kustomized, "ConfigMap", "mailserver-files")["data"]
    for name, text in data.items():
        (files / name).write_text(text)
    (config / "dovecot.cf").write_text("stale from an earlier haproxy setup\n")
    script = container(kustomized, "prepare")["command"][2]
    script = script.replace("/tmp/docker-mailserver", str(config))
    script = script.replace("/etc/dms-files", str(files))
    for _ in range(2):  # every pod start
        proc = subprocess.run(["/bin/sh", "-ec", script], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    ledger_dir = (config / ".dms-agent").stat()
    assert (ledger_dir.st_uid, ledger_dir.st_gid) == (10001, 10001)
    assert ledger_dir.st_mode & 0o777 == 0o700
    lock = (config / AGENT_LOCK).stat()  # the agent (not root) must be able to open its lock
    assert (lock.st_uid, lock.st_mode & 0o777) == (10001, 0o600)
    for name, text in data.items():
        assert (config / name).read_text() == text  # the ConfigMap owns these files
    assert os.access(config / "user-patches.sh", os.X_OK)


def test_watched_secret_holds_passwords_only_and_agent_keys_are_only_mounted(
    kustomized: list[dict[str, Any]],
) -> None:
    """Every YAML key of a watched Secret is read as a passwords document, so the watched one
    holds passwords.yaml alone; the agent's keys live in a Secret the Role does not name."""
    sources = {s["name"] for s in agent_settings(kustomized)["sources"] if s["kind"] == "secret"}
    assert sources == {"mailserver-secrets"}
    assert set(one(kustomized, "Secret", "mailserver-secrets")["stringData"]) == {"passwords.yaml"}
    keys = one(kustomized, "Secret", "mailserver-agent-secrets")["stringData"]
    assert {"ledger.key", "webhook-secret"} <= set(keys)
    rules = {r["resources"][0]: r for r in one(kustomized, "Role")["rules"]}
    assert rules["secrets"]["resourceNames"] == ["mailserver-secrets"]
    assert (
        _volume(kustomized, "agent-secrets")["secret"]["secretName"] == "mailserver-agent-secrets"
    )
