"""The chart's mail-flow switch: off, nothing of it is rendered; on, the agent reads DMS's mail
log from a volume the mailserver writes (an emptyDir, or persistence.mailLog's claim), read-only,
and its settings name that log and keep the follower's position on the config volume."""

from __future__ import annotations

from typing import Any

from agent.settings import Settings
from tests.deploy.fixtures import rendered
from tests.deploy.objects import agent_settings, container, pod_spec


def _mount(c: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((m for m in c.get("volumeMounts", []) if m["name"] == name), None)


def test_off_by_default(helm: str) -> None:
    docs = rendered(helm, "defaults")
    assert "mailflow" not in agent_settings(docs)
    assert _mount(container(docs, "agent"), "mail-log") is None
    assert all(v["name"] != "mail-log" for v in pod_spec(docs)["volumes"])


def test_on_the_agent_reads_the_log_the_mailserver_writes(helm: str) -> None:
    docs = rendered(helm, "mailflow")
    agent, dms = container(docs, "agent"), container(docs, "mailserver")
    reader, writer = _mount(agent, "mail-log"), _mount(dms, "mail-log")
    assert reader == {"name": "mail-log", "mountPath": "/var/log/mail", "readOnly": True}
    assert writer is not None and writer["mountPath"] == "/var/log/mail"
    assert not writer.get("readOnly")
    volume = next(v for v in pod_spec(docs)["volumes"] if v["name"] == "mail-log")
    assert "emptyDir" in volume
    settings = Settings.model_validate(agent_settings(docs))
    flow = settings.mailflow
    assert flow.enabled and [str(p) for p in flow.log_files] == ["/var/log/mail/mail.log"]
    assert str(flow.state_file).startswith("/tmp/docker-mailserver/")  # survives restarts
    assert settings.dms.executor.kind == "kube"  # postqueue -j runs where setup runs


def test_with_persistent_logs_the_agent_mounts_the_claim(helm: str) -> None:
    docs = rendered(helm, "knobs")  # persistence.mailLog on, from an existing claim or template
    reader = _mount(container(docs, "agent"), "mail-log")
    assert reader is not None and reader["readOnly"] is True
    assert all("emptyDir" not in v for v in pod_spec(docs)["volumes"] if v["name"] == "mail-log")
    assert agent_settings(docs)["mailflow"]["postfixExporterNames"] is False
