"""Mounted sources: kubelet's atomic writer sequence on disk, plain folders, single files."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.events import LogEventSink
from agent.hub import Hub
from agent.sources.merge import Merge
from agent.sources.mounted import MountedSource, read_mount
from agent.status import StatusRegistry
from tests.kube_support import Recorder, eventually, kubelet_write, load, start, state_yaml, stop

WATCHER = ["inotify"]


@pytest.fixture(autouse=True, params=["inotify", "watchfiles"])
def watcher(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test runs with both watchers: inotify (default) and the watchfiles fallback."""
    WATCHER[0] = request.param
    yield request.param
    WATCHER[0] = "inotify"


def _pipeline(
    hub: Hub, status: StatusRegistry, *mounts: tuple[Path, bool], resync: float = 30.0
) -> list[MountedSource | Merge]:
    sources = [
        MountedSource(p, s, hub, status, resync=resync, step_ms=10, watcher=WATCHER[0])
        for p, s in mounts
    ]
    merge = Merge([s.key for s in sources], hub, status, LogEventSink(), load)
    return [*sources, merge]


async def test_kubelet_swap_publishes_each_generation_once(tmp_path: Path) -> None:
    cm = tmp_path / "state"
    kubelet_write(cm, {"mailserver.yaml": state_yaml("a@x.org")})
    hub, status = Hub(), StatusRegistry()
    rec = Recorder(hub)
    tasks = start(*_pipeline(hub, status, (cm, False)))
    try:
        await rec.until({"a@x.org"})
        kubelet_write(cm, {"mailserver.yaml": state_yaml("a@x.org", "b@x.org")})
        await rec.until({"a@x.org", "b@x.org"})
        kubelet_write(cm, {"mailserver.yaml": state_yaml("a@x.org", "b@x.org")})  # same content
        # a later generation as the marker: once it is out, the one before has been read
        kubelet_write(cm, {"mailserver.yaml": state_yaml("c@x.org")})
        await rec.until({"c@x.org"})
    finally:
        await stop(tasks)
        rec.stop()
    assert rec.accounts() == [{"a@x.org"}, {"a@x.org", "b@x.org"}, {"c@x.org"}]


async def test_rapid_updates_end_on_the_last_one(tmp_path: Path) -> None:
    cm = tmp_path / "state"
    kubelet_write(cm, {"mailserver.yaml": state_yaml("u0@x.org")})
    hub, status = Hub(), StatusRegistry()
    rec = Recorder(hub)
    tasks = start(*_pipeline(hub, status, (cm, False)))
    try:
        await rec.until({"u0@x.org"})
        for i in range(1, 20):
            kubelet_write(cm, {"mailserver.yaml": state_yaml(f"u{i}@x.org")})
        await rec.until({"u19@x.org"})
        kubelet_write(cm, {"mailserver.yaml": state_yaml("u20@x.org")})  # the marker
        await rec.until({"u20@x.org"})
    finally:
        await stop(tasks)
        rec.stop()
    seen = [next(iter(a)) for a in rec.accounts()]
    assert seen[-2:] == ["u19@x.org", "u20@x.org"]  # no stale generation after the last one
    # nothing twice, and in the order written (some may be coalesced)
    assert len(seen) == len(set(seen))
    assert seen == sorted(seen, key=lambda a: int(a[1:].split("@")[0]))


async def test_configmap_and_secret_change_at_different_moments(tmp_path: Path) -> None:
    cm, secret = tmp_path / "state", tmp_path / "passwords"
    kubelet_write(cm, {"mailserver.yaml": state_yaml("a@x.org")})
    kubelet_write(secret, {"passwords.yaml": "a@x.org: {password: one}\n"})
    hub, status = Hub(), StatusRegistry()
    rec = Recorder(hub)
    tasks = start(*_pipeline(hub, status, (cm, False), (secret, True)))
    try:
        await rec.until({"a@x.org"})
        kubelet_write(secret, {"passwords.yaml": "a@x.org: {password: two}\n"})
        await eventually(lambda: len(rec.published) >= 2)
        kubelet_write(cm, {"mailserver.yaml": state_yaml("a@x.org", "b@x.org")})
        await rec.until({"a@x.org", "b@x.org"})
    finally:
        await stop(tasks)
        rec.stop()
    assert len(rec.published) == 3  # initial, password change, account added
    assert len({d.generation for d in rec.published}) == 3


def test_read_is_one_generation(tmp_path: Path) -> None:
    mount = tmp_path / "m"
    kubelet_write(mount, {"a": "1", "b": "1"})
    kubelet_write(mount, {"a": "2", "b": "2"})
    docs = read_mount(mount, secret=True)
    assert docs is not None
    assert [(d.name, d.text, d.secret) for d in docs] == [("a", "2", True), ("b", "2", True)]
    assert all(d.origin.startswith(str(mount)) for d in docs)


