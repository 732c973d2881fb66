"""Defects no render test used to see, each shown where it would break at run time: the checks
of a default (TLS-less) install against a real Postfix without STARTTLS, the PROXY twins against
DMS's own ports, one copy of DMS's environment for both containers, and kustomize edits that
roll the pod."""

from __future__ import annotations

import itertools
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from agent.checks.config import CheckSpec
from agent.checks.defaults import effective_checks
from agent.checks.probes import ProbeEnv, run_probe
from tests.deploy import render
from tests.deploy.fixtures import rendered
from tests.deploy.objects import container, load_pod_settings, one, pod_spec
from tests.rig.postfix import PostfixFactory

SPEC = TypeAdapter(CheckSpec)

# The TCP ports docker-mailserver v15 itself listens on, by the variable that turns them on
# (None: always). From DMS's master.cf and the daemons' configurations it ships.
DMS_PORTS: dict[str | None, set[int]] = {
    None: {25, 143, 465, 587, 993},  # postscreen, submissions, submission; Dovecot IMAP
    "ENABLE_POP3": {110, 995},
    "ENABLE_MANAGESIEVE": {4190},
    "ENABLE_QUOTAS": {65265},  # Dovecot's quota-status policy service for Postfix
    "ENABLE_AMAVIS": {10024, 10025},  # Amavis, and Postfix's reinjection smtpd
    "ENABLE_POSTGREY": {10023},
    "ENABLE_SRS": {10001, 10002},  # postsrsd forward / reverse
    "ENABLE_RSPAMD": {11332, 11333, 11334, 6379},  # proxy, normal, controller; Redis
    "ENABLE_OPENDKIM": {8891},
    "ENABLE_OPENDMARC": {8893},
    "ENABLE_CLAMAV": {3310},
    "ENABLE_MTA_STS": {8461},  # postfix-mta-sts-resolver
}
FLAGS = [flag for flag in DMS_PORTS if flag is not None]
CHART_FLAGS = ("ENABLE_POP3",)  # the flags that change the chart's ports


def _settings_checks(docs: list[dict[str, Any]], folder: Path) -> dict[str, Any]:
    settings = load_pod_settings(docs, folder)
    return {c.name: c for c in effective_checks(settings.checks, settings.dms.environment)}


# --- the checks follow DMS's TLS setting ------------------------------------------------------


async def test_default_install_checks_pass_on_a_postfix_without_tls(
    helm: str, postfix_factory: PostfixFactory, tmp_path: Path
) -> None:
    """No SSL_TYPE (the chart's default): DMS offers no STARTTLS, so the default checks speak
    plain SMTP and IMAP, pass, and the LB (waitForCheck: smtp) registers the node. A STARTTLS
    check, what the chart used to get, never passes there."""
    docs = rendered(helm, "defaults")
    assert "SSL_TYPE" not in one(docs, "ConfigMap", "mailserver-env")["data"]
    checks = _settings_checks(docs, tmp_path)
    assert {checks[n].tls for n in ("smtp", "submission", "imap")} == {"none"}
    plain = postfix_factory(tls=False)
    for name, port in (("smtp", plain.smtp), ("submission", plain.submission)):
        spec = checks[name].model_copy(update={"host": plain.host, "port": port, "timeout": 5})
        outcome = await run_probe(spec, ProbeEnv())
        assert outcome.ok, (name, outcome)
        starttls = spec.model_copy(update={"tls": "starttls"})
        refused = await run_probe(starttls, ProbeEnv())
        assert not refused.ok and refused.reason == "tls", refused


async def test_with_cert_manager_the_checks_demand_starttls(
    helm: str, postfix_factory: PostfixFactory, tmp_path: Path
) -> None:
    docs = rendered(helm, "certmanager")
    checks = _settings_checks(docs, tmp_path)
    assert {checks[n].tls for n in ("smtp", "submission", "imap")} == {"starttls"}
    server = postfix_factory()
    spec = checks["smtp"].model_copy(update={"host": server.host, "port": server.smtp})
    outcome = await run_probe(spec, ProbeEnv())
    assert outcome.ok and outcome.cert_not_after is not None
    # SSL_TYPE set by hand (letsencrypt, manual ...) counts the same
    own = render.load_docs(render.helm_template(helm, ["env.SSL_TYPE=letsencrypt"]))
    assert _settings_checks(own, tmp_path / "own")["submission"].tls == "starttls"


def test_notes_warn_that_mail_without_tls_is_for_testing(helm: str, tmp_path: Path) -> None:
    warning = "WARNING: no TLS (SSL_TYPE is unset)"
    assert warning in render.helm_notes(helm, tmp_path / "a", [])
    assert warning not in render.helm_notes(helm, tmp_path / "b", ["ssl.issuer.name=le"])
    assert warning not in render.helm_notes(helm, tmp_path / "c", ["env.SSL_TYPE=manual"])


