"""API sources against a real kube-apiserver on a quiet watch: the server ends each watch after
``kube.watchTimeout`` (while its bookmarks on a quiet watch come only after ~2 minutes), so a
quiet healthy watch is never restarted as stalled; a connection that goes silent (a relay in
front of the server stops passing bytes) is restarted after ``kube.stallTimeout`` and misses
nothing, also when the re-watch gets no answer either. The timeouts are shortened here to
keep the test short; their ratio is the default's (tests/test_kube_sources_api.py checks the
defaults)."""

from __future__ import annotations

from agent.metrics import REGISTRY
from tests.kube_real.agent_rig import ALICE, BOB, PodRig, RunningAgent, applied, write_state
from tests.kube_real.freezer import FreezingRelay
from tests.kube_support import eventually

METRIC = "dms_agent_sources_watch_restarts_total"


def restarts(run: RunningAgent) -> dict[str, int]:
    """The ConfigMap source's watch restarts by reason (the metric counts every one)."""
    key = f"configmap/{run.pod.namespace}/{run.pod.source_names()['configmap']}"
    return {
        reason: int(REGISTRY.get_sample_value(METRIC, {"source": key, "reason": reason}) or 0)
        for reason in ("end", "stalled", "error", "expired", "unauthorized")
    }


async def test_real_quiet_watch_is_not_taken_for_stalled_and_a_silent_one_is(
    pod_rig: PodRig,
) -> None:
    pod = pod_rig.deploy()
    relay = FreezingRelay(pod_rig.cluster.port)
    await relay.start()
    try:
        kube = {"watchTimeout": 2, "stallTimeout": 4, "requestTimeout": 5}
        async with pod_rig.run(pod, port=relay.port, **kube) as run:
            await applied(run, set(ALICE))
            # quiet: nothing changes; the server ends each watch on time, nothing else happens
            await eventually(lambda: restarts(run)["end"] >= 4, 30)
            assert restarts(run)["stalled"] == 0, restarts(run)
            assert restarts(run)["error"] == 0, restarts(run)

            # both sources' watches go silent, connections open; so does every connection
            # opened meanwhile: the re-watch is not answered either and is given up too
            assert relay.freeze(also_new=True) >= 2
            write_state(pod, {**ALICE, **BOB})  # held back by the silent connections
            await eventually(lambda: restarts(run)["stalled"] >= 1, 30)
            given_up = sum(restarts(run).values())
            await eventually(lambda: sum(restarts(run).values()) > given_up, 30)
            relay.thaw_new()
            await applied(run, {*ALICE, *BOB}, timeout=30)
            assert run.denied_lines() == []
    finally:
        await relay.stop()
