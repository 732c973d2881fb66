"""``dms-agent check-dns [DOMAIN...]``: the DNS checks once, without a running agent.

Domains come from the arguments, else from the mail state (``--state``, else the settings'
``kind: path`` sources) plus ``dns.domains``. Flags override the settings' ``dns:`` section, so
``check-dns --mx-host mail.example.com --ipv4 203.0.113.25 example.com`` needs no file at all.

Exit status: 0 every check passed or warned, 1 something failed, 3 something could not be
checked (error) but nothing failed, 2 bad settings or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from agent.commands.common import EXIT_INVALID_SETTINGS, settings_from_args
from agent.dns import runner
from agent.dns.config import DnsSettings
from agent.dns.model import DomainReport, Status
from agent.errors import InvalidDocument
from agent.mailstate.load import desired_from_documents
from agent.mailstate.model import Desired
from agent.settings import Settings
from agent.sources.document import SourceDocument, read_path

EXIT_FAIL, EXIT_ERROR = 1, 3
COLOURS = {"pass": "32", "warn": "33", "fail": "31", "error": "35"}


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if settings is None:
        return EXIT_INVALID_SETTINGS
    try:
        dns = dns_settings(settings.dns, args)
        check_paths(args)
        desired = load_state(args.state, settings)
    except InvalidDocument as exc:
        for err in exc.errors:
            print(err, file=sys.stderr)
        return EXIT_INVALID_SETTINGS
    except (ValidationError, ValueError, OSError) as exc:
        print(f"check-dns: {exc}", file=sys.stderr)
        return EXIT_INVALID_SETTINGS
    plan = runner.plan_from(dns, desired, args.domains)
    if not plan.domains and not dns.mx_host:
        print("check-dns: no domain to check (give DOMAIN, --state or settings)", file=sys.stderr)
        return EXIT_INVALID_SETTINGS
    config_dir = args.dms_config_dir or settings.dms.config_dir
    reports = asyncio.run(runner.run(dns, plan, config_dir))
    if args.output == "json":
        json.dump(as_json(reports), sys.stdout, indent=2)
        print()
    else:
        print_table(reports, sys.stdout, use_colour(args.color, sys.stdout))
    return exit_code(reports)


DKIM_FOLDERS = ("opendkim/keys", "rspamd/dkim")


def check_paths(args: argparse.Namespace) -> None:
    """A folder without DMS's key folders would turn every DKIM mismatch into "no key to
    compare" (a warning): say so rather than report less than was asked."""
    folder: Path | None = args.dms_config_dir
    if folder is not None and not any((folder / sub).is_dir() for sub in DKIM_FOLDERS):
        raise ValueError(
            f"--dms-config-dir {folder}: neither {' nor '.join(DKIM_FOLDERS)} is there "
            "(DMS's config folder, /tmp/docker-mailserver in the container)"
        )
    bundle: Path | None = args.mta_sts_ca_bundle
    if bundle is not None and not bundle.is_file():
        raise ValueError(f"--mta-sts-ca-bundle {bundle}: no such file")


def dns_settings(base: DnsSettings, args: argparse.Namespace) -> DnsSettings:
    """The settings' ``dns:`` with the command line's flags on top (validated again)."""
    data: dict[str, Any] = base.model_dump()
    flags = {
        "nameservers": args.nameserver,
        "mx_host": args.mx_host,
        "ipv4": args.ipv4,
        "ipv6": args.ipv6,
        "egress": args.egress,
        "send_only_domains": args.send_only,
        "lifetime": args.timeout,
    }
    data.update({k: v for k, v in flags.items() if v is not None})
    if args.mta_sts_ca_bundle is not None:
        data["mta_sts"] = {**data["mta_sts"], "ca_bundle": args.mta_sts_ca_bundle}
    if args.timeout is not None:
        data["timeout"] = min(data["timeout"], args.timeout)
    return DnsSettings.model_validate(data)


def load_state(path: Path | None, settings: Settings) -> Desired | None:
    """The desired state from ``--state``, else from the settings' ``kind: path`` sources, read
    and validated by the agent's own loader (state documents and DMS's native files)."""
    paths = [path] if path else [s.path for s in settings.sources if s.kind == "path" and s.path]
    if not paths:
        return None
    docs: list[SourceDocument] = []
    for folder in paths:
        found = read_path(folder)
        if found is None:
            raise ValueError(f"{folder}: no such state file or folder")
        docs.extend(found)
    return desired_from_documents(docs)


def as_json(reports: dict[str, DomainReport]) -> dict[str, Any]:
    counts = {s.value: 0 for s in Status}
    for rep in reports.values():
        for res in rep.results.values():
            counts[res.status.value] += 1
    return {"summary": counts, "domains": {d: r.as_dict() for d, r in sorted(reports.items())}}


def exit_code(reports: dict[str, DomainReport]) -> int:
    statuses = {r.status for rep in reports.values() for r in rep.results.values()}
    if Status.FAIL in statuses:
        return EXIT_FAIL
    if Status.ERROR in statuses:
        return EXIT_ERROR
    return 0


def use_colour(mode: str, out: TextIO) -> bool:
    if mode != "auto":
        return mode == "always"
    return out.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def print_table(reports: dict[str, DomainReport], out: TextIO, colour: bool) -> None:
    def paint(status: str) -> str:
        text = f"{status.upper():5}"
        return f"\033[{COLOURS[status]}m{text}\033[0m" if colour else text

    rows = [(d, c, r) for d, rep in sorted(reports.items()) for c, r in rep.results.items()]
    width = max((len(d) for d, _, _ in rows), default=6)
    print(f"{'DOMAIN':{width}}  {'CHECK':10}  {'STATUS':5}  MESSAGE", file=out)
    for domain, check, res in rows:
        head = res.headline
        print(f"{domain:{width}}  {check:10}  {paint(res.status.value)}  {head.message}", file=out)
        if res.status is Status.PASS:
            continue
        pad = " " * (width + 21)
        for label, value in (("found", head.found), ("expected", head.expected), ("fix", head.fix)):
            if value:
                print(f"{pad}{label + ':':9} {value}", file=out)
    summary = as_json(reports)["summary"]
    print("\n" + ", ".join(f"{n} {s}" for s, n in summary.items()), file=out)
