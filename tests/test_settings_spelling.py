"""Settings feel like the state documents: one documented spelling per key, other spellings of
a known key accepted, an unknown key answered with the keys allowed there; the reference in
docs/settings.md is generated from the models and documents every field."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import InvalidDocument
from agent.settings import load_settings
from agent.settings_doc import render, undocumented
from tests.cli_support import ROOT, run_cli


@pytest.mark.parametrize("name", ["CONFIG_DIR", "CONFIGDIR", "configDir", "config_dir"])
def test_any_spelling_of_a_known_key_is_that_key(name: str) -> None:
    settings = load_settings(None, {f"DMS_AGENT_DMS__{name}": "/srv/dms"})
    assert settings.dms.config_dir == Path("/srv/dms")


def test_nested_keys_and_free_form_mappings_from_the_environment() -> None:
    env = {
        "DMS_AGENT_RECONCILE__MAX_DELETIONS__COUNT": "7",
        "DMS_AGENT_DMS__EXECUTOR__KIND": "local",
        "DMS_AGENT_DMS__ENVIRONMENT__ENABLE_RSPAMD": "1",  # DMS's own name, kept as written
    }
    settings = load_settings(None, env)
    assert settings.reconcile.max_deletions.count == 7
    assert settings.dms.executor.kind == "local"
    assert settings.dms.environment == {"ENABLE_RSPAMD": "1"}


def test_a_mistyped_variable_is_answered_with_its_right_spelling() -> None:
    with pytest.raises(InvalidDocument) as caught:
        load_settings(None, {"DMS_AGENT_DMS__CONFGDIR": "/srv/dms"})
    (err,) = caught.value.errors
    assert err.file == "env DMS_AGENT_DMS__CONFGDIR"
    assert "unknown key; allowed here: " in err.message and "configDir" in err.message
    assert "did you mean DMS_AGENT_DMS__CONFIG_DIR?" in err.message


def test_a_mistyped_file_key_names_the_keys_allowed_there(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    checks = "checks:\n  checks:\n    - {name: a, kind: smtp, portt: 2}\n"
    path.write_text("server:\n  prot: 1\n" + checks)
    proc = run_cli("plan", "--config", str(path))
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert lines[0] == (
        f"{path}:2: server.prot: unknown key; allowed here: headerTimeout, host, "
        "keepAliveTimeout, maxConnections, port, statusTokenFile (did you mean port?)"
    )
    assert lines[1].startswith(f"{path}:5: checks.checks[0].smtp.portt: unknown key; allowed")
    assert "ehlo" in lines[1] and "(did you mean port?)" in lines[1]


def test_the_cli_takes_the_spelling_the_issue_tried(tmp_path: Path) -> None:
    proc = run_cli("dkim", "records", env={"DMS_AGENT_DMS__CONFIGDIR": str(tmp_path)})
    assert proc.returncode == 1  # no key in the folder: read, not rejected
    assert f"no opendkim DKIM key in {tmp_path}" in proc.stderr


def test_every_settings_field_is_documented() -> None:
    assert undocumented() == []


def test_docs_settings_md_is_the_generated_reference() -> None:
    current = (ROOT / "docs" / "settings.md").read_text("utf-8")
    assert current == render(), "regenerate: .venv/bin/python -m agent.settings_doc"
    assert "`DMS_AGENT_DMS__CONFIG_DIR`" in current
