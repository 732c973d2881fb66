"""checkov, as an operator's CI would run it (offline: --skip-download), on every render of the
chart (the "knobs" value set included) and on the Dockerfile: no finding beyond the skip list
(tests/deploy/checkov-skips.yaml), where every skip has its reason and is still needed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import render

SKIPS: dict[str, str] = yaml.safe_load(
    (Path(render.__file__).parent / "checkov-skips.yaml").read_text()
)
HOW = "run .ci/extra-installs (checkov in a cached venv, linked from tools/bin)"


def _checkov(files: list[Path], skips: list[str]) -> list[dict[str, Any]]:
    checkov = render.require_tool("checkov", HOW)
    argv = [checkov, "--skip-download", "--quiet", "--compact", "-o", "json"]
    argv += ["--framework", "kubernetes", "dockerfile"]
    for file in files:
        argv += ["-f", str(file)]
    if skips:
        argv += ["--skip-check", ",".join(skips)]
    proc = render.run(argv)
    assert proc.stdout.strip(), proc.stderr
    reports = json.loads(proc.stdout)
    return reports if isinstance(reports, list) else [reports]


def _failures(reports: list[dict[str, Any]]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for report in reports:
        for check in report["results"]["failed_checks"]:
            found.setdefault(check["check_id"], set()).add(check["resource"])
    return found


@pytest.fixture(scope="module")
def targets(helm: str, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("renders")
    files = []
    for combination in sorted(render.COMBINATIONS):
        path = folder / f"{combination}.yaml"
        path.write_text(render.helm_template(helm, render.COMBINATIONS[combination]))
        files.append(path)
    return [*files, render.ROOT / "Dockerfile"]


def test_every_skip_has_a_reason() -> None:
    assert SKIPS
    for check, reason in SKIPS.items():
        assert check.startswith(("CKV_K8S_", "CKV_DOCKER_")), check
        assert isinstance(reason, str) and len(reason.split()) >= 8, check


def test_no_finding_beyond_the_skips_and_every_skip_is_needed(targets: list[Path]) -> None:
    reports = _checkov(targets, sorted(SKIPS))
    assert {r["check_type"] for r in reports} == {"kubernetes", "dockerfile"}
    failures = _failures(reports)
    assert failures == {}, failures
    passed = sum(r["summary"]["passed"] for r in reports)
    assert passed > 200  # it did check
    unskipped = _failures(_checkov(targets, []))
    assert set(unskipped) == set(SKIPS), "skips no longer needed: " + ", ".join(
        sorted(set(SKIPS) - set(unskipped))
    )


def test_checkov_is_not_blind(tmp_path: Path) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bad", "namespace": "mail"},
        "spec": {
            "containers": [{"name": "c", "image": "x", "securityContext": {"privileged": True}}]
        },
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(pod))
    failures = _failures(_checkov([path], sorted(SKIPS)))
    assert "CKV_K8S_16" in failures  # privileged container
