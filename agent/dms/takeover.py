"""`dms-agent import`: an existing DMS's state as a state document and a passwords document.

The passwords document holds the existing hashes (``{hash: …}``), so applying the imported
documents changes nothing: the accounts are adopted, their passwords untouched.
"""

from __future__ import annotations

from typing import Any

import yaml

from agent.dms.actual import Actual
from agent.mailstate.model import API_VERSION


def state_document(actual: Actual) -> str:
    accounts: dict[str, Any] = {}
    for addr, acc in sorted(actual.state.accounts.items()):
        entry: dict[str, Any] = {}
        if acc.quota is not None:
            entry["quota"] = acc.quota
        if acc.restrict:
            entry["restrict"] = sorted(acc.restrict)
        accounts[addr] = entry
    doc: dict[str, Any] = {"apiVersion": API_VERSION}
    domains = {
        d: {"dkim": {"selector": sorted(sels)[0]}}
        for d, sels in sorted((actual.dkim or {}).items())
        if sels
    }
    if domains:
        doc["domains"] = domains
    doc["accounts"] = accounts
    if actual.state.aliases:
        doc["aliases"] = {a: list(r) for a, r in sorted(actual.state.aliases.items())}
    header = "# Imported from DMS by `dms-agent import`. Review, then keep it in a ConfigMap.\n"
    return header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=1000)


def passwords_document(actual: Actual) -> str:
    """Existing hashes; empty when the config folder was not readable (no hashes known)."""
    hashes = actual.hashes or {}
    doc = {addr: {"hash": h} for addr, h in sorted(hashes.items())}
    header = "# Imported password HASHES. Keep this document in a Secret.\n"
    return header + (yaml.safe_dump(doc, sort_keys=False, width=1000) if doc else "{}\n")
