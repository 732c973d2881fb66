"""API sources against the test API server, with chaos: restart, dropped and stalled streams,
410 storms, compaction while disconnected, token rotation. Every run ends with the published
state equal to the last objects written, and no state published twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest

from agent.events import LogEventSink
from agent.hub import Hub
from agent.kube.client import KubeClient, load_cluster_config
from agent.kube.config import KubeSettings
from agent.metrics import REGISTRY
from agent.settings import SourceSettings
from agent.sources.base import digest, snapshots
from agent.sources.kube import KubeSource
from agent.sources.merge import Merge
from agent.status import StatusRegistry
from tests.kube_api.fixtures import KubeApi, start_kube_api
from tests.kube_support import Recorder, eventually, load, start, state_yaml, stop

NS = "mail"


@dataclass
class Rig:
    api: KubeApi
    hub: Hub
    status: StatusRegistry
    rec: Recorder
    sources: list[KubeSource]
    merge: Merge
    written: int = 0
    last_passwords: str = ""

    async def settled(self, accounts: set[str], timeout: float = 10.0) -> None:
        """Wait until the published state is the one made of the last objects written."""
        async with asyncio.timeout(timeout):
            while True:
                board = snapshots(self.hub)
                docs = [d for s in self.sources for d in (board[s.key].documents or ())]
                value = self.hub.desired.value
                if (
                    value is not None
                    and set(value.state.accounts) == accounts
                    and any(d.text == self.last_passwords for d in docs)
                    and self.merge.in_force == digest(tuple(docs))
                ):
                    return
                await self.hub.desired.wait_newer(self.hub.desired.version)

    def write_state(self, *accounts: str) -> None:
        self._put("configmaps", "mail-state", {"data": {"mailserver.yaml": state_yaml(*accounts)}})

    def write_passwords(self, text: str) -> None:
        self.last_passwords = text
        self._put("secrets", "mail-passwords", {"stringData": {"passwords.yaml": text}})

    def _put(self, plural: str, name: str, body: dict[str, object]) -> None:
        store = self.api.server.store
        full = {"metadata": {"name": name}, **body}
        if (plural, NS, name) in store.objects:
            store.update(plural, NS, name, full)
        else:
            store.create(plural, NS, full)
        self.written += 1


def kube_settings(api: KubeApi, **overrides: object) -> KubeSettings:
    values: dict[str, object] = {
        "kubeconfig": api.kubeconfig,
        "stall_timeout": 1.0,  # above the test server's bookmark interval (0.2 s)...
        "watch_timeout": 30,
        "watch_bookmarks": "always",  # ...so they are asked for from the first watch
        "backoff_initial": 0.02,
        "backoff_max": 0.1,
        **overrides,
    }
    return KubeSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def rig(kube_api: KubeApi) -> AsyncIterator[Rig]:
    settings = kube_settings(kube_api)
    client = KubeClient(load_cluster_config(settings))
    hub, status = Hub(), StatusRegistry()
    specs = [
        SourceSettings(kind="configmap", name="mail-state"),
        SourceSettings(kind="secret", name="mail-passwords"),
    ]
    sources = [KubeSource(s, client, settings, hub, status) for s in specs]
    merge = Merge([s.key for s in sources], hub, status, LogEventSink(), load)
    r = Rig(kube_api, hub, status, Recorder(hub), sources, merge)
    r.write_state("a@x.org")
    r.write_passwords("a@x.org: {password: one}\n")
    tasks = start(*sources, merge)
    await r.rec.until({"a@x.org"})
    try:
        yield r
    finally:
        await stop(tasks)
        r.rec.stop()
        await client.close()


def merges(result: str) -> float:
    return REGISTRY.get_sample_value("dms_agent_sources_merges_total", {"result": result}) or 0.0


def assert_nothing_twice(r: Rig) -> None:
    gens = [d.generation for d in r.rec.published]
    assert len(gens) == len(set(gens)), gens


async def _chaos_round(
    r: Rig, fault: Callable[[], Awaitable[object]], n: int = 3, tag: str = "n"
) -> None:
    """Write, inject the fault, write again; the final state must be the last written.
    Every write is new content, so any repeated generation is a state published twice."""
    for i in range(n):
        await r.api.server.wait_streams(2)
        await fault()
        r.write_state("a@x.org", f"{tag}{i}@x.org")
        r.write_passwords(f"a@x.org: {{password: {tag}{i}}}\n")
    await r.settled({"a@x.org", f"{tag}{n - 1}@x.org"})
    version = r.hub.desired.version
    # a later write as the marker: once it is out, whatever the fault left behind has been seen
    r.write_state("a@x.org", f"{tag}-marker@x.org")
    await r.settled({"a@x.org", f"{tag}-marker@x.org"})
    assert r.hub.desired.version == version + 1  # nothing published between the two
    assert_nothing_twice(r)


async def test_updates_arrive_through_the_watch(rig: Rig) -> None:
    rig.write_state("a@x.org", "b@x.org")
    await rig.rec.until({"a@x.org", "b@x.org"})
    assert rig.rec.accounts() == [{"a@x.org"}, {"a@x.org", "b@x.org"}]
    lists = [p for m, p in rig.api.server.requests if "watch" not in p and m == "GET"]
    assert len(lists) == 2  # one list per source, then only watches


async def test_server_restart_mid_stream(rig: Rig) -> None:
    async def restart() -> None:
        await rig.api.server.restart(down_for=0.05)

    await _chaos_round(rig, restart)
    assert sum(s.restarts.get("error", 0) for s in rig.sources) >= 2


async def test_dropped_connections(rig: Rig) -> None:
    async def drop() -> None:
        rig.api.server.drop_streams(abrupt=True)

    async def end() -> None:
        rig.api.server.drop_streams(abrupt=False)

    await _chaos_round(rig, drop, 2, "abrupt")
    await _chaos_round(rig, end, 2, "clean")


async def test_stalled_stream_is_restarted_and_reported(rig: Rig) -> None:
    src = rig.sources[0]
    await eventually(  # bookmarks arrive (every 0.2 s here) until the stall
        lambda: REGISTRY.get_sample_value(
            "dms_agent_sources_last_bookmark_timestamp_seconds", {"source": src.key}
        )
    )
    await rig.api.server.wait_streams(2)
    rig.api.server.stall_streams()
    rig.write_state("a@x.org", "late@x.org")  # held back by the stalled stream
    await rig.rec.until({"a@x.org", "late@x.org"}, timeout=5)
    src = rig.sources[0]
    assert src.restarts.get("stalled", 0) >= 1
    assert "stalled" in str(rig.status.component(src.name).details.get("restarts"))
    assert_nothing_twice(rig)
    labels = {"source": src.key, "reason": "stalled"}
    assert REGISTRY.get_sample_value("dms_agent_sources_watch_restarts_total", labels)
    generation = REGISTRY.get_sample_value("dms_agent_sources_desired_generation")
    assert generation is not None and generation >= 2


async def test_410_storm(rig: Rig) -> None:
    async def storm() -> None:
        rig.api.server.force_410(6)
        rig.api.server.drop_streams(abrupt=False)

    await _chaos_round(rig, storm)
    assert sum(s.restarts.get("expired", 0) for s in rig.sources) >= 3


async def test_error_status_for_a_version_lists_again(rig: Rig) -> None:
    """A watch error that comes back for the same version (a real API server without watch
    cache: 500 "PrevKv=nil" after compaction) is left by listing again, not by retrying it."""
    server = rig.api.server
    src = rig.sources[0]
    await server.wait_streams(2)
    server.poison_versions()
    server.drop_streams(abrupt=False)
    await eventually(lambda: src.restarts.get("error", 0) >= 1)
    rig.write_state("a@x.org", "after@x.org")  # only a new list can see it
    await rig.rec.until({"a@x.org", "after@x.org"})
    assert_nothing_twice(rig)


async def test_compaction_while_disconnected(rig: Rig) -> None:
    server = rig.api.server
    ended = [sum(s.restarts.values()) for s in rig.sources]
    await server.stop()
    rig.write_state("a@x.org", "during@x.org")
    rig.write_passwords("a@x.org: {password: during}\n")
    server.store.compact()
    # both sources have seen their watch end (they are disconnected, not just idle)
    await eventually(
        lambda: all(sum(s.restarts.values()) > n for s, n in zip(rig.sources, ended, strict=True))
    )
    await server.start()
    await rig.rec.until({"a@x.org", "during@x.org"})
    assert sum(s.restarts.get("expired", 0) for s in rig.sources) >= 1
    assert_nothing_twice(rig)


async def test_token_rotation(rig: Rig) -> None:
    async def rotate() -> None:
        rig.api.rotate_token()
        rig.api.server.drop_streams(abrupt=False)  # reconnects need the new token

    await _chaos_round(rig, rotate)
    assert all(s.restarts.get("unauthorized", 0) == 0 for s in rig.sources)


async def test_deleted_object_is_absent_not_empty(rig: Rig) -> None:
    rig.api.server.store.delete("secrets", NS, "mail-passwords")
    merge = rig.status.component("sources merge")
    await eventually(lambda: "absent" in merge.message)
    state, waited = rig.sources[0].key, merges("waiting")
    rig.write_state("a@x.org", "b@x.org")  # not published while the Secret is unknown
    # the new state has reached the board and the merge has considered it since
    await eventually(
        lambda: (
            any("b@x.org" in d.text for d in snapshots(rig.hub)[state].documents or ())
            and merges("waiting") > waited
        )
    )
    assert rig.rec.accounts() == [{"a@x.org"}]
    rig.write_passwords("a@x.org: {password: back}\n")
    await rig.rec.until({"a@x.org", "b@x.org"})


async def test_label_selector_source(kube_api: KubeApi) -> None:
    settings = kube_settings(kube_api)
    client = KubeClient(load_cluster_config(settings))
    hub, status = Hub(), StatusRegistry()
    spec = SourceSettings(kind="configmap", selector="dms-agent/state=true")
    source = KubeSource(spec, client, settings, hub, status)
    rec = Recorder(hub)
    store = kube_api.server.store
    for name, acct in (("s1", "a@x.org"), ("s2", "b@x.org")):
        body = {"data": {"mailserver.yaml": state_yaml(acct)}}
        meta = {"name": name, "labels": {"dms-agent/state": "true"}}
        store.create("configmaps", NS, {"metadata": meta, **body})
    store.create("configmaps", NS, {"metadata": {"name": "other"}, "data": {"x.yaml": "{}"}})
    tasks = start(source, Merge([source.key], hub, status, LogEventSink(), load))
    try:
        await rec.until({"a@x.org", "b@x.org"})
        store.delete("configmaps", NS, "s2")
        await rec.until({"a@x.org"})
    finally:
        await stop(tasks)
        rec.stop()
        await client.close()


async def test_large_secret_through_the_watch(rig: Rig) -> None:
    """A big Secret is one watch line of over 1 MB (base64 + JSON): far above aiohttp's default
    line limit of 128 KiB (kubernetes_asyncio raises its buffer; so does this client)."""
    lines = "".join(
        f"user{i:05d}@x.org: {{hash: '{{SHA512-CRYPT}}$6${'x' * 90}'}}\n" for i in range(7000)
    )
    assert len(lines) > 700_000
    rig.write_passwords(lines)
    await rig.settled({"a@x.org"})


async def test_named_sources_ask_for_their_object_only(rig: Rig) -> None:
    """RBAC with resourceNames authorises list/watch only when the request names the object
    (fieldSelector=metadata.name=<name>): every list and watch of a named source must carry it,
    and a neighbouring object is never read."""
    rig.api.server.store.create(
        "secrets", NS, {"metadata": {"name": "unrelated"}, "stringData": {"x.yaml": "a: b\n"}}
    )
    rig.write_state("a@x.org", "c@x.org")
    await rig.rec.until({"a@x.org", "c@x.org"})
    gets = [unquote(p) for m, p in rig.api.server.requests if m == "GET" and "/namespaces/" in p]
    for plural, name in (("configmaps", "mail-state"), ("secrets", "mail-passwords")):
        mine = [p for p in gets if f"/{plural}?" in p]
        assert mine and any("watch=true" in p for p in mine)
        assert all(f"fieldSelector=metadata.name={name}" in p for p in mine), mine
    docs = [d.origin for s in rig.sources for d in (snapshots(rig.hub)[s.key].documents or ())]
    assert docs and not [o for o in docs if "unrelated" in o]


def record_backoffs(monkeypatch: pytest.MonkeyPatch, src: KubeSource) -> list[tuple[int, float]]:
    """(consecutive failures, delay chosen) of every backoff the source waits."""
    chosen: list[tuple[int, float]] = []
    original = src._backoff

    def backoff(failures: int) -> float:
        delay = original(failures)
        chosen.append((failures, delay))
        return delay

    monkeypatch.setattr(src, "_backoff", backoff)
    return chosen


def record_delays(monkeypatch: pytest.MonkeyPatch, src: KubeSource) -> list[tuple[str, float]]:
    """(reason, wait chosen) of every restart that is not the server's own end."""
    chosen: list[tuple[str, float]] = []
    original = src._delay

    def delay(reason: str, failures: int) -> float:
        chosen.append((reason, original(reason, failures)))
        return chosen[-1][1]

    monkeypatch.setattr(src, "_delay", delay)
    return chosen


