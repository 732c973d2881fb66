"""``dms.environmentFrom``: the agent reads DMS's environment from DMS's own copy, a mounted
ConfigMap folder (Kubernetes) or a KEY=VALUE env file (docker compose), under ``environment``."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import InvalidDocument
from agent.settings import load_settings


def _settings(tmp_path: Path, source: Path, extra: str = "") -> dict[str, str]:
    path = tmp_path / "settings.yaml"
    path.write_text(f"dms:\n  environmentFrom: {source}\n{extra}")
    return load_settings(path, environ={}).dms.environment


def test_env_file_as_docker_compose_reads_it(tmp_path: Path) -> None:
    env = tmp_path / "mailserver.env"
    env.write_text(
        "# DMS settings\n\nENABLE_CLAMAV=0\nexport SSL_TYPE='letsencrypt'\n"
        'OVERRIDE_HOSTNAME="mail.example.com"\nPOSTFIX_REJECT_UNKNOWN_CLIENT_HOSTNAME=\n'
    )
    assert _settings(tmp_path, env) == {
        "ENABLE_CLAMAV": "0",
        "SSL_TYPE": "letsencrypt",
        "OVERRIDE_HOSTNAME": "mail.example.com",
        "POSTFIX_REJECT_UNKNOWN_CLIENT_HOSTNAME": "",
    }


def test_configmap_folder_as_kubelet_mounts_it_and_settings_win(tmp_path: Path) -> None:
    folder = tmp_path / "dms-env"
    data = folder / "..2026_01_01_00_00_00.000"
    data.mkdir(parents=True)
    (data / "ENABLE_CLAMAV").write_text("1")
    (data / "ENABLE_RSPAMD").write_text("1")
    (folder / "..data").symlink_to(data.name)
    for key in ("ENABLE_CLAMAV", "ENABLE_RSPAMD"):
        (folder / key).symlink_to(f"..data/{key}")
    extra = "  environment:\n    ENABLE_RSPAMD: '0'\n"
    assert _settings(tmp_path, folder, extra) == {"ENABLE_CLAMAV": "1", "ENABLE_RSPAMD": "0"}


def test_bad_lines_and_missing_file_are_located_errors(tmp_path: Path) -> None:
    env = tmp_path / "mailserver.env"
    env.write_text("ENABLE_CLAMAV=1\nthis is not a variable\nBAD-NAME=1\n")
    with pytest.raises(InvalidDocument) as caught:
        _settings(tmp_path, env)
    assert [str(e) for e in caught.value.errors] == [
        f"{env}:2: this is not a variable: expected KEY=VALUE",
        f"{env}:3: BAD-NAME: expected KEY=VALUE",
    ]
    with pytest.raises(InvalidDocument) as caught:
        _settings(tmp_path, tmp_path / "missing.env")
    assert str(caught.value.errors[0]).startswith(f"{tmp_path / 'missing.env'}: (document): ")
