"""DKIM rotation as a pure function: (declared spec, persisted state, facts) -> next step.

A rotation is: make a key under the NEW selector; keep signing with the old one until DNS
serves the new record (or the operator forces it); switch; keep the old selector valid for a
grace period (mail in flight, caches); then retire it. Rotating in place (same selector, new
key) is never done: it breaks every message whose signature is verified after the swap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from agent.mailstate.model import DkimSpec

RSA_SIZES = (1024, 2048, 3072, 4096)


@dataclass(slots=True)
class DomainState:
    """What the agent remembers per domain (persisted between runs)."""

    signing: str | None = None  # the selector mail is signed with
    retiring: str | None = None  # the previous selector, still published, in its grace period
    retire_after: float | None = None  # unix time
    force: bool = False  # switch without waiting for DNS (dms-agent dkim switch --force)

    def as_dict(self) -> dict[str, object]:
        return {
            "signing": self.signing,
            "retiring": self.retiring,
            "retireAfter": self.retire_after,
            "force": self.force,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, object]) -> DomainState:
        retire_after = raw.get("retireAfter")
        return cls(
            signing=_str_or_none(raw.get("signing")),
            retiring=_str_or_none(raw.get("retiring")),
            retire_after=float(retire_after) if isinstance(retire_after, int | float) else None,
            force=raw.get("force") is True,
        )


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


StepKind = Literal["generate", "switch", "wait", "retire", "mismatch", "none"]


@dataclass(frozen=True, slots=True)
class Step:
    kind: StepKind
    selector: str | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Facts:
    """What is true right now, gathered by the manager."""

    keys: Mapping[str, tuple[str, int]] = field(default_factory=dict)  # selector -> (type, bits)
    published: Mapping[str, bool | None] = field(
        default_factory=dict
    )  # selector -> match / unknown
    now: float = 0.0


def spec_problem(spec: DkimSpec) -> str | None:
    """What DMS would accept silently but is wrong (``keysize abc`` writes a broken KeyTable)."""
    if not spec.selector or not all(c.isalnum() or c in "-_." for c in spec.selector):
        return f"selector {spec.selector!r} is not a valid DNS label"
    if spec.key_type == "rsa" and spec.key_size not in RSA_SIZES:
        return f"RSA key size {spec.key_size} is not one of {', '.join(map(str, RSA_SIZES))}"
    return None


def next_step(
    spec: DkimSpec, state: DomainState, facts: Facts, grace: float, require_published: bool
) -> Step:
    problem = spec_problem(spec)
    if problem:
        return Step("mismatch", spec.selector, problem)
    wanted = spec.selector
    if wanted not in facts.keys:
        return Step("generate", wanted, "no key on disk for the declared selector")
    key_type, bits = facts.keys[wanted]
    if key_type != spec.key_type or (key_type == "rsa" and bits != spec.key_size):
        return Step(
            "mismatch",
            wanted,
            f"the key on disk is {key_type}/{bits}, the state declares "
            f"{spec.key_type}/{spec.key_size}: declare a NEW selector to rotate",
        )
    if state.signing is None:
        return Step("switch", wanted, "first key for this domain")
    if state.signing != wanted:
        published = facts.published.get(wanted)
        if state.force or not require_published or published is True:
            return Step("switch", wanted, "forced" if state.force else "new record is published")
        why = "not yet published" if published is False else "publication not yet known"
        return Step("wait", wanted, f"holding signing on {state.signing!r}: {wanted!r} {why}")
    if state.retiring and state.retire_after is not None and facts.now >= state.retire_after:
        return Step("retire", state.retiring, "grace period over")
    return Step("none", wanted)


def after_switch(state: DomainState, selector: str, now: float, grace: float) -> DomainState:
    old = state.signing
    retiring = old if old and old != selector else state.retiring
    return DomainState(
        signing=selector,
        retiring=retiring,
        retire_after=now + grace if retiring else None,
        force=False,
    )


def after_retire(state: DomainState) -> DomainState:
    return DomainState(signing=state.signing)