# --- PROXY twins collide with no DMS port -----------------------------------------------------


def _twins(docs: list[dict[str, Any]]) -> set[int]:
    ports = container(docs, "mailserver")["ports"]
    return {p["containerPort"] for p in ports if p["name"].endswith("-proxy")}


@pytest.mark.parametrize("chart_flags", [(), ("ENABLE_POP3",)])
def test_proxy_twins_collide_with_no_dms_port_in_any_combination(
    helm: str, chart_flags: tuple[str, ...]
) -> None:
    """The twins depend on the flags the chart reads (POP3) only: rendered with every other DMS
    flag on and off they are the same, and they avoid the ports DMS opens with every flag on,
    which covers every combination."""
    renders = {}
    for others in (True, False):
        sets = ["haproxy.enabled=true"]
        for flag in FLAGS:
            on = flag in chart_flags if flag in CHART_FLAGS else others
            sets.append(f"env.{flag}={'true' if on else 'false'}")
        renders[others] = render.load_docs(render.helm_template(helm, sets))
    twins = _twins(renders[True])
    assert twins == _twins(renders[False])
    assert len(twins) == (7 if chart_flags else 5)
    every_dms_port = set(itertools.chain.from_iterable(DMS_PORTS.values()))
    assert not twins & every_dms_port, sorted(twins & every_dms_port)
    plain = {p["containerPort"] for p in container(renders[True], "mailserver")["ports"]}
    assert plain - twins <= every_dms_port  # the plain ports are DMS's own
    # the files DMS reads listen on exactly those twins
    files = one(renders[True], "ConfigMap", "mailserver-files")["data"]
    listed = {int(p) for p in re.findall(r"^\s*twin \w+ (\d+) ", files["user-patches.sh"], re.M)}
    listed |= {
        int(line.split("=")[1]) for line in files["dovecot.cf"].splitlines() if "port =" in line
    }
    assert listed == twins


# --- one copy of DMS's environment ------------------------------------------------------------


def test_chart_env_is_read_by_both_containers(helm: str, tmp_path: Path) -> None:
    """ENABLE_CLAMAV changed in one place (values `env`): DMS's envFrom and the agent's checks
    both follow, since the agent mounts the ConfigMap DMS's envFrom names."""
    for value, clamd in (("true", True), ("false", False)):
        docs = render.load_docs(render.helm_template(helm, [f"env.ENABLE_CLAMAV={value}"]))
        env_map = container(docs, "mailserver")["envFrom"][0]["configMapRef"]["name"]
        dms_env = one(docs, "ConfigMap", env_map)["data"]
        assert dms_env["ENABLE_CLAMAV"] == ("1" if clamd else "0")
        checks = _settings_checks(docs, tmp_path / value)
        assert ("clamd" in checks) is clamd


def _kustomize_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "manifests"
    shutil.copytree(render.MANIFESTS, copy)
    return copy


def test_kustomize_env_is_one_file_both_containers_follow(kubectl: str, tmp_path: Path) -> None:
    copy = _kustomize_copy(tmp_path)
    env_file = copy / render.ENV_FILE.name
    env_file.write_text(env_file.read_text().replace("ENABLE_CLAMAV=1", "ENABLE_CLAMAV=0"))
    docs = render.load_docs(render.kustomize_build(kubectl, copy))
    env_map = container(docs, "mailserver")["envFrom"][0]["configMapRef"]["name"]
    agent_env = next(v for v in pod_spec(docs)["volumes"] if v["name"] == "dms-env")
    assert agent_env["configMap"]["name"] == env_map
    assert one(docs, "ConfigMap", env_map)["data"]["ENABLE_CLAMAV"] == "0"
    assert "clamd" not in _settings_checks(docs, tmp_path / "settings")


@pytest.mark.parametrize("edit", ["mailserver.env", "files/dovecot.cf"])
def test_kustomize_edit_of_env_or_files_rolls_the_pod(
    kubectl: str, tmp_path: Path, edit: str
) -> None:
    """The ConfigMaps are generated with a content hash in their name: an edit changes the pod
    template (a new rollout) instead of waiting for a manual restart."""
    before = one(render.load_docs(render.kustomize_build(kubectl, render.MANIFESTS)), "StatefulSet")
    copy = _kustomize_copy(tmp_path)
    with (copy / edit).open("a") as out:
        out.write("DMS_DEBUG_EXTRA=1\n" if edit.endswith(".env") else "# edited\n")
    after = one(render.load_docs(render.kustomize_build(kubectl, copy)), "StatefulSet")
    assert before["spec"]["template"] != after["spec"]["template"]
