"""Shared fixtures. Real-server fixtures live in tests/rig/<server>.py, one module per server,
each owned by the capability that needs it; the doubles live in tests/dms_double and
tests/kube_api. Register new fixture modules in ``pytest_plugins`` below."""

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
