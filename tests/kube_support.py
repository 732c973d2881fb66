"""Helpers for the kube/sources tests: a kubelet atomic writer, a small state loader, and a
recorder of what the merge publishes.

The loader here only stands in until the real one (agent.mailstate.load) is merged: it reads
``accounts:`` from ``*.yaml`` state documents, refuses YAML errors and an account declared in two
documents (naming both origins), as the real one's contract says.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from agent.errors import InvalidDocument, LocatedError
from agent.hub import Hub
from agent.mailstate.model import Account, Desired, MailState
from agent.sources.document import SourceDocument


def kubelet_write(mount: Path, files: dict[str, str]) -> None:
    """kubelet's atomic writer, step by step: a new timestamped folder with the files,
    ``..data_tmp`` -> that folder, renamed over ``..data``, visible symlinks for new names,
    then the old folder removed."""
    mount.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()) + str(time.monotonic_ns())
    new = mount / stamp
    new.mkdir()
    for name, text in files.items():
        (new / name).write_text(text)
    data = mount / "..data"
    old = os.readlink(data) if data.is_symlink() else None
    tmp = mount / "..data_tmp"
    os.symlink(stamp, tmp)
    os.rename(tmp, data)
    for name in files:
        link = mount / name
        if not link.is_symlink():
            os.symlink(f"..data/{name}", link)
    for entry in mount.iterdir():  # names no longer in the object
        if not entry.name.startswith(".") and entry.name not in files:
            entry.unlink()
    if old:
        for f in (mount / old).iterdir():
            f.unlink()
        (mount / old).rmdir()


def load(docs: Sequence[SourceDocument]) -> Desired:
    state = MailState()
    errors: list[LocatedError] = []
    for doc in docs:
        if not doc.name.endswith(".yaml"):
            continue
        try:
            body: Any = yaml.safe_load(doc.text) or {}
        except yaml.YAMLError as exc:
            errors.append(LocatedError(doc.origin, None, "", f"YAML: {exc}"))
            continue
        for address in (body.get("accounts") or {}) if isinstance(body, dict) else {}:
            if address in state.accounts:
                errors.append(
                    LocatedError(
                        doc.origin,
                        None,
                        f"accounts.{address}",
                        f"also declared in {state.origins[address]}",
                    )
                )
            state.accounts[address] = Account(address)
            state.origins[address] = doc.origin
    if errors:
        raise InvalidDocument(errors)
    return Desired(state)


class Recorder:
    """Records every desired state the merge publishes."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.published: list[Desired] = []
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        version = 0
        while True:
            version, value = await self.hub.desired.wait_newer(version)
            self.published.append(value)

    def accounts(self) -> list[set[str]]:
        return [set(d.state.accounts) for d in self.published]

    async def until(self, accounts: set[str], timeout: float = 30.0) -> None:
        """Wait until the latest published state has exactly ``accounts``."""
        async with asyncio.timeout(timeout):
            version = self.hub.desired.version
            while True:
                value = self.hub.desired.value
                if value is not None and set(value.state.accounts) == accounts:
                    break
                version, _ = await self.hub.desired.wait_newer(version)
        await eventually(lambda: any(p is value for p in self.published))  # recorded too

    def stop(self) -> None:
        self._task.cancel()


def state_yaml(*accounts: str) -> str:
    return yaml.safe_dump({"accounts": {a: {} for a in accounts}})


def start(*components: Any) -> list[asyncio.Task[None]]:
    return [asyncio.create_task(c.run(), name=c.name) for c in components]


async def stop(tasks: list[asyncio.Task[None]]) -> None:
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def eventually(check: Any, timeout: float = 30.0, step: float = 0.01) -> None:
    """Poll ``check()`` until true (for conditions no event announces, e.g. a status line).

    The deadline is on the clock, not a count of polls: on a busy CI machine each poll and each
    sleep can take far longer than ``step``, and a counted loop then waits many times ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(step)
