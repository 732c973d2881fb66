"""Shared fixtures. Real-server fixtures live in tests/rig/<server>.py, one module per server,
each owned by the capability that needs it; the doubles live in tests/dms_double and
tests/kube_api. Register new fixture modules in ``pytest_plugins`` below."""

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest

pytest_plugins: list[str] = [
    "tests.dms_double.fixtures",
    "tests.reconcile_rig",
    "tests.kube_api.fixtures",
    "tests.deploy.fixtures",
    "tests.kube_real.fixtures",
    "tests.kube_real.agent_rig",
    "tests.rig.knot",
    "tests.rig.logs",
    "tests.rig.webhook",
    "tests.rig.haproxy",
    "tests.lbkit",
    "tests.rig.ca",
    "tests.rig.clamd",
    "tests.rig.dovecot",
    "tests.rig.postfix",
]


@pytest.fixture(autouse=True)
async def _close_kube_clients() -> AsyncIterator[None]:
    """Shared Kubernetes clients hold an HTTP session bound to the test's event loop: close
    them with it, so no test leaks a session into the next one."""
    yield
    if "agent.kube.client" in sys.modules:
        from agent.kube.client import close_shared_clients

        await close_shared_clients()


@pytest.fixture(autouse=True)
async def _tasks_shown_before_timeout(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """pytest-timeout prints the threads' stacks, which for an async test all end in the event
    loop's ``select``: print every asyncio task's stack shortly before it fires, so a test that
    hangs on an await says which one."""
    limit = float(request.config.getini("timeout") or 0)
    handle = None
    if limit > 30:
        handle = asyncio.get_running_loop().call_later(limit - 20, _print_tasks)
    yield
    if handle is not None:
        handle.cancel()


def _print_tasks() -> None:
    print("---- asyncio tasks still waiting, 20 s before the test's timeout ----", file=sys.stderr)
    for task in asyncio.all_tasks():
        print(f"task {task.get_name()}:", file=sys.stderr)
        task.print_stack(file=sys.stderr)
