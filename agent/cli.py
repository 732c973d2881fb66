"""``dms-agent`` command line: every sub-command's options, and which module does its work.

The parser is built from this module alone, importing nothing but the standard library, so
``--help``, ``SUB --help`` and a usage error answer at once. The module that does a
sub-command's work (``agent/commands/<name>.py``, with its aiohttp, pydantic, dnspython ...)
is imported only when that sub-command runs: ``COMMANDS`` is the one place naming it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from agent import __version__
from agent.checks.probe import DEFAULT_MAX_AGE, DEFAULT_VERDICT_FILE

# sub-command (as its handler key) -> "module:function(args) -> exit code"
COMMANDS: dict[str, str] = {
    "run": "agent.commands.run:run",
    "plan": "agent.commands.plan:run",
    "apply": "agent.commands.apply:run",
    "import": "agent.commands.takeover:run",
    "validate": "agent.commands.validate:run",
    "schema": "agent.commands.schema:run",
    "dkim records": "agent.commands.dkim:records",
    "dkim switch": "agent.commands.dkim:switch",
    "check-dns": "agent.commands.check_dns:run",
    "probe-script": "agent.commands.probe_script:run",
    "completion": "agent.commands.completion:run",
}

if TYPE_CHECKING:
    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

CHECK_DNS_DESCRIPTION = """\
Domains come from the arguments, else from the mail state (--state, else the settings'
`kind: path` sources) plus dns.domains. Flags override the settings' `dns:` section, so
`check-dns --mx-host mail.example.com --ipv4 203.0.113.25 example.com` needs no file at all.

Exit status: 0 every check passed or warned, 1 something failed, 3 something could not be
checked (error) but nothing failed, 2 bad settings or usage."""

VALIDATE_DESCRIPTION = """\
Check documents exactly as the agent reads a source: each file on its own, then
all of them merged (an account, alias or password declared twice is an error
naming both places).

How a file is read depends on its name:
  *.yaml|*.yml naming 'password'   passwords: address: {password: ...} | {hash: ...}
  other *.yaml|*.yml               state document (apiVersion: dms-agent/v1)
  postfix-accounts.cf, postfix-virtual.cf, dovecot-quotas.cf,
  postfix-send-access.cf, postfix-receive-access.cf   DMS's own formats
A folder stands for the files in it (as a mounted ConfigMap would).