async def test_absent_folder_publishes_nothing_until_it_appears(tmp_path: Path) -> None:
    cm, secret = tmp_path / "state", tmp_path / "passwords"
    kubelet_write(cm, {"mailserver.yaml": state_yaml("a@x.org")})
    hub, status = Hub(), StatusRegistry()
    rec = Recorder(hub)
    tasks = start(*_pipeline(hub, status, (cm, False), (secret, True), resync=0.1))
    try:
        merge = status.component("sources merge")
        # the merge has seen the state (no longer named absent) and waits for the secret
        await eventually(
            lambda: f"path:{secret}" in merge.message and f"path:{cm}" not in merge.message
        )
        assert "absent" in merge.message
        assert rec.published == []  # the secret is unknown, not empty
        kubelet_write(secret, {"passwords.yaml": "{}\n"})
        await rec.until({"a@x.org"})
    finally:
        await stop(tasks)
        rec.stop()


async def test_plain_folder_and_single_file(tmp_path: Path) -> None:
    folder, single = tmp_path / "plain", tmp_path / "single" / "extra.yaml"
    folder.mkdir()
    single.parent.mkdir()
    (folder / "mailserver.yaml").write_text(state_yaml("a@x.org"))
    single.write_text(state_yaml("c@x.org"))
    hub, status = Hub(), StatusRegistry()
    rec = Recorder(hub)
    tasks = start(*_pipeline(hub, status, (folder, False), (single, False)))
    try:
        await rec.until({"a@x.org", "c@x.org"})
        (folder / "mailserver.yaml").write_text(state_yaml("a@x.org", "b@x.org"))
        await rec.until({"a@x.org", "b@x.org", "c@x.org"})
        single.write_text(state_yaml("d@x.org"))
        await rec.until({"a@x.org", "b@x.org", "d@x.org"})
    finally:
        await stop(tasks)
        rec.stop()


async def test_invalid_input_keeps_the_last_good_and_conflicts_name_both(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    kubelet_write(one, {"mailserver.yaml": state_yaml("a@x.org")})
    kubelet_write(two, {"more.yaml": state_yaml("b@x.org")})
    hub, status = Hub(), StatusRegistry()
    rec = Recorder(hub)
    tasks = start(*_pipeline(hub, status, (one, False), (two, False)))
    try:
        await rec.until({"a@x.org", "b@x.org"})
        kubelet_write(two, {"more.yaml": state_yaml("a@x.org")})  # a conflict across objects
        merge = status.component("sources merge")
        await eventually(lambda: "rejected" in merge.message)
        error = merge.details["errors"][0]
        assert str(two / "more.yaml") in error and str(one / "mailserver.yaml") in error
        assert hub.desired.value.state.accounts.keys() == {"a@x.org", "b@x.org"}
        kubelet_write(two, {"more.yaml": state_yaml("b@x.org")})  # back to the state in force
        await eventually(lambda: merge.message == "published")  # the undo has been merged
    finally:
        await stop(tasks)
        rec.stop()
    assert len(rec.published) == 1  # the flip-flop back publishes nothing new


async def test_single_file_inside_a_kubelet_mount(tmp_path: Path) -> None:
    mount = tmp_path / "state"
    kubelet_write(mount, {"mailserver.yaml": state_yaml("a@x.org"), "other": "x"})
    hub, status = Hub(), StatusRegistry()
    rec = Recorder(hub)
    tasks = start(*_pipeline(hub, status, (mount / "mailserver.yaml", False)))
    try:
        await rec.until({"a@x.org"})
        kubelet_write(mount, {"mailserver.yaml": state_yaml("b@x.org"), "other": "x"})
        await rec.until({"b@x.org"})
    finally:
        await stop(tasks)
        rec.stop()


async def test_folder_removed_then_back(tmp_path: Path) -> None:
    mount = tmp_path / "state"
    kubelet_write(mount, {"mailserver.yaml": state_yaml("a@x.org")})
    hub, status = Hub(), StatusRegistry()
    rec = Recorder(hub)
    tasks = start(*_pipeline(hub, status, (mount, False), resync=0.1))
    try:
        await rec.until({"a@x.org"})
        shutil.rmtree(mount)
        source = status.component(f"source path:{mount}")
        await eventually(lambda: "absent" in source.message)
        kubelet_write(mount, {"mailserver.yaml": state_yaml("b@x.org")})
        await rec.until({"b@x.org"})
    finally:
        await stop(tasks)
        rec.stop()
