"""tests/kube_api answers every call the agent makes as the real kube-apiserver does.

The same calls go to both servers — the agent's list (field and label selectors), watch with
bookmarks from a list's version, an update and a delete seen on the watch, a watch from a
version older than the history (410 inside the stream), Event create and count patch, Node get,
a missing object, a bad token — and what the agent reads from each answer (status codes, kinds,
Status bodies' code and reason, types and order of watch events, fields of objects) must be
the same. kube_api stays for what a bare API server cannot do (exec, injected faults); this
test keeps it honest for the rest."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from tests.kube_api.fixtures import KubeApi
from tests.kube_real.cluster import KubeCluster

Profile = dict[str, Any]
LABEL = {"dms-agent/state": "true"}


@dataclass
class Wire:
    base: str
    token: str
    ssl: ssl.SSLContext | bool
    session: aiohttp.ClientSession

    async def call(
        self, method: str, path: str, body: Any = None, ctype: str = "application/json"
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": ctype}
        data = None if body is None else json.dumps(body)
        async with self.session.request(
            method, self.base + path, data=data, headers=headers, ssl=self.ssl
        ) as resp:
            raw = await resp.read()
            return resp.status, json.loads(raw) if raw else None

    async def watch(self, path: str, query: dict[str, str], until: int) -> list[dict[str, Any]]:
        """Watch events until ``until`` events other than bookmarks came, or the stream ended."""
        headers = {"Authorization": f"Bearer {self.token}"}
        events: list[dict[str, Any]] = []
        async with self.session.get(
            self.base + path, params=query, headers=headers, ssl=self.ssl
        ) as resp:
            assert resp.status == 200, await resp.text()
            async with asyncio.timeout(30):
                async for line in resp.content:
                    if line.strip():
                        events.append(json.loads(line))
                    if sum(e["type"] != "BOOKMARK" for e in events) >= until:
                        break
        return events


def status_profile(code: int, body: Any) -> Profile:
    """What the agent reads of an error answer (KubeApiError: code, reason, message)."""
    return {
        "http": code,
        "kind": body.get("kind"),
        "apiVersion": body.get("apiVersion"),
        "status": body.get("status"),
        "reason": body.get("reason"),
        "code": body.get("code"),
        "message is text": isinstance(body.get("message"), str) and bool(body.get("message")),
        "details.kind": (body.get("details") or {}).get("kind"),
    }


def object_profile(obj: dict[str, Any]) -> Profile:
    meta = obj.get("metadata") or {}
    return {
        "kind": obj.get("kind"),
        "apiVersion": obj.get("apiVersion"),
        "name": meta.get("name"),
        "resourceVersion is a string": isinstance(meta.get("resourceVersion"), str),
        "labels": meta.get("labels"),
        "data": obj.get("data"),
        "stringData": obj.get("stringData"),
    }


def event_profile(event: dict[str, Any]) -> Profile:
    obj = event["object"]
    if event["type"] == "BOOKMARK":
        meta = obj["metadata"]
        return {"type": "BOOKMARK", "kind": obj.get("kind"), "rv": type(meta["resourceVersion"])}
    if event["type"] == "ERROR":
        return {"type": "ERROR", **status_profile(200, obj)}
    return {"type": event["type"], **object_profile(obj)}


async def conversation(wire: Wire, ns: str, compact: Callable[[], Awaitable[Wire]]) -> Profile:
    """Every call the agent makes, in its order; the profile of each answer."""
    p: Profile = {}
    cms, secrets = f"/api/v1/namespaces/{ns}/configmaps", f"/api/v1/namespaces/{ns}/secrets"
    state = {"metadata": {"name": "state", "labels": LABEL}, "data": {"a.yaml": "x: 1\n"}}
    code, body = await wire.call("POST", cms, state)
    p["create configmap"] = (code, object_profile(body))
    secret = {"metadata": {"name": "pw"}, "stringData": {"passwords.yaml": "a: b\n"}}
    code, body = await wire.call("POST", secrets, secret)
    p["create secret"] = (code, object_profile(body))

    by_name = f"{cms}?fieldSelector=metadata.name%3Dstate"
    code, listed = await wire.call("GET", by_name)
    p["list by name"] = (
        code,
        listed["kind"],
        listed["apiVersion"],
        isinstance(listed["metadata"]["resourceVersion"], str),
        [object_profile(i) for i in listed["items"]],
    )
    code, body = await wire.call("GET", f"{secrets}?fieldSelector=metadata.name%3Dpw")
    p["list secret by name"] = (code, body["kind"], [object_profile(i) for i in body["items"]])
    code, body = await wire.call("GET", f"{cms}?labelSelector=dms-agent%2Fstate%3Dtrue")
    p["list by label"] = (code, [i["metadata"]["name"] for i in body["items"]])
    code, body = await wire.call("GET", f"{cms}?fieldSelector=metadata.name%3Dnone")
    p["list matching nothing"] = (code, body["items"])
    code, body = await wire.call("GET", f"{cms}/none")
    p["get missing"] = status_profile(code, body)

    # watch from the list's version: an update, then the delete, in order
    query = {
        "fieldSelector": "metadata.name=state",
        "watch": "true",
        "allowWatchBookmarks": "true",
        "timeoutSeconds": "10",
        "resourceVersion": listed["metadata"]["resourceVersion"],
    }
    watching = asyncio.create_task(wire.watch(cms, query, until=2))
    await asyncio.sleep(0.5)  # let the watch open first (its version keeps this race-free)
    updated = {**state, "data": {"a.yaml": "x: 2\n"}}
    code, body = await wire.call("PUT", f"{cms}/state", updated)
    p["update"] = (code, object_profile(body))
    code, body = await wire.call("DELETE", f"{cms}/state")
    p["delete"] = (code, body.get("kind"))
    events = await watching
    p["watch"] = [event_profile(e) for e in events if e["type"] != "BOOKMARK"]

    # a bookmark: the real server sends one ~2 s before timeoutSeconds, once its version of
    # the resource moved past the watch's (here: another ConfigMap written)
    code, body = await wire.call("GET", cms)
    quiet = {**query, "timeoutSeconds": "4", "resourceVersion": body["metadata"]["resourceVersion"]}
    watching = asyncio.create_task(wire.watch(cms, quiet, until=1))
    await asyncio.sleep(0.5)
    await wire.call("POST", cms, {"metadata": {"name": "other"}})
    p["bookmark"] = [event_profile(e) for e in await watching][:1]

    # a version older than the history: HTTP 200, then one ERROR event with a 410 Status
    too_old = await compact()
    events = await too_old.watch(cms, {**query, "resourceVersion": "1"}, until=1)
    p["watch too old"] = [event_profile(e) for e in events]

    # Events: created, then a repeat patches the count (strategic merge patch)
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "state.1", "namespace": ns},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "namespace": ns,
            "name": "state",
        },
        "reason": "Invalid",
        "message": "m",
        "type": "Warning",
        "count": 1,
        "firstTimestamp": "2026-01-01T00:00:00Z",
        "lastTimestamp": "2026-01-01T00:00:00Z",
        "source": {"component": "dms-agent"},
    }
    events_path = f"/api/v1/namespaces/{ns}/events"
    code, body = await wire.call("POST", events_path, event)
    p["event create"] = (code, body["kind"], body["count"], body["involvedObject"]["name"])
    patch = {"count": 2, "lastTimestamp": "2026-01-01T00:01:00Z"}
    smp = "application/strategic-merge-patch+json"
    code, body = await wire.call("PATCH", f"{events_path}/state.1", patch, smp)
    p["event patch"] = (code, body["count"], body["lastTimestamp"], body["reason"])

    code, body = await wire.call("GET", "/api/v1/nodes/none")
    p["node missing"] = status_profile(code, body)
    bad = Wire(wire.base, "not-a-token", wire.ssl, wire.session)
    code, body = await bad.call("GET", by_name)
    p["bad token"] = status_profile(code, body)
    return p


async def test_kube_api_answers_the_agents_calls_as_the_real_apiserver_does(
    kube_real: KubeCluster, kube_ns: str, kube_api: KubeApi
) -> None:
    real_ssl = ssl.create_default_context(cafile=str(kube_real.ca_file))
    async with aiohttp.ClientSession() as session:
        real_wire = Wire(kube_real.url, kube_real.admin_token, real_ssl, session)
        fake_wire = Wire(kube_api.server.url, kube_api.server.token, False, session)
        # The real server's watch cache serves any version it still holds, and it holds all
        # since it started: a too-old version is met on a second API server without a watch
        # cache, whose watches read etcd itself, after etcd was compacted.
        direct = kube_real.extra_apiserver("--watch-cache=false")
        try:

            async def compact_real() -> Wire:
                kube_real.compact_etcd()
                return Wire(direct.url, kube_real.admin_token, real_ssl, session)

            async def compact_fake() -> Wire:
                kube_api.server.store.compact()
                return fake_wire

            real = await conversation(real_wire, kube_ns, compact_real)
            fake = await conversation(fake_wire, kube_ns, compact_fake)
        finally:
            direct.stop()
    differences = {k: (real[k], fake.get(k)) for k in real if real[k] != fake.get(k)}
    assert not differences, json.dumps(differences, indent=1, default=str)