Output: one 'FILE:LINE: field: message' line per error; warnings start with
'warning:', accounts without a password with 'pending:'. No password is printed.
Exit: 0 valid (warnings allowed), 1 invalid or unreadable, 2 bad usage."""


def add_settings_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        "-c",
        type=Path,
        metavar="FILE",
        help="the agent's settings file (YAML); DMS_AGENT_* variables override it",
    )
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", choices=["text", "json"], help="text (default) or json lines")


def add_source_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--source",
        action="append",
        type=Path,
        metavar="PATH",
        help="a state folder or file to use instead of the settings' path sources (repeatable)",
    )


def add_run(sub: Subparsers) -> None:
    p = sub.add_parser(
        "run",
        help="run the agent: watch sources, reconcile, check, serve health and metrics",
        description=(
            "Run until SIGTERM/SIGINT. SIGHUP or a change of the settings file reloads the "
            "settings; an invalid new file is rejected and the running settings stay."
        ),
    )
    add_settings_options(p)
    p.set_defaults(handler="run")


def add_plan(sub: Subparsers) -> None:
    p = sub.add_parser(
        "plan",
        help="show the ops a reconcile would run (nothing is changed)",
        description=(
            "Observe DMS, compare with the declared state and print the plan. Exit codes: "
            "0 nothing held back, 1 error, 3 work refused or blocked; with --detailed-exitcode "
            "also 2 for changes to make (as terraform does)."
        ),
    )
    add_settings_options(p)
    add_source_option(p)
    p.add_argument("--output", "-o", choices=["table", "json"], default="table")
    p.add_argument("--detailed-exitcode", action="store_true")
    p.set_defaults(handler="plan")


def add_apply(sub: Subparsers) -> None:
    p = sub.add_parser(
        "apply",
        help="run one reconcile: make DMS equal the declared state",
        description=(
            "Observe, plan and apply once, under the apply lock (one agent at a time). "
            "Deletions over maxDeletions are refused unless approved with --allow-deletions. "
            "An explicit apply runs even when reconcile.mode is observe."
        ),
    )
    add_settings_options(p)
    add_source_option(p)
    p.add_argument(
        "--allow-deletions",
        type=int,
        default=0,
        metavar="N",
        help="approve up to N deletions beyond maxDeletions, this once",
    )
    p.set_defaults(handler="apply")


def add_import(sub: Subparsers) -> None:
    p = sub.add_parser(
        "import",
        help="write a state document and a passwords document (existing hashes) from DMS",
        description=(
            "Take over a DMS with hand-made accounts: the documents describe what DMS has now, "
            "so applying them changes nothing (accounts are adopted, passwords untouched)."
        ),
    )
    add_settings_options(p)
    p.add_argument("--output-dir", "-o", type=Path, required=True, metavar="DIR")
    p.add_argument("--force", action="store_true", help="overwrite existing documents")
    p.set_defaults(handler="import")


def add_validate(sub: Subparsers) -> None:
    p = sub.add_parser(
        "validate",
        help="check state/passwords documents and DMS files; exit 0 valid, 1 invalid",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=VALIDATE_DESCRIPTION,
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="file or folder")
    p.set_defaults(handler="validate")


def add_schema(sub: Subparsers) -> None:
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
    p.set_defaults(handler="schema")


def add_dkim(sub: Subparsers) -> None:
    p = sub.add_parser(
        "dkim",
        help="DKIM: print the TXT records to publish, or force a held rotation",
        description=(
            "`records` prints, for every DKIM key in DMS's config folder, the TXT record to "
            "publish (zone-file lines, or JSON). Only public keys are read. `switch DOMAIN` "
            "lets the running agent switch signing to the declared selector without waiting "
            "for DNS to serve the new record."
        ),
    )
    actions = p.add_subparsers(dest="dkim_action", metavar="ACTION", required=True)
    records = actions.add_parser("records", help="print the TXT records to publish")
    add_settings_options(records)
    records.add_argument("--output", choices=["zone", "json"], default="zone")
    records.add_argument("domains", nargs="*", metavar="DOMAIN", help="only these domains")
    records.set_defaults(handler="dkim records")
    switch = actions.add_parser("switch", help="switch signing now, without waiting for DNS")
    add_settings_options(switch)
    switch.add_argument("domain", metavar="DOMAIN")
    switch.add_argument("--force", action="store_true", required=True, help="yes, really")
    switch.set_defaults(handler="dkim switch")


def add_check_dns(sub: Subparsers) -> None:
    p = sub.add_parser(
        "check-dns",
        help="check the mail domains' DNS records (MX, SPF, DKIM, DMARC, MTA-STS, ...) once",
        description=CHECK_DNS_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_settings_options(p)
    p.add_argument("domains", nargs="*", metavar="DOMAIN", help="check only these domains")
    p.add_argument("--state", type=Path, metavar="PATH", help="mail state file or folder")
    p.add_argument(
        "--nameserver",
        action="append",
        metavar="HOST[:PORT]",
        help="ask this nameserver (repeatable; default: settings, else resolv.conf)",
    )
    p.add_argument("--mx-host", metavar="NAME", help="the expected MX host name")
    p.add_argument("--ipv4", action="append", metavar="ADDR", help="the MX host's IPv4")
    p.add_argument("--ipv6", action="append", metavar="ADDR", help="the MX host's IPv6")
    p.add_argument("--egress", action="append", metavar="ADDR", help="outgoing mail's address")
    p.add_argument("--send-only", action="append", metavar="DOMAIN", help="a send-only domain")
    p.add_argument(
        "--dms-config-dir",
        type=Path,
        metavar="DIR",
        help="DMS config folder, to compare DKIM keys (needs opendkim/keys or rspamd/dkim)",
    )
    p.add_argument(
        "--mta-sts-ca-bundle",
        type=Path,
        metavar="PEM",
        help="CAs trusted for MTA-STS policy hosts (default: the system store)",
    )
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="one lookup's lifetime")
    p.add_argument("--output", choices=["table", "json"], default="table")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    p.set_defaults(handler="check-dns")


def add_probe_script(sub: Subparsers) -> None:
    p = sub.add_parser(
        "probe-script",
        help="print the mailserver's livenessProbe (fails only on a fresh 'unhealthy')",
        description=(
            "Print the POSIX sh script the mailserver container runs as its livenessProbe. It "
            "reads the verdict file the agent writes (checks.verdictFile, on a volume both "
            "containers mount) and fails only when that file says 'unhealthy' and is fresh; "
            "a missing or stale file (agent absent) passes. --file and --max-age become the "
            "script's defaults (its two arguments still override them)."
        ),
    )
    p.add_argument(
        "--exec",
        action="store_true",
        help="print a JSON exec.command embedding the script instead of the script",
    )
    p.add_argument("--file", type=Path, default=DEFAULT_VERDICT_FILE, help="the verdict file")
    p.add_argument(
        "--max-age", type=int, default=DEFAULT_MAX_AGE, help="seconds a verdict stays fresh"
    )
    p.set_defaults(handler="probe-script")


def add_completion(sub: Subparsers) -> None:
    p = sub.add_parser(
        "completion",
        help="print the bash or zsh completion script",
        description=(
            "Print a completion script generated from this command line. Install it for "
            "bash: dms-agent completion bash > ~/.local/share/bash-completion/completions/"
            "dms-agent; for zsh: dms-agent completion zsh > ~/.zfunc/_dms-agent, with "
            "fpath+=(~/.zfunc) before compinit in ~/.zshrc. Then open a new shell."
        ),
    )
    p.add_argument("shell", choices=["bash", "zsh"])
    p.set_defaults(handler="completion")


# in the order --help lists them
SUBCOMMANDS: list[Callable[[Subparsers], None]] = [
    add_run,
    add_plan,
    add_apply,
    add_import,
    add_validate,
    add_schema,
    add_dkim,
    add_check_dns,
    add_probe_script,
    add_completion,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dms-agent",
        description=(
            "Sidecar for docker-mailserver: keeps accounts, aliases, quotas and DKIM equal to a "
            "declared state, checks the mailserver and its DNS, and serves health and metrics."
        ),
    )
    parser.add_argument("--version", action="version", version=f"dms-agent {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def handler(key: str) -> Callable[[argparse.Namespace], int]:
    """The function doing sub-command ``key``'s work, importing its module now."""
    module, _, func = COMMANDS[key].partition(":")
    found: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(module), func)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return handler(args.handler)(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
