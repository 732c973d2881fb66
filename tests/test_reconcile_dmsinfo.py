"""Outside DMS's image: the default start-up probe is skipped with a note instead of failing
every plan, and /status says which DMS settings the agent assumed and where they came from."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from agent.app import AgentContext
from agent.dms.observe import DMS_IMAGE_MARKER, SETTINGS_FILE, read_info
from agent.executor import LocalExecutor, Result
from agent.reconcile.reconciler import Engine, Reconciler
from agent.settings import Settings
from agent.status import StatusRegistry
from tests.reconcile_rig import DmsRig
from tests.test_reconcile_truth import with_quotas


class Container:
    """A mailserver container as `docker exec` sees it: its own files and environment."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files
        self.argvs: list[list[str]] = []

    async def run(
        self, argv: Sequence[str], stdin: str | None = None, timeout: float = 60.0
    ) -> Result:
        self.argvs.append(list(argv))
        if argv[0] == "cat" and argv[1] in self.files:
            return Result(0, self.files[argv[1]], "", 0.0)
        if list(argv) == ["env"]:
            return Result(0, "PATH=/usr/bin\nENABLE_RSPAMD=1\nENABLE_OPENDKIM=0\n", "", 0.0)
        return Result(1, "", f"{argv[0]}: no such file", 0.0)


async def test_dms_settings_say_where_they_came_from() -> None:
    inside = Container({SETTINGS_FILE: "ENABLE_QUOTAS='0'\nACCOUNT_PROVISIONER='FILE'\n"})
    info = await read_info(inside, {}, 5, "docker")
    assert not info.quotas_enabled
    assert info.source == f"{SETTINGS_FILE}, read through the docker executor"
    env_only = await read_info(Container({}), {}, 5, "kube")
    assert env_only.dkim_backend == "rspamd"
    assert env_only.source.startswith("`env` through the kube executor")
    local = await read_info(Container({}), {}, 5, "local")
    assert local.source.startswith("the agent's own environment")
    configured = await read_info(inside, {"ENABLE_QUOTAS": "1"}, 5, "docker")
    assert (
        configured.quotas_enabled and configured.source == "dms.environment in the agent's settings"
    )
    assert ["cat", SETTINGS_FILE] not in inside.argvs[1:]  # configured: nothing read


def default_probe(rig: DmsRig, **reconcile: object) -> Settings:
    settings = rig.settings(**reconcile)
    dms = settings.dms.model_copy(update={"ready_command": ["test", "-e", "/CONTAINER_START"]})
    return settings.model_copy(update={"dms": dms})


async def test_the_default_probe_is_skipped_outside_dms_image_and_shown(dms_rig: DmsRig) -> None:
    if DMS_IMAGE_MARKER.exists():
        pytest.fail(f"{DMS_IMAGE_MARKER} exists: this test needs a machine that is not DMS's image")
    settings = default_probe(dms_rig)
    assert await Engine(settings, LocalExecutor()).check_dms() is None  # ready, not "starting"
    ctx = AgentContext(settings=settings, status=StatusRegistry(), executor=LocalExecutor())
    rec = Reconciler(ctx)
    report = await rec.reconcile(with_quotas({"a@x.org": "1G"}))
    assert report.outcome == "applied", report.describe()
    dms = ctx.status.component("reconcile").details["dms"]
    assert dms["readiness"].startswith("default dms.readyCommand skipped")
    assert dms["settingsSource"] == "dms.environment in the agent's settings"
    assert dms["quotas"] is True and dms["dkimBackend"] == "opendkim"
