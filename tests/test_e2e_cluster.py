"""The whole agent as it runs in a pod, end to end: ConfigMap and Secret read through the
Kubernetes API (the test API server), the reconciler running DMS's `setup` (the v15.1.0 double)
by Kubernetes exec into the "mailserver container", real `doveadm` hashing the passwords."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from agent.app import Agent
from agent.settings import Settings
from tests.dms_double.fixtures import DmsDouble, doveadm_verify
from tests.kube_api.fixtures import KubeApi
from tests.kube_support import eventually

STATE = """apiVersion: dms-agent/v1
accounts:
  alice@example.com: {quota: 2G}
  bob@example.com: {}
aliases:
  postmaster@example.com: [alice@example.com]
"""
PASSWORDS = """alice@example.com: {password: "alice's secret"}
bob@example.com: {password: "bob's secret"}
carol@example.com: {password: "carol's secret"}
"""


PLAIN = ("alice's secret", "bob's secret", "carol's secret")


def settings_for(api: KubeApi, dms: DmsDouble, key_file: Path) -> Settings:
    env = {k: v for k, v in dms.env.items() if not k.startswith("DMS_DOUBLE")}
    return Settings.model_validate(
        {
            "sources": [
                {"kind": "configmap", "name": "mail-state"},
                {"kind": "secret", "name": "mail-passwords"},
            ],
            "kube": {"kubeconfig": str(api.kubeconfig), "backoffInitial": 0.05},
            "dms": {
                "configDir": str(dms.config_dir),  # the shared config volume, as in the chart
                "setupCommand": dms.setup_argv,
                "readyCommand": [],
                "commandTimeout": 20,
                "executor": {"kind": "kube", "container": "mailserver"},
                "environment": env,
            },
            "reconcile": {"ledgerKeyFile": str(key_file)},
            "dkim": {"enabled": False},
        }
    )


def setup_calls(dms: DmsDouble, verb: str) -> list[list[str]]:
    return [c["argv"] for c in dms.calls() if c["argv"][:2] == ["email", verb]]


async def test_configmap_and_secret_reach_dms_through_kube_exec(
    kube_api: KubeApi,
    make_dms: Callable[..., DmsDouble],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POD_NAME", kube_api.pod)
    monkeypatch.setenv("POD_NAMESPACE", kube_api.namespace)
    dms = make_dms()
    key_file = tmp_path / "ledger.key"
    key_file.write_text("a test ledger key, not beside the ledger\n")
    key_file.chmod(0o600)
    store = kube_api.server.store
    store.create("configmaps", "mail", {"metadata": {"name": "mail-state"},
                                        "data": {"mailserver.yaml": STATE}})  # fmt: skip
    store.create("secrets", "mail", {"metadata": {"name": "mail-passwords"},
                                     "stringData": {"passwords.yaml": PASSWORDS}})  # fmt: skip

    agent = Agent(settings_for(kube_api, dms, key_file), None)
    await agent.start_components()
    try:
        await eventually(
            lambda: set(dms.accounts()) == {"alice@example.com", "bob@example.com"}, 30
        )
        await eventually(lambda: "postmaster@example.com" in dms.aliases(), 10)
        accounts = dms.accounts()
        assert doveadm_verify(accounts["alice@example.com"], "alice's secret")
        assert doveadm_verify(accounts["bob@example.com"], "bob's secret")
        assert dms.quotas() == {"alice@example.com": "2G"}
        # passwords went on stdin: not one argv of any `setup` call carries one
        assert not [c for c in dms.calls() if any(pw in " ".join(c["argv"]) for pw in PLAIN)]
        status = agent.status.component("reconcile")
        await eventually(lambda: status.details.get("outcome") in ("applied", "noop"), 10)
        adds_before = len(setup_calls(dms, "add"))
        assert adds_before == 2
        passes_before = status.details["passes"]

        # one more account in the ConfigMap: exactly one more `setup email add`
        bob = "  bob@example.com: {}\n"
        more = STATE.replace(bob, bob + "  carol@example.com: {}\n")
        body = {"metadata": {"name": "mail-state"}, "data": {"mailserver.yaml": more}}
        store.update("configmaps", "mail", "mail-state", body)
        await eventually(lambda: "carol@example.com" in dms.accounts(), 30)
        # the double logs a call when it exits, a moment after it wrote the file
        await eventually(lambda: len(setup_calls(dms, "add")) > adds_before, 10)
        # the pass that added carol has ended (the outcome alone may still be the last pass's)
        await eventually(lambda: status.details["passes"] > passes_before, 10)
        assert status.details["outcome"] in ("applied", "noop")
        assert len(setup_calls(dms, "add")) == adds_before + 1
        assert doveadm_verify(dms.accounts()["carol@example.com"], "carol's secret")
        shown = str(agent.status.snapshot())
        assert not [pw for pw in PLAIN if pw in shown]
    finally:
        await agent.stop_components()
