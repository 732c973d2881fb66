"""``dms-agent dkim``: the DNS records to publish, and forcing a held rotation."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agent.commands.common import EXIT_INVALID_SETTINGS, settings_from_args

EXIT_NO_KEYS = 1


def _config(args: argparse.Namespace) -> tuple[Path, str, Path] | None:
    settings = settings_from_args(args)
    if settings is None:
        return None
    from agent.dkim.manager import detect_backend

    config_dir = settings.dms.config_dir
    if config_dir is None:
        print("dms.configDir is not set: nothing to read", file=sys.stderr)
        return None
    backend = detect_backend(settings.dkim.backend, settings.dms.environment)
    state = settings.dkim.state_file or config_dir / "dms-agent-dkim.json"
    return config_dir, backend, state


def records(args: argparse.Namespace) -> int:
    found = _config(args)
    if found is None:
        return EXIT_INVALID_SETTINGS
    config_dir, backend, _ = found
    from agent.dkim.keys import read_public_keys

    wanted = {d.lower() for d in args.domains}
    keys = read_public_keys(config_dir, "rspamd" if backend == "rspamd" else "opendkim")
    keys = {k: v for k, v in keys.items() if not wanted or k[0] in wanted}
    if args.output == "json":
        out = [
            {"domain": k.domain, "selector": k.selector, "name": f"{k.name}.", "type": "TXT",
             "value": k.record, "keyType": k.key_type, "bits": k.bits}
            for k in keys.values()
        ]  # fmt: skip
        print(json.dumps(out, indent=2))
    else:
        for key in keys.values():
            print(key.zone_line())
    if not keys:
        which = f" for {', '.join(sorted(wanted))}" if wanted else ""
        print(
            f"no {backend} DKIM key{which} in {config_dir} (the agent makes keys for the "
            "domains whose state declares `dkim:`)",
            file=sys.stderr,
        )
        return EXIT_NO_KEYS
    return 0


def switch(args: argparse.Namespace) -> int:
    found = _config(args)
    if found is None:
        return EXIT_INVALID_SETTINGS
    _, _, state_path = found
    from agent.dkim.rotation import DomainState
    from agent.dkim.state import load_state, save_state

    state = load_state(state_path)
    state.setdefault(args.domain.lower(), DomainState()).force = True
    save_state(state_path, state)
    print(f"{args.domain}: the agent switches signing at its next pass", file=sys.stderr)
    return 0
