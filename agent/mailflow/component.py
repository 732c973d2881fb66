"""The ``mailflow`` component: follows the mail logs and reads the queue, for /metrics and
/status. It never touches liveness or the verdict: a deferred queue is for people to look at."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.mailflow import logparse
from agent.mailflow.follower import LogFollower, PositionStore
from agent.mailflow.metrics import COLLECTOR, LogFileState, MailflowMetrics
from agent.mailflow.queue import QueueError, snapshot
from agent.status import State

if TYPE_CHECKING:
    from agent.app import AgentContext

log = logging.getLogger("dms_agent.mailflow")

STATE_NAME = "dms-agent-mailflow.json"


class MailflowComponent:
    name = "mailflow"

    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings.mailflow
        self.metrics = MailflowMetrics(self.settings.postfix_exporter_names)
        self.queue_note = "not read yet"
        self.reasons: list[tuple[str, int]] = []

    def state_path(self) -> Path | None:
        if self.settings.state_file is not None:
            return self.settings.state_file
        config_dir = self.ctx.settings.dms.config_dir
        return config_dir / STATE_NAME if config_dir is not None else None

    async def run(self) -> None:
        COLLECTOR.current = self.metrics
        store = await asyncio.to_thread(PositionStore, self.state_path())
        followers = [self._follower(path, store) for path in self.settings.log_files]
        self._publish()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._follow(followers))
                tg.create_task(self._read_queue())
        finally:
            for follower in followers:
                follower.close()

    def _follower(self, path: Path, store: PositionStore) -> LogFollower:
        state = self.metrics.file(str(path))

        def on_line(line: str) -> None:
            self.metrics.observe(logparse.parse(line))

        def on_read(lines: int, behind: int, up: bool) -> None:
            state.lines += lines
            state.behind_bytes = behind
            state.up = up
            if up:
                state.last_read = time.time()

        return LogFollower(path, store, on_line, on_read)

    async def _follow(self, followers: list[LogFollower]) -> None:
        while True:
            for follower in followers:
                await follower.poll()
            self._publish()
            await asyncio.sleep(self.settings.poll_interval)

    async def _read_queue(self) -> None:
        executor = self.ctx.executor
        if self.settings.queue_interval <= 0 or executor is None:
            self.queue_note = (
                "not read: queueInterval is 0"
                if self.settings.queue_interval <= 0
                else "not read: no executor reaches the mailserver (dms.executor.kind: file)"
            )
            return
        while True:
            res = await executor.run(
                self.settings.queue_command, timeout=self.settings.queue_timeout
            )
            if res.ok:
                try:
                    # a big queue is tens of thousands of JSON lines: parsed off the loop
                    snap, self.reasons = await asyncio.to_thread(snapshot, res.stdout)
                except QueueError as exc:
                    self._queue_failed(str(exc))
                else:
                    self.metrics.queue, self.metrics.queue_up = snap, True
                    total = sum(snap.messages.values())
                    self.queue_note = f"{total} queued ({_per_queue(snap.messages)})"
            else:
                why = "timed out" if res.timed_out else f"exit {res.exit_code}"
                last = (res.stderr.strip().splitlines() or [""])[-1][:200]
                self._queue_failed(f"{' '.join(self.settings.queue_command)}: {why} {last}".strip())
            self._publish()
            await asyncio.sleep(self.settings.queue_interval)

    def _queue_failed(self, why: str) -> None:
        if self.metrics.queue_up or self.queue_note == "not read yet":
            log.warning("mail queue not read: %s", why)
        self.metrics.queue_up = False
        self.queue_note = f"not read: {why}"

    def _publish(self) -> None:
        files = {p: _file_dict(s) for p, s in self.metrics.files.items()}
        down = [p for p, s in self.metrics.files.items() if not s.up]
        queue_bad = self.queue_note.startswith("not read: ") and self.metrics.queue is None
        state = (
            State.DEGRADED if down or (queue_bad and self.ctx.executor is not None) else State.OK
        )
        lines = sum(s.lines for s in self.metrics.files.values())
        message = f"{lines} log lines read; queue: {self.queue_note}"
        if down:
            message = f"cannot read {', '.join(down)}; " + message
        self.ctx.status.component(self.name).set(
            state,
            message,
            logs=files,
            queue=self.queue_note,
            deferredReasons=[{"reason": r, "recipients": n} for r, n in self.reasons],
        )


def _per_queue(messages: dict[str, int]) -> str:
    return ", ".join(f"{q} {n}" for q, n in sorted(messages.items())) or "empty"


def _file_dict(state: LogFileState) -> dict[str, Any]:
    return {"readable": state.up, "lines": state.lines, "behindBytes": state.behind_bytes}
