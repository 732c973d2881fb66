"""The DKIM work a plan shows when the DKIM component owns DKIM (``dkim.enabled``, the default).

The plan itself never makes keys then (two components must not race for the same key); it
lists what the component's next pass will do, decided by the component's own rotation rules
(agent/dkim/rotation.py) from the keys on disk and the component's saved state. DNS is not asked
here, so a switch that waits for the new record reads "when DNS serves it".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.dkim.rotation import DomainState, Facts, next_step
from agent.dkim.state import load_state
from agent.dms.actual import DkimBackend
from agent.mailstate.model import DkimSpec

DONE_BY = "dms-agent run (its DKIM component)"
STATE_NAME = "dms-agent-dkim.json"


@dataclass(frozen=True, slots=True)
class DkimWork:
    domain: str
    step: str  # generate | switch | retire | wait | mismatch
    selector: str
    reason: str

    @property
    def held(self) -> bool:
        """Work that will not happen by itself (a wrong key) or waits for DNS."""
        return self.step in ("wait", "mismatch")

    def describe(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "step": self.step,
            "selector": self.selector,
            "reason": self.reason,
            "doneBy": DONE_BY,
        }


def dkim_work(
    specs: Mapping[str, DkimSpec],
    config_dir: Path,
    backend: DkimBackend,
    state_file: Path | None,
    require_published: bool,
    now: float,
) -> list[DkimWork]:
    """Blocking (reads the key files and the state file): call it in a thread."""
    if not specs or backend == "none":
        return []
    from agent.dkim.keys import read_public_keys  # loads cryptography: only with DKIM specs

    keys = read_public_keys(config_dir, backend, frozenset(specs))
    states = load_state(state_file or config_dir / STATE_NAME)
    work = []
    for domain, spec in sorted(specs.items()):
        have = {sel: (k.key_type, k.bits) for (d, sel), k in keys.items() if d == domain}
        step = next_step(
            spec, states.get(domain, DomainState()), Facts(have, {}, now), 0, require_published
        )
        if step.kind == "none":
            continue
        reason = step.reason
        if step.kind == "wait" and "not yet known" in reason:
            reason = reason.replace("publication not yet known", "switches when DNS serves it")
        if step.kind == "generate":
            size = f"/{spec.key_size}" if spec.key_type == "rsa" else ""
            reason = f"{reason} ({spec.key_type}{size})"
        work.append(DkimWork(domain, step.kind, step.selector or spec.selector, reason))
    return work
