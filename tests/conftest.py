"""Shared fixtures. Real-server fixtures live in tests/rig/<server>.py, one module per server,
each owned by the capability that needs it; the doubles live in tests/dms_double and
tests/kube_api. Register new fixture modules in ``pytest_plugins`` below."""

pytest_plugins: list[str] = [
    "tests.dms_double.fixtures",
    "tests.reconcile_rig",
    "tests.kube_api.fixtures",
    "tests.deploy.fixtures",
    "tests.rig.knot",
]
