"""Fixtures: one real kube-apiserver + etcd per test session, one fresh namespace per test.

``kube_real`` (session) is a ``KubeCluster``: ``.admin`` (REST with the admin token),
``.token_for(ns, sa)`` (TokenRequest), ``.kubeconfig(path, ...)``, ``.kill_apiserver()`` /
``.start_apiserver()``, ``.compact_etcd()``. ``kube_ns`` (function) is the name of a namespace
made for the test. Without the binaries (``.ci/build-kube``) a test skips, or fails under
``CI=true``; the start-up time is printed in the session summary.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kube_real.cluster import KubeCluster, binary_dir
from tests.rig.proc import IN_CI

_STARTED: list[KubeCluster] = []
_COUNTER = itertools.count(1)


def _require_binaries() -> Path:
    folder = binary_dir()
    if (folder / "kube-apiserver").is_file() and (folder / "etcd").is_file():
        return folder
    message = f"no kube-apiserver + etcd in {folder} (run .ci/build-kube; it needs Go)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def kube_real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    cluster = KubeCluster(tmp_path_factory.mktemp("kube-real"), _require_binaries())
    try:
        cluster.start()
    except Exception as exc:  # a start failure is a failure, with the logs, never a skip
        cluster.stop()
        pytest.fail(f"real kube-apiserver did not start: {exc}")
    _STARTED.append(cluster)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def kube_ns(kube_real: KubeCluster, request: pytest.FixtureRequest) -> str:
    """A namespace of the test's own (a bare API server never finishes deleting one, so each
    test gets a new name instead of a cleaned one)."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t{next(_COUNTER)}-{slug}"
    kube_real.create_namespace(name)
    return name


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for cluster in _STARTED:
        restarts = cluster.apiserver_starts[1:]
        again = f"; restarted {len(restarts)}x, {max(restarts):.1f} s at most" if restarts else ""
        terminalreporter.write_line(
            f"real kube-apiserver + etcd ({cluster.bin_dir.name}): up in "
            f"{cluster.startup_seconds:.1f} s{again}"
        )
