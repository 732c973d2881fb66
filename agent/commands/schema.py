"""``dms-agent schema``: the JSON schema of the state and passwords documents."""

from __future__ import annotations

import argparse
import json
from typing import Any

from agent.mailstate.schema import passwords_json_schema, state_json_schema


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
