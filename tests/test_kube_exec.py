"""KubeExecExecutor against the test API server: exit codes, stdin, timeout, lost stream, RBAC
refusal, and the DMS `setup` double run "inside the container" when it is in the tree."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.kube.client import KubeClient, load_cluster_config
from agent.kube.config import KubeSettings
from agent.kube.exec import ExecForbidden, ExecUnavailable, KubeExecExecutor, exit_code_of
from tests.kube_api.fixtures import KubeApi
from tests.rig.proc import require_binary


@pytest.fixture
async def executor(kube_api: KubeApi) -> AsyncIterator[KubeExecExecutor]:
    client = KubeClient(load_cluster_config(KubeSettings(kubeconfig=kube_api.kubeconfig)))
    yield KubeExecExecutor(client, kube_api.namespace, kube_api.pod, "mailserver", margin=0.5)
    await client.close()


async def test_exit_codes_and_output(executor: KubeExecExecutor) -> None:
    ok = await executor.run(["sh", "-c", "echo out; echo err >&2"])
    assert (ok.exit_code, ok.stdout, ok.stderr, ok.timed_out) == (0, "out\n", "err\n", False)
    failed = await executor.run(["sh", "-c", "exit 3"])
    assert failed.exit_code == 3 and not failed.unknown
    missing = await executor.run(["/nonexistent/setup"])
    assert missing.exit_code == 127  # timeout(1) could not find it: a shell's "not found"


async def test_stdin_with_complete_answers(executor: KubeExecExecutor) -> None:
    result = await executor.run(["sh", "-c", "read a; read b; echo $b-$a"], stdin="x\ny\n")
    assert (result.exit_code, result.stdout) == (0, "y-x\n")


async def test_deadline_is_enforced_in_the_container(
    executor: KubeExecExecutor, kube_api: KubeApi
) -> None:
    result = await executor.run(["sleep", "30"], timeout=1)
    assert result.timed_out and result.unknown
    _, path = kube_api.server.requests[-1]
    assert "command=timeout&command=-k&command=5&command=1&command=sleep" in path


async def test_lost_stream_is_an_unknown_outcome(
    executor: KubeExecExecutor, kube_api: KubeApi
) -> None:
    kube_api.server.exec_fault = "drop"
    result = await executor.run(["sh", "-c", "echo partial"])
    assert result.unknown and not result.timed_out


async def test_stream_without_status_gives_up_after_the_deadline(
    executor: KubeExecExecutor, kube_api: KubeApi
) -> None:
    kube_api.server.exec_fault = "stall"
    executor.use_timeout = False  # the margin alone, so the test stays short
    result = await executor.run(["true"], timeout=0.1)
    assert result.unknown and result.timed_out


async def test_rbac_refusal_names_the_permission(
    executor: KubeExecExecutor, kube_api: KubeApi
) -> None:
    kube_api.server.forbid_exec = True
    with pytest.raises(ExecForbidden) as err:
        await executor.run(["true"])
    message = str(err.value)
    assert '"get" and "create"' in message and '"pods/exec"' in message and "mail" in message


async def test_unreachable_api_raises(executor: KubeExecExecutor, kube_api: KubeApi) -> None:
    await kube_api.server.stop()
    with pytest.raises(ExecUnavailable):
        await executor.run(["true"])


async def test_a_server_that_never_answers_the_handshake_is_given_up(
    kube_api: KubeApi,
) -> None:
    """A connection accepted and never answered (an overloaded API server, or no free
    connection in the pool) ends as "did not start" after the request deadline."""
    accepted: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # keep the socket open; never answer

    silent = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    config = load_cluster_config(KubeSettings(kubeconfig=kube_api.kubeconfig))
    config.server = f"http://127.0.0.1:{port}"
    client = KubeClient(config, request_timeout=0.5)
    executor = KubeExecExecutor(client, kube_api.namespace, kube_api.pod, "mailserver")
    try:
        with pytest.raises(ExecUnavailable, match=r"no WebSocket handshake within 0\.5 s"):
            await executor.run(["true"])
        assert accepted  # it did connect: the handshake is what timed out
    finally:
        await client.close()
        for writer in accepted:
            writer.close()
        silent.close()
        await silent.wait_closed()


async def test_rotated_token_is_picked_up(executor: KubeExecExecutor, kube_api: KubeApi) -> None:
    assert (await executor.run(["true"])).ok
    kube_api.rotate_token()
    assert (await executor.run(["true"])).ok


def test_exit_code_of_status_shapes() -> None:
    assert exit_code_of({"status": "Success"}) == 0
    failure = {"status": "Failure", "reason": "NonZeroExitCode"}
    assert (
        exit_code_of({**failure, "details": {"causes": [{"reason": "ExitCode", "message": "2"}]}})
        == 2
    )
    assert exit_code_of({"status": "Failure", "reason": "InternalError"}) == 126
    assert exit_code_of({}) is None


async def test_setup_double_inside_the_container(
    executor: KubeExecExecutor, kube_api: KubeApi, tmp_path: Path
) -> None:
    from tests.dms_double.fixtures import DmsDouble

    require_binary("doveadm", "dovecot-core")
    dms = DmsDouble(tmp_path / "dms")
    setup = dms.setup_argv
    added = await executor.run([*setup, "email", "add", "a@example.test"], stdin="pw\npw\n")
    assert added.exit_code == 0, added.stderr
    assert "a@example.test" in dms.accounts()
    again = await executor.run([*setup, "email", "add", "a@example.test"], stdin="pw\npw\n")
    assert again.exit_code == 1 and "already exists" in again.stdout + again.stderr
    listed = await executor.run([*setup, "email", "list"])
    assert listed.exit_code == 0 and "* a@example.test" in listed.stdout
