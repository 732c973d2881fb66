"""A broken file is rejected alone: the other files still apply, the broken one stays at its
last good version, and nothing is deleted until it is fixed (the merge, on real documents)."""

from __future__ import annotations

from agent.hub import Hub
from agent.mailstate.model import Desired
from agent.sources.document import SourceDocument, SourceSnapshot
from agent.sources.merge import Merge
from agent.status import State, StatusRegistry
from tests.checks_support import RecordingEvents
from tests.kube_support import state_yaml

BROKEN = "apiVersion: dms-agent/v1\naccounts:\n  x@x.org: {quota: lots}\n"
EMPTY = "apiVersion: dms-agent/v1\n"


def accounts(*names: str) -> str:
    return "apiVersion: dms-agent/v1\n" + state_yaml(*names)


class Rig:
    def __init__(self) -> None:
        self.hub, self.status, self.events = Hub(), StatusRegistry(), RecordingEvents()
        self.merge = Merge(["files"], self.hub, self.status, self.events)
        self.entry = self.status.component("sources merge")

    async def offer(self, **files: str) -> bool:
        docs = tuple(SourceDocument(f"/s/{n}.yaml", f"{n}.yaml", t) for n, t in files.items())
        return await self.merge.consider({"files": SourceSnapshot("files", docs)})

    @property
    def desired(self) -> Desired:
        value = self.hub.desired.value
        assert isinstance(value, Desired)
        return value


async def test_the_other_files_apply_and_the_broken_one_keeps_its_last_good_version() -> None:
    rig = Rig()
    assert await rig.offer(a=accounts("a@x.org"), b=accounts("b@x.org"))
    assert rig.desired.state.policy.prune is None

    assert await rig.offer(a=accounts("a@x.org", "new@x.org"), b=BROKEN)

    assert set(rig.desired.state.accounts) == {"a@x.org", "new@x.org", "b@x.org"}
    assert rig.desired.state.policy.prune is False  # deletions wait
    assert rig.entry.state is State.DEGRADED
    assert rig.entry.details["rejected_files"] == ["/s/b.yaml"]
    assert "/s/b.yaml:3: accounts.x@x.org.quota" in rig.entry.details["errors"][0]
    assert "deletions wait until they are fixed" in rig.entry.message
    (event,) = rig.events.events
    assert event[0] == "Invalid" and "1 file(s) rejected" in event[1]


async def test_an_account_moved_into_a_broken_file_is_not_deleted() -> None:
    rig = Rig()
    assert await rig.offer(a=accounts("a@x.org", "moved@x.org"), b=accounts("b@x.org"))
    moved_broken = BROKEN.replace("x@x.org", "moved@x.org") + "  b@x.org: {}\n"

    assert await rig.offer(a=accounts("a@x.org"), b=moved_broken)

    # moved@x.org is now declared nowhere readable: with prune withheld the plan keeps it
    assert "moved@x.org" not in rig.desired.state.accounts
    assert rig.desired.state.policy.prune is False


async def test_fixing_the_file_brings_deletions_back() -> None:
    rig = Rig()
    assert await rig.offer(a=accounts("a@x.org"), b=accounts("b@x.org"))
    assert await rig.offer(a=accounts("a@x.org", "new@x.org"), b=BROKEN)
    assert rig.desired.state.policy.prune is False

    assert await rig.offer(a=accounts("a@x.org", "new@x.org"), b=EMPTY)  # b@ meant to go

    assert rig.desired.state.policy.prune is None
    assert rig.entry.state is State.OK
    assert set(rig.desired.state.accounts) == {"a@x.org", "new@x.org"}


async def test_undoing_the_broken_edit_restores_the_whole_state() -> None:
    rig = Rig()
    assert await rig.offer(a=accounts("a@x.org"), b=accounts("b@x.org"))
    assert await rig.offer(a=accounts("a@x.org", "new@x.org"), b=BROKEN)

    assert await rig.offer(a=accounts("a@x.org", "new@x.org"), b=accounts("b@x.org"))

    assert rig.desired.state.policy.prune is None
    assert rig.entry.state is State.OK


async def test_a_new_broken_file_alone_changes_nothing_in_force() -> None:
    rig = Rig()
    assert await rig.offer(a=accounts("a@x.org"))
    generation = rig.desired.generation

    assert not await rig.offer(a=accounts("a@x.org"), c=BROKEN)

    assert rig.desired.generation == generation
    assert rig.entry.state is State.DEGRADED
    assert rig.entry.details["rejected_files"] == ["/s/c.yaml"]


async def test_every_file_broken_keeps_the_whole_last_good_state() -> None:
    rig = Rig()
    assert await rig.offer(a=accounts("a@x.org"))

    assert not await rig.offer(a=BROKEN)

    assert set(rig.desired.state.accounts) == {"a@x.org"}
    assert rig.desired.state.policy.prune is None
    assert "the last good state stays in force" in rig.entry.message


async def test_a_duplicate_added_to_one_file_rejects_that_file_only() -> None:
    rig = Rig()
    assert await rig.offer(a=accounts("a@x.org"), b=accounts("b@x.org"))

    assert await rig.offer(a=accounts("a@x.org", "new@x.org"), b=accounts("b@x.org", "a@x.org"))

    assert set(rig.desired.state.accounts) == {"a@x.org", "new@x.org", "b@x.org"}
    assert rig.entry.state is State.DEGRADED
    assert "a@x.org" in " ".join(rig.entry.details["errors"])
