"""A failed `setup` command is reported with what DMS said that matters — its ERROR lines, not
only the last one ("Aborting") — without colours and never with a secret, alike in /status
(the pass report), the log and the Event."""

from __future__ import annotations

import logging

import pytest

from agent.executor import LocalExecutor, Result
from agent.mailstate.model import Account, Desired, MailState, PasswordIntent, Secret
from agent.reconcile.apply import safe_message
from agent.reconcile.reconciler import Engine
from tests.reconcile_rig import DmsRig, fault_script


class Events:
    def __init__(self) -> None:
        self.emitted: list[tuple[str, str, str]] = []

    def emit(self, reason: str, message: str, type: str = "Normal") -> None:
        self.emitted.append((reason, message, type))


def one_account(restrict: frozenset[str], password: str = "pw-b") -> Desired:
    accounts = {"b@x.org": Account("b@x.org", None, restrict)}  # type: ignore[arg-type]
    passwords = {"b@x.org": PasswordIntent("plain", Secret(password))}
    return Desired(MailState(accounts=accounts, passwords=passwords))


async def test_dms_error_lines_reach_status_log_and_event(
    dms_rig: DmsRig, caplog: pytest.LogCaptureFixture
) -> None:
    """Without the config folder the agent sees only `restrict list` (DMS greps REJECT), so a
    comment naming the address is a collision it cannot foresee: DMS refuses, and says why."""
    events = Events()
    eng = Engine(dms_rig.unmounted_settings(), LocalExecutor(), events)
    assert (await eng.run_pass(one_account(frozenset()))).outcome == "applied"
    (dms_rig.config_dir / "postfix-send-access.cf").write_text("# b@x.org asked to be kept\n")
    with caplog.at_level(logging.WARNING, logger="dms_agent.reconcile"):
        report = await eng.run_pass(one_account(frozenset({"send"})))
    assert report.outcome == "failed"
    (failed,) = report.describe()["results"]
    expected = "ERROR User 'b@x.org' already denied to send mails"
    assert failed["message"] == expected and failed["exitCode"] == 1
    assert expected in caplog.text and "\x1b[" not in caplog.text
    assert ("OpFailed", f"restrict_add:b@x.org:send: {expected}", "Warning") in events.emitted


async def test_a_password_echoed_by_a_failing_command_is_never_reported(
    dms_rig: DmsRig, caplog: pytest.LogCaptureFixture
) -> None:
    leaky = fault_script(
        dms_rig,
        "leaky",
        'read -r pw; printf "\\033[1;31mERROR\\033[0m: doveadm said %s\\n" "$pw" >&2\n'
        'echo "[  ERROR  ]  cannot hash for b@x.org" >&2; exit 1',
    )
    settings = dms_rig.settings()
    dms = settings.dms.model_copy(update={"setup_command": [str(leaky)]})
    settings = settings.model_copy(update={"dms": dms})
    events = Events()
    eng = Engine(settings, LocalExecutor(), events)
    with caplog.at_level(logging.WARNING, logger="dms_agent.reconcile"):
        report = await eng.run_pass(one_account(frozenset(), "s3cret-Pw"))
    (failed,) = report.describe()["results"]
    assert failed["message"] == "ERROR: doveadm said *** | ERROR cannot hash for b@x.org"
    shown = [caplog.text, str(report.describe()), str(events.emitted)]
    assert all("s3cret-Pw" not in text for text in shown)


def test_safe_message_keeps_error_lines_and_tool_errors_and_falls_back_to_the_last_line() -> None:
    red, reset = "\x1b[1;31m", "\x1b[0m"
    dms = Result(
        1,
        f"{reset}[   \x1b[0;34mINF   {reset}]  working\nusage text\n",
        f"{reset}[ {red}WARNING {reset}]  careful\nsed: couldn't open temporary file\n"
        f"{reset}[  {red}ERROR  {reset}]  first\n{reset}[  {red}ERROR  {reset}]  Aborting\n",
        0.1,
    )
    assert safe_message(dms) == "sed: couldn't open temporary file | ERROR first"
    assert safe_message(Result(1, "only stdout\nlast line\n", "", 0.1)) == "last line"
    assert safe_message(Result(1, "", "x" * 5000, 0.1)) == "x" * 1000
