"""Faults a real kube-apiserver + etcd make, met by the agent as it runs in the pod (the chart's
RBAC, a TokenRequest token): the API server SIGKILLed mid-watch, etcd compacted past the
agent's resourceVersion (410 -> list again), a rotated token. No update may be missed."""

from __future__ import annotations

from tests.kube_real.agent_rig import (
    ALICE,
    BOB,
    CAROL,
    PodRig,
    RunningAgent,
    applied,
    write_state,
)
from tests.kube_real.cluster import KubeCluster
from tests.kube_real.pod import collection
from tests.kube_support import eventually

A, AB, ABC = set(ALICE), {*ALICE, *BOB}, {*ALICE, *BOB, *CAROL}


async def watching(run: RunningAgent) -> None:
    """Both sources have an open watch."""
    for kind in ("configmap", "secret"):
        await eventually(lambda k=kind: run.source_status(k).get("message") == "watching", 10)


async def only_restart_gap_denials(run: RunningAgent) -> None:
    """A restarted API server listens before its RBAC caches are filled: a request in that
    gap is refused (403), as in any cluster. The agent backs off and watches again; nothing
    but the re-opened watches may have met a 403."""
    await watching(run)
    for line in run.denied_lines():
        assert "cannot watch" in line or "cannot list" in line, line


def restarts(run: RunningAgent) -> dict[str, int]:
    details = run.source_status("configmap").get("details", {})
    found: dict[str, int] = details.get("restarts", {})
    return found


async def test_real_apiserver_sigkilled_mid_watch_agent_resumes_and_misses_nothing(
    kube_real: KubeCluster,
    kube_ns: str,
    pod_rig: PodRig,
) -> None:
    pod = pod_rig.deploy()
    async with pod_rig.run(pod) as run:
        await applied(run, A)
        await watching(run)
        adds = len(run.setup_calls("add"))
        assert run.denied_lines() == []
        kube_real.kill_apiserver()
        await kube_real.apiserver.restart_async()
        write_state(pod, {**ALICE, **BOB})  # at once, before the agent is back
        await applied(run, AB)
        await eventually(lambda: len(run.setup_calls("add")) == adds + 1, 10)
        assert sum(restarts(run).values()) >= 1  # the watch did break and resume
        await only_restart_gap_denials(run)


async def test_real_etcd_compacted_past_agents_version_gives_410_and_a_relist(
    kube_real: KubeCluster,
    kube_ns: str,
    pod_rig: PodRig,
) -> None:
    """The agent talks to a second API server without a watch cache, so its watches read
    etcd itself: while that server is down, an update is written (through the first) and etcd
    compacted; back, the agent's version is gone from etcd's history -> 410 -> list."""
    pod = pod_rig.deploy()
    direct = kube_real.extra_apiserver("--watch-cache=false")
    try:
        async with pod_rig.run(pod, port=direct.port) as run:
            await applied(run, A)
            await watching(run)
            direct.kill()
            write_state(pod, {**ALICE, **BOB})
            # one more write, so etcd's history starts past the agent's version + 1: a watch
            # from there is refused (410). Exactly at +1, etcd would send the change with its
            # previous value compacted away, and the API server answers 500 (PrevKv=nil),
            # which the agent meets by listing again (tests/test_kube_sources_api.py).
            pod.put("ConfigMap", "filler", {"data": {"k": "v"}})
            kube_real.compact_etcd()
            await direct.restart_async()
            await applied(run, AB)
            assert restarts(run).get("expired", 0) >= 1, restarts(run)
            await only_restart_gap_denials(run)
    finally:
        direct.stop()


async def test_real_apiserver_rotated_token_is_picked_up_without_restart(
    kube_real: KubeCluster,
    kube_ns: str,
    pod_rig: PodRig,
) -> None:
    """The ServiceAccount is made anew, so every token of the old one is void (the server
    answers 401 to it); the new TokenRequest token replaces the file, as kubelet does."""
    pod = pod_rig.deploy()
    # watches end every 2 s: every new request shows which token the agent now sends
    async with pod_rig.run(pod, watchTimeout=2) as run:
        await applied(run, A)
        old = pod.token
        accounts = collection("ServiceAccount", kube_ns)
        kube_real.admin.delete(f"{accounts}/{pod.service_account}")
        kube_real.admin.post(accounts, {"metadata": {"name": pod.service_account}})
        pod.write_token(pod.new_token())
        own = f"{collection('ConfigMap', kube_ns)}/{pod.source_names()['configmap']}"
        await eventually(lambda: kube_real.as_token(old).status_of("GET", own) == 401, 10)
        assert kube_real.as_token(pod.token).status_of("GET", own) == 200

        write_state(pod, {**ALICE, **BOB})
        await applied(run, AB)
        # the watches opened after the rotation see the next edit too
        write_state(pod, {**ALICE, **BOB, **CAROL})
        await applied(run, ABC)
        assert run.denied_lines() == []
