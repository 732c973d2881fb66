"""The release: .github/workflows/release.yml passes actionlint, builds both platforms, pushes the
image the chart names, packages the chart with the same version; its version gate (run here
for real with bash) agrees with the repository's versions; CHANGELOG.md and the version policy."""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import yaml

from tests.deploy import render

WORKFLOW = render.ROOT / ".github" / "workflows" / "release.yml"


def _workflow() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return doc


def _values() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((render.CHART / "values.yaml").read_text())
    return doc


def _chart() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((render.CHART / "Chart.yaml").read_text())
    return doc


def test_actionlint_finds_nothing() -> None:
    actionlint = render.require_tool("actionlint", "run .ci/extra-installs (a Go module)")
    proc = render.run([actionlint, "-no-color", str(WORKFLOW)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_is_not_blind(tmp_path: Path) -> None:
    actionlint = render.require_tool("actionlint", "run .ci/extra-installs (a Go module)")
    broken = WORKFLOW.read_text().replace("needs.versions.outputs.version", "needs.version.out")
    (tmp_path / "release.yml").write_text(broken)
    assert render.run([actionlint, "-no-color", str(tmp_path / "release.yml")]).returncode != 0


def test_image_is_the_one_the_chart_names_for_both_platforms() -> None:
    workflow = _workflow()
    agent_image = _values()["agent"]["image"]
    assert workflow["env"]["IMAGE"] == agent_image["repository"]
    build = next(s for s in workflow["jobs"]["image"]["steps"] if s.get("id") == "build")
    assert build["with"]["platforms"] == "linux/amd64,linux/arm64"
    assert build["with"]["push"] is True
    assert build["with"]["tags"] == "${{ env.IMAGE }}:${{ needs.versions.outputs.version }}"
    args = build["with"]["build-args"]
    for arg in ("VERSION=", "REVISION=${{ github.sha }}", "CREATED=", "SOURCE="):
        assert arg in args
    package = "\n".join(s.get("run", "") for s in workflow["jobs"]["chart"]["steps"])
    assert '--version "$VERSION" --app-version "$VERSION"' in package
    assert workflow["permissions"] == {"contents": "read"}  # least privilege by default


def _version_gate(tag: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    step = next(s for s in _workflow()["jobs"]["versions"]["steps"] if s.get("id") == "version")
    output = tmp_path / "output"
    env = {**os.environ, "TAG": tag, "GITHUB_OUTPUT": str(output)}
    return subprocess.run(
        ["bash", "-eo", "pipefail", "-c", step["run"]],
        cwd=render.ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_version_gate_accepts_the_repositorys_version_and_refuses_another(tmp_path: Path) -> None:
    version = tomllib.loads((render.ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert _chart()["version"] == _chart()["appVersion"] == version
    assert _values()["agent"]["image"]["tag"] == version
    ok = _version_gate(f"v{version}", tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert (tmp_path / "output").read_text() == f"version={version}\n"
    wrong = _version_gate("v9.9.9", tmp_path)
    assert wrong.returncode != 0 and "tag 9.9.9" in wrong.stdout


def test_changelog_and_version_policy() -> None:
    changelog = (render.ROOT / "CHANGELOG.md").read_text()
    version = _chart()["appVersion"]
    assert f"## [{version}]" in changelog and "## [Unreleased]" in changelog
    policy = (render.ROOT / "docs" / "release.md").read_text()
    dms = _values()["image"]["tag"]
    assert f"**{dms}**" in policy  # the DMS version the release is tested with
    assert "`version` = `appVersion` = `agent.image.tag`" in policy


def test_dependabot_keeps_the_pins_moving() -> None:
    cli = render.require_tool("check-jsonschema", "pip install '.[test]'")
    path = render.ROOT / ".github" / "dependabot.yml"
    proc = render.run([cli, "--builtin-schema", "vendor.dependabot", str(path)])
    assert proc.returncode == 0, proc.stdout
    ecosystems = {u["package-ecosystem"] for u in yaml.safe_load(path.read_text())["updates"]}
    assert ecosystems == {"docker", "pip", "github-actions"}
