"""Snapshot tests, one per chart template and value set: any change to the rendered output
fails until the snapshot is deliberately regenerated, after reviewing the diff:

    UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/test_deploy_snapshots.py
    git diff tests/deploy/snapshots/
"""

from __future__ import annotations

import difflib
import os

import pytest

from tests.deploy import render

SNAPSHOTS = render.ROOT / "tests" / "deploy" / "snapshots"
UPDATE = os.environ.get("UPDATE_SNAPSHOTS") == "1"
VALUE_SETS = ("defaults", "full", "knobs")
TEMPLATES = sorted(p.name for p in (render.CHART / "templates").glob("*.yaml"))


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_template_output_matches_snapshot(helm: str, value_set: str, template: str) -> None:
    sources = render.split_sources(render.helm_template(helm, render.COMBINATIONS[value_set]))
    actual = sources.get(template, "")  # a template switched off renders nothing
    path = SNAPSHOTS / value_set / template
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
        return
    if not path.exists():
        pytest.fail(f"no snapshot {path.relative_to(render.ROOT)}; run with UPDATE_SNAPSHOTS=1")
    expected = path.read_text()
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(True), actual.splitlines(True), "snapshot", "rendered"
            )
        )
        pytest.fail(f"{value_set}/{template} changed (UPDATE_SNAPSHOTS=1 to accept):\n{diff}")


def test_every_snapshot_belongs_to_a_template() -> None:
    stale = [
        p.relative_to(SNAPSHOTS).as_posix()
        for p in SNAPSHOTS.glob("*/*.yaml")
        if p.name not in TEMPLATES or p.parent.name not in VALUE_SETS
    ]
    assert stale == [], "remove snapshots of templates that no longer exist"
