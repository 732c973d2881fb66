"""``dms-agent schema``: the JSON schema of the state and passwords documents."""

from __future__ import annotations

import argparse
import json
from typing import Any

from agent.mailstate.schema import passwords_json_schema, state_json_schema


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "schema",
        help="print the JSON schema of the state and passwords documents",
        description=(
            "Print JSON schema (draft 2020-12) for editors and CI linters. 'state' and "
            "'passwords' print that document's schema alone (e.g. for yaml-language-server); "
            'without an argument both are printed as {"state": ..., "passwords": ...}. '
            "The schema covers the structure; `dms-agent validate` also checks what a schema "
            "cannot (address syntax, duplicates in any case, alias loops, merges)."
        ),
    )
    p.add_argument("document", nargs="?", choices=["state", "passwords"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out: dict[str, Any]
    if args.document == "state":
        out = state_json_schema()
    elif args.document == "passwords":
        out = passwords_json_schema()
    else:
        out = {"state": state_json_schema(), "passwords": passwords_json_schema()}
    print(json.dumps(out, indent=2, sort_keys=True))
    return 0