@asynccontextmanager
async def lone_source(
    api: KubeApi, settings: KubeSettings
) -> AsyncIterator[tuple[KubeSource, Recorder]]:
    """One ConfigMap source (``mail-state``, first holding a@x.org) and its merge, running."""
    write_lone_state(api, "a@x.org")
    client = KubeClient(load_cluster_config(settings))
    hub, status = Hub(), StatusRegistry()
    spec = SourceSettings(kind="configmap", name="mail-state")
    src = KubeSource(spec, client, settings, hub, status)
    rec = Recorder(hub)
    tasks = start(src, Merge([src.key], hub, status, LogEventSink(), load))
    try:
        await rec.until({"a@x.org"})
        yield src, rec
    finally:
        await stop(tasks)
        rec.stop()
        await client.close()


def write_lone_state(api: KubeApi, account: str) -> None:
    store = api.server.store
    body = {"metadata": {"name": "mail-state"}, "data": {"mailserver.yaml": state_yaml(account)}}
    if ("configmaps", NS, "mail-state") in store.objects:
        store.update("configmaps", NS, "mail-state", body)
    else:
        store.create("configmaps", NS, body)


async def test_unreachable_server_is_retried_without_a_growing_backoff(
    kube_api: KubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing listening (an API server restarting): connecting again costs it nothing, so
    the wait stays at most backoffInitial however long the outage, and the source is back
    as soon as the server is; other failures in a row still back off (test above)."""
    settings = kube_settings(kube_api, backoff_initial=0.05, backoff_max=30.0)
    async with lone_source(kube_api, settings) as (src, rec):
        delays = record_delays(monkeypatch, src)
        await kube_api.server.stop()
        await eventually(lambda: len(delays) >= 8, 10)
        refused = delays[1:]  # the first is the cut stream itself
        assert all(reason == "error" and d <= 0.05 for reason, d in refused), delays
        write_lone_state(kube_api, "b@x.org")
        await kube_api.server.start()
        await rec.until({"b@x.org"})


async def test_endless_410_backs_off(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server answering 410 forever must not be hammered with list+watch: the first 410
    lists again at once, every further one in a row waits, longer each time up to backoffMax."""
    server = rig.api.server
    src = rig.sources[0]
    chosen = record_backoffs(monkeypatch, src)
    server.force_410(10_000)
    server.drop_streams(abrupt=False)
    await eventually(lambda: src.restarts.get("expired", 0) >= 6)
    failures = [f for f, _ in chosen]
    assert failures[:4] == [2, 3, 4, 5], failures  # the first 410 (failures 1) waits not
    cap = src.settings.backoff_max
    assert all(0 < d <= cap for _, d in chosen), chosen
    assert max(d for _, d in chosen) >= cap / 2  # grown to the cap (jitter: half to whole)
    server.force_410(0)
    rig.write_state("a@x.org", "after@x.org")
    await rig.rec.until({"a@x.org", "after@x.org"})


async def test_restarted_merge_does_not_publish_the_state_in_force(rig: Rig) -> None:
    from agent.sources.base import snapshots as board_of

    again = Merge([s.key for s in rig.sources], rig.hub, rig.status, LogEventSink(), load)
    published = await again.consider(board_of(rig.hub))
    assert not published and len(rig.rec.published) == 1


@pytest.fixture
async def quiet_api(tmp_path: Path) -> AsyncIterator[KubeApi]:
    """A test API server that sends no bookmark (as a real one on a quiet watch: the first may
    come only after ~2 minutes)."""
    api = await start_kube_api(tmp_path, bookmark_interval=3600)
    try:
        yield api
    finally:
        await api.server.stop()


async def test_quiet_watch_is_ended_by_the_server_and_never_taken_for_stalled(
    quiet_api: KubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No event and no bookmark: the server's own end of each watch (watchTimeout, below
    stallTimeout) keeps a quiet healthy watch from being restarted as stalled, and such ends
    do not count as failures (a later outage is met with the first backoff, not a grown one).
    A real stall is still caught, and the update held back by it arrives."""
    settings = kube_settings(quiet_api, watch_timeout=1, stall_timeout=2.5)
    async with lone_source(quiet_api, settings) as (src, rec):
        chosen = record_backoffs(monkeypatch, src)
        await eventually(lambda: src.restarts.get("end", 0) >= 4, 15)
        assert src.restarts.get("stalled", 0) == 0, src.restarts
        server = quiet_api.server
        await server.restart(down_for=0.05)
        seen = len(server.requests)
        await eventually(lambda: bool(chosen), 10)
        assert chosen[0][0] == 1, chosen  # the outage is the first failure in a row
        # the server registers a watch's stream in the same step as it logs the request
        await eventually(lambda: any("watch=true" in p for _, p in server.requests[seen:]), 10)
        delays = record_delays(monkeypatch, src)
        server.stall_streams()
        write_lone_state(quiet_api, "b@x.org")  # held back by the stalled stream
        await rec.until({"b@x.org"}, timeout=15)
        assert src.restarts.get("stalled", 0) >= 1, src.restarts
        assert ("stalled", 0.0) in delays  # re-watched at once
        # a re-watch whose answer never comes, not even its head (a request sent on a dead
        # pooled connection), is caught the same way
        stalled = src.restarts["stalled"]
        server.hold_watch_heads = True
        server.stall_streams()
        write_lone_state(quiet_api, "c@x.org")
        await eventually(lambda: src.restarts["stalled"] >= stalled + 2, 15)
        server.hold_watch_heads = False
        await rec.until({"c@x.org"}, timeout=15)


def test_default_timeouts_catch_a_stall_within_90_s_and_leave_quiet_watches_alone() -> None:
    """The server ends a watch after watchTimeout; only a watch silent for longer than
    stallTimeout is taken as stalled. A stall is caught within stallTimeout and the watch
    opened again after at most one backoff step (the first failure in a row)."""
    d = KubeSettings()
    assert d.watch_timeout + 5 <= d.stall_timeout  # margin for a slow server's end
    first_backoff = min(d.backoff_max, d.backoff_initial * 2)  # _backoff(1), before jitter
    assert d.stall_timeout + first_backoff <= 90


@pytest.mark.parametrize(
    ("mode", "before", "after"),
    [("auto", False, True), ("always", True, True), ("never", False, False)],
)
async def test_bookmarks_are_asked_for_once_a_rewatch_met_410(
    kube_api: KubeApi, mode: str, before: bool, after: bool
) -> None:
    """Bookmarks wake the agent on every watch; by default (auto) they are asked for only once a
    re-watch was refused with 410 (the server's history moved past the source's version:
    bookmarks then keep it fresh) and from then on they arrive; always and never as said."""
    settings = kube_settings(kube_api, watch_timeout=1, stall_timeout=3, watch_bookmarks=mode)
    server = kube_api.server

    def watches(since: int) -> list[str]:
        return [p for _, p in server.requests[since:] if "watch=true" in p]

    async with lone_source(kube_api, settings) as (src, _rec):
        await eventually(lambda: src.restarts.get("end", 0) >= 2, 10)
        assert {"allowWatchBookmarks=true" in p for p in watches(0)} == {before}
        server.force_410(1)
        server.drop_streams(abrupt=False)
        await eventually(lambda: src.restarts.get("expired", 0) >= 1, 10)
        seen = len(server.requests)
        await eventually(lambda: len(watches(seen)) >= 2, 10)
        assert {"allowWatchBookmarks=true" in p for p in watches(seen)} == {after}
        if after:  # and they come
            got = bookmarks(src)
            await eventually(lambda: bookmarks(src) > got, 10)


def bookmarks(src: KubeSource) -> float:
    labels = {"source": src.key, "type": "BOOKMARK"}
    return REGISTRY.get_sample_value("dms_agent_sources_events_received_total", labels) or 0.0
