"""DMS's environment read from where DMS itself gets it, so the agent and the mailserver share
one copy: a folder with one file per variable (a Kubernetes ConfigMap mounted as a volume, the
same ConfigMap the mailserver's ``envFrom`` names) or a ``KEY=VALUE`` file (docker compose's
``env_file``, e.g. DMS's ``mailserver.env``)."""

from __future__ import annotations

from pathlib import Path

from agent.errors import InvalidDocument, LocatedError


def read_environment(path: Path) -> dict[str, str]:
    """The variables at ``path``; InvalidDocument naming file and line for anything unreadable."""
    try:
        if path.is_dir():
            return _read_folder(path)
        return _parse_env_file(path.read_text(encoding="utf-8"), str(path))
    except OSError as exc:
        raise InvalidDocument(
            [LocatedError(str(path), None, "", exc.strerror or str(exc))]
        ) from None
    except UnicodeDecodeError as exc:
        raise InvalidDocument(
            [LocatedError(str(path), None, "", f"not UTF-8 text: {exc}")]
        ) from None


def _read_folder(folder: Path) -> dict[str, str]:
    # kubelet's mount also holds ..data and ..<timestamp> links: only variable names count
    return {
        entry.name: entry.read_text(encoding="utf-8")
        for entry in sorted(folder.iterdir())
        if entry.name.isidentifier() and entry.is_file()
    }


def _parse_env_file(text: str, source: str) -> dict[str, str]:
    env: dict[str, str] = {}
    errors: list[LocatedError] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            errors.append(LocatedError(source, number, key, "expected KEY=VALUE"))
            continue
        env[key] = _unquote(value.strip())
    if errors:
        raise InvalidDocument(errors)
    return env


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value
