"""The DKIM manager's memory: per-domain rotation state, a small versioned JSON file."""

from __future__ import annotations

import json
from pathlib import Path

from agent.dkim.rotation import DomainState
from agent.fsio import write_file

VERSION = 1


def load_state(path: Path) -> dict[str, DomainState]:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable DKIM state ({exc}); fix or remove it") from None
    domains = raw.get("domains", {}) if isinstance(raw, dict) else {}
    return {d: DomainState.from_dict(v) for d, v in domains.items() if isinstance(v, dict)}


def save_state(path: Path, state: dict[str, DomainState]) -> None:
    body = {"version": VERSION, "domains": {d: s.as_dict() for d, s in sorted(state.items())}}
    write_file(
        path, json.dumps(body, indent=2, sort_keys=True) + "\n", mode=0o644, make_parents=True
    )
