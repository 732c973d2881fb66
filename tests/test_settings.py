"""Settings: located errors, env overrides, never a crash on garbage."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.errors import InvalidDocument
from agent.settings import DEFAULT_PORT, load_settings


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "agent.yaml"
    p.write_text(text)
    return p


def errors_of(path: Path | None, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(InvalidDocument) as info:
        load_settings(path, env or {})
    return [str(e) for e in info.value.errors]


def test_defaults_without_a_file() -> None:
    s = load_settings(None, {})
    assert s.server.port == DEFAULT_PORT
    assert s.server.host == "127.0.0.1"
    assert s.reconcile.mode == "apply"
    assert s.reconcile.passwords == "onChange"


def test_the_example_settings_are_valid() -> None:
    s = load_settings(Path("examples/local.yaml"), {})
    assert s.sources[0].kind == "path"
    assert s.dms.executor.kind == "file"


def test_camel_case_keys_and_nested_sections(tmp_path: Path) -> None:
    p = write(tmp_path, "reconcile:\n  maxDeletions: {count: 3, percent: 50}\n  mode: observe\n")
    s = load_settings(p, {})
    assert s.reconcile.max_deletions.count == 3
    assert s.reconcile.mode == "observe"


def test_every_error_names_file_line_and_field(tmp_path: Path) -> None:
    p = write(
        tmp_path, "server:\n  port: 99999\nreconcile:\n  bogus: 1\nsources:\n  - kind: path\n"
    )
    errs = errors_of(p)
    assert f"{p}:2: server.port: Input should be less than or equal to 65535" in errs
    assert any(e.startswith(f"{p}:4: reconcile.bogus:") for e in errs)
    assert any(e.startswith(f"{p}:6: sources[0]:") and "needs `path`" in e for e in errs)
    assert len(errs) == 3


def test_yaml_syntax_error_is_located(tmp_path: Path) -> None:
    p = write(tmp_path, "server:\n  port: [1, 2\n")
    (err,) = errors_of(p)
    assert err.startswith(f"{p}:")
    assert "YAML syntax error" in err


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    p = write(tmp_path, "server:\n  port: 1\n  port: 2\n")
    (err,) = errors_of(p)
    assert err.startswith(f"{p}:3: server.port: key appears twice")


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    (err,) = errors_of(tmp_path / "absent.yaml")
    assert "absent.yaml" in err


def test_env_overrides_the_file(tmp_path: Path) -> None:
    p = write(tmp_path, "server:\n  port: 1000\n")
    env = {"DMS_AGENT_SERVER__PORT": "2000", "DMS_AGENT_RECONCILE__MAX_DELETIONS": "{count: 7}"}
    s = load_settings(p, env)
    assert s.server.port == 2000
    assert s.reconcile.max_deletions.count == 7


def test_a_bad_env_value_names_the_variable() -> None:
    (err,) = errors_of(None, {"DMS_AGENT_SERVER__PORT": "many"})
    assert err.startswith("env DMS_AGENT_SERVER__PORT: server.port:")


yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8))
yaml_values = st.recursive(
    yaml_scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["server", "port", "host", "sources", "kind", "x"]), children
        )
    ),
    max_leaves=10,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=80) | yaml_values.map(yaml.safe_dump))
def test_garbage_never_crashes_and_errors_are_located(tmp_path: Path, text: str) -> None:
    p = write(tmp_path, text)
    try:
        load_settings(p, {})
    except InvalidDocument as exc:
        assert exc.errors
        for e in exc.errors:
            assert str(e).startswith(str(p))
