"""The agent's image: hadolint-clean, multi-stage, non-root, JSON logs, `dms-agent run`, and
consistent with what the manifests expect of it (uid, settings path, port)."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from agent.cli import build_parser
from agent.settings import DEFAULT_PORT
from tests.deploy import render
from tests.deploy.objects import container

DOCKERFILE = render.ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _final_stage() -> list[tuple[str, str]]:
    steps = _instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def test_hadolint_finds_nothing(hadolint: str) -> None:
    proc = render.run([hadolint, "--no-color", "-f", "json", str(DOCKERFILE)])
    findings: list[dict[str, Any]] = json.loads(proc.stdout or "[]")
    assert findings == [], findings
    assert proc.returncode == 0


def test_multi_stage_slim_python_and_oci_labels() -> None:
    steps = _instructions()
    froms = [args for word, args in steps if word == "FROM"]
    assert len(froms) == 2 and froms[0].endswith(" AS build")
    base = next(args for word, args in steps if word == "ARG" and args.startswith("PYTHON_IMAGE="))
    # pinned by digest: a rebuild gets the same base bytes (docs/release.md: how to update it)
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", base)
    labels = " ".join(args for word, args in _final_stage() if word == "LABEL")
    for key in ("title", "description", "version", "licenses", "source", "revision", "created"):
        assert f"org.opencontainers.image.{key}=" in labels
    # the release workflow passes what the labels read
    final_args = {args.split("=")[0] for word, args in _final_stage() if word == "ARG"}
    assert {"VERSION", "REVISION", "CREATED", "SOURCE"} <= final_args
    # The final stage gets the virtualenv, not the build tools or sources.
    copies = [args for word, args in _final_stage() if word == "COPY"]
    assert copies == ["--from=build /opt/dms-agent /opt/dms-agent"]


def test_dependencies_install_from_the_hashed_lock_only() -> None:
    """requirements.lock pins every runtime dependency (and theirs) with hashes; the build
    installs it with --require-hashes, then the agent itself with --no-deps."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    runs = [args for word, args in _instructions() if word == "RUN" and "pip install" in args]
    assert "--require-hashes -r requirements.lock" in runs[0]
    assert all("--no-deps" in run for run in runs[1:]) and len(runs) == 2
    lock = (render.ROOT / "requirements.lock").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9._-]+)==(\S+) \\$", lock, re.M))
    blocks = re.split(r"\n(?=[A-Za-z0-9._-]+==)", lock)
    assert all("--hash=sha256:" in b for b in blocks if "==" in b.split("\n", 1)[0])
    norm = {name.lower().replace("_", "-"): Version(v) for name, v in pins.items()}
    import tomllib

    project = tomllib.loads((render.ROOT / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"]:
        req = Requirement(spec)
        name = req.name.lower().replace("_", "-")
        assert name in norm, f"{name} not in requirements.lock: docs/release.md"
        assert norm[name] in req.specifier, f"{name}=={norm[name]} outside {req.specifier}"


def test_runs_as_the_non_root_uid_the_manifests_prepare_for(helm: str) -> None:
    user = [args for word, args in _final_stage() if word == "USER"]
    assert user == ["10001:10001"]
    docs = render.load_docs(render.helm_template(helm))
    agent = container(docs, "agent")
    assert agent["securityContext"]["runAsUser"] == 10001
    assert agent["securityContext"]["readOnlyRootFilesystem"] is True
    assert "chown 10001:10001" in container(docs, "prepare")["command"][2]
    # A read-only root filesystem: /tmp is the only writable place the image needs.
    assert {"name": "agent-tmp", "mountPath": "/tmp"} in agent["volumeMounts"]
    env = " ".join(args for word, args in _final_stage() if word == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "HOME=/tmp" in env


def test_entrypoint_is_dms_agent_run_with_json_logs(helm: str) -> None:
    final = dict(_final_stage())
    entrypoint = json.loads(final["ENTRYPOINT"])
    cmd = json.loads(final["CMD"])
    assert entrypoint == ["dms-agent", "run"]
    assert "DMS_AGENT_LOGGING__FORMAT=json" in final["ENV"]
    assert final["EXPOSE"] == str(DEFAULT_PORT)
    # The CLI accepts what the image and the manifests pass it.
    args = build_parser().parse_args([*entrypoint[1:], *cmd])
    assert args.command == "run" and str(args.config) == cmd[1]
    docs = render.load_docs(render.helm_template(helm))
    assert container(docs, "agent")["args"] == cmd
    pyproject = (render.ROOT / "pyproject.toml").read_text()
    assert 'dms-agent = "agent.cli:main"' in pyproject


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    ignore = (render.ROOT / ".dockerignore").read_text().split()
    assert ignore[0] == "*"
    copied = {
        part
        for word, args in _instructions()
        if word == "COPY" and not args.startswith("--from")
        for part in shlex.split(args)[:-1]
    }
    for path in copied:
        assert f"!{path}" in ignore or f"!{path}/" in ignore, path
