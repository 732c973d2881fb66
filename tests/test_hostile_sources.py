"""Hostile files in a running source: a located error, the source stays up, later updates
still arrive, and no password reaches a log line, an Event or /status."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest

from agent.errors import InvalidDocument
from agent.events import EventType
from agent.hub import Hub
from agent.mailstate.load import desired_from_documents
from agent.settings import SourceSettings
from agent.sources.document import MAX_DOCUMENT_BYTES, read_path
from agent.sources.kube import documents_of
from agent.sources.merge import Merge
from agent.sources.mounted import MountedSource
from agent.status import StatusRegistry
from tests.kube_support import Recorder, eventually, start, stop

STATE = "apiVersion: dms-agent/v1\naccounts:\n{}"


def accounts(*names: str) -> str:
    return STATE.format("".join(f"  {n}: {{}}\n" for n in names))


class Events:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def emit(self, reason: str, message: str, type: EventType = "Normal") -> None:
        self.sent.append(f"{reason} {type} {message}")


def pipeline(hub: Hub, status: StatusRegistry, folder: Path, events: Events) -> list[object]:
    source = MountedSource(folder, False, hub, status, resync=30.0, step_ms=10, watcher="inotify")
    return [source, Merge([source.key], hub, status, events)]


def test_the_size_cap_is_a_setting_with_a_located_error(tmp_path: Path) -> None:
    assert SourceSettings(kind="path", path=tmp_path).max_document_bytes == MAX_DOCUMENT_BYTES
    assert MAX_DOCUMENT_BYTES == 16 * 1024 * 1024
    (tmp_path / "mailserver.yaml").write_text(accounts(*(f"u{i}@x.org" for i in range(10))))
    docs = read_path(tmp_path, limit=64)
    assert docs is not None
    with pytest.raises(InvalidDocument) as info:
        desired_from_documents(docs)
    (err,) = info.value.errors
    assert str(err) == (
        f"{tmp_path}/mailserver.yaml: (document): larger than the 64-byte document size cap "
        "(maxDocumentBytes)"
    )


def test_an_unreadable_file_with_another_name_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "mailserver.yaml").write_text(accounts("a@x.org"))
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\xff\xfe")
    docs = read_path(tmp_path)
    assert docs is not None
    assert set(desired_from_documents(docs).state.accounts) == {"a@x.org"}


def test_api_secret_not_utf8_is_a_located_error_not_an_empty_document() -> None:
    raw = base64.b64encode(b'a@x.org: {password: "hunter2\xff"}\n').decode()
    obj = {"metadata": {"name": "pw", "namespace": "mail"}, "data": {"passwords.yaml": raw}}
    (doc,) = documents_of("secret", obj)
    with pytest.raises(InvalidDocument) as info:
        desired_from_documents([doc])
    assert "secret mail/pw[passwords.yaml]:1: (document): not UTF-8 text" in str(info.value)
    assert "hunter2" not in str(info.value)


async def test_a_non_utf8_file_leaves_the_source_up(tmp_path: Path) -> None:
    """Was: the source component crash-looped and ignored every later update."""
    folder = tmp_path / "state"
    folder.mkdir()
    (folder / "mailserver.yaml").write_text(accounts("a@x.org"))
    hub, status, events = Hub(), StatusRegistry(), Events()
    rec = Recorder(hub)
    tasks = start(*pipeline(hub, status, folder, events))
    try:
        await rec.until({"a@x.org"})
        (folder / "more.yaml").write_bytes(accounts("caf\xe9@x.org").encode("latin-1"))
        merge = status.component("sources merge")
        await eventually(lambda: "rejected" in merge.message)
        assert f"{folder}/more.yaml:3: (document): not UTF-8 text" in merge.details["errors"][0]
        (folder / "more.yaml").write_text(accounts("b@x.org"))
        await rec.until({"a@x.org", "b@x.org"})
        assert not any(t.done() for t in tasks)
    finally:
        await stop(tasks)
        rec.stop()


async def test_a_tagged_password_reaches_no_log_event_or_status(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "state"  # a plain source, not flagged secret (the embedded default)
    folder.mkdir()
    (folder / "mailserver.yaml").write_text(accounts("a@x.org"))
    (folder / "passwords.yaml").write_text('a@x.org: {password: "fine"}\n')
    hub, status, events = Hub(), StatusRegistry(), Events()
    rec = Recorder(hub)
    tasks = start(*pipeline(hub, status, folder, events))
    try:
        with caplog.at_level(logging.DEBUG):
            await rec.until({"a@x.org"})
            (folder / "passwords.yaml").write_text('a@x.org: {password: !!int "hunter2"}\n')
            merge = status.component("sources merge")
            await eventually(lambda: "rejected" in merge.message)
    finally:
        await stop(tasks)
        rec.stop()
    shown = json.dumps(status.snapshot()) + "\n".join(events.sent) + caplog.text
    assert "unsupported tag !!int" in shown
    assert "hunter2" not in shown
