"""Where the merge loads a state: a small one on the event loop (a worker thread's hand-offs
would cost an update more than its ~2 ms parse), a big one in a worker thread, so the loop
keeps serving while it parses."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from agent.hub import Hub
from agent.mailstate.load import desired_from_documents
from agent.mailstate.model import Desired
from agent.sources.document import SourceDocument, SourceSnapshot
from agent.sources.merge import INLINE_CHARS, Merge
from agent.status import StatusRegistry
from tests.checks_support import RecordingEvents
from tests.kube_support import state_yaml


async def test_a_small_state_loads_on_the_loop_and_a_big_one_in_a_thread() -> None:
    threads: list[threading.Thread] = []

    def loader(docs: Sequence[SourceDocument]) -> Desired:
        threads.append(threading.current_thread())
        return desired_from_documents(docs)

    merge = Merge(["files"], Hub(), StatusRegistry(), RecordingEvents(), loader)
    small = "apiVersion: dms-agent/v1\n" + state_yaml("a@x.org")
    names = [f"user{i}@x.org" for i in range(INLINE_CHARS // 20)]
    big = "apiVersion: dms-agent/v1\n" + state_yaml(*names)
    assert len(small) <= INLINE_CHARS < len(big)
    for text in (small, big):
        docs = (SourceDocument("/s/a.yaml", "a.yaml", text),)
        assert await merge.consider({"files": SourceSnapshot("files", docs)})
    assert threads[0] is threading.main_thread()
    assert threads[1] is not threading.main_thread()
    assert len(merge.hub.desired.value.state.accounts) == len(names)
