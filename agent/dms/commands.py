"""The `setup` command for each op: argv plus the complete stdin answers.

- Passwords go on stdin as two lines (password, confirmation), never in argv.
- `email del` without ``-y`` asks whether to delete the mail: it is always answered (``n``),
  never left to end-of-input (the Kubernetes exec protocol cannot close stdin).
- DKIM: OpenDKIM takes ``keysize/selector/domain`` pairs; Rspamd takes ONE domain per call and
  also ``keytype``, and refuses ``keysize`` with ed25519.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from agent.dms.actual import DkimBackend
from agent.reconcile.plan import Op


@dataclass(frozen=True, slots=True)
class Command:
    argv: list[str]
    stdin: str | None = field(default=None, repr=False)  # may hold a password

    def show(self) -> str:
        """For logs: argv only (it never holds a secret)."""
        return " ".join(self.argv)


class CommandError(ValueError):
    """The op has no `setup` form (e.g. a pre-hashed password): the file applier must do it."""


def password_answers(password: str) -> str:
    return f"{password}\n{password}\n"


def command_for(
    op: Op, setup: Sequence[str], dkim_backend: DkimBackend = "opendkim", keep_mail: bool = True
) -> Command:
    """``keep_mail``: for a removal with deleteMailData whose maildir is known to be missing,
    DMS's ``-y`` would fail and delete nothing; answering ``n`` removes the account."""
    s = list(setup)
    if op.kind in ("account_add", "password_update"):
        if op.password is None or op.password.kind != "plain":
            raise CommandError(f"{op.kind} {op.target}: a pre-hashed password needs the files")
        verb = "add" if op.kind == "account_add" else "update"
        return Command([*s, "email", verb, op.target], password_answers(op.password.secret.value))
    if op.kind == "account_del":
        # DMS parses options with getopts before the addresses: `--` ends them, so an address
        # whose local part starts with `-` is not read as options
        target = ["--", op.target] if op.target.startswith("-") else [op.target]
        if op.delete_mail_data and not keep_mail:
            return Command([*s, "email", "del", "-y", *target], "")
        return Command([*s, "email", "del", *target], "n\n")
    if op.kind == "quota_set":
        return Command([*s, "quota", "set", op.target, op.value])
    if op.kind == "quota_del":
        return Command([*s, "quota", "del", op.target])
    if op.kind in ("restrict_add", "restrict_del"):
        verb = "add" if op.kind == "restrict_add" else "del"
        return Command([*s, "email", "restrict", verb, op.value, op.target])
    if op.kind in ("alias_add", "alias_del"):
        verb = "add" if op.kind == "alias_add" else "del"
        return Command([*s, "alias", verb, op.target, op.value])
    if op.kind == "dkim_add":
        return Command([*s, "config", "dkim", *_dkim_args(op, dkim_backend)])
    raise CommandError(f"no setup command for {op.kind}")


def _dkim_args(op: Op, backend: DkimBackend) -> list[str]:
    spec = op.dkim
    if spec is None:
        raise CommandError(f"dkim_add {op.target}: no DKIM spec")
    args: list[str] = []
    if backend == "rspamd":
        args += ["keytype", spec.key_type]
        if spec.key_type == "rsa":
            args += ["keysize", str(spec.key_size)]
    else:
        if spec.key_type != "rsa":
            raise CommandError(f"dkim_add {op.target}: OpenDKIM makes RSA keys only")
        args += ["keysize", str(spec.key_size)]
    return [*args, "selector", spec.selector, "domain", op.target]


def list_commands(setup: Sequence[str]) -> dict[str, Command]:
    """The read-only commands observe() uses when the config folder is not mounted."""
    s = list(setup)
    return {
        "email": Command([*s, "email", "list"]),
        "alias": Command([*s, "alias", "list"]),
        "send": Command([*s, "email", "restrict", "list", "send"]),
        "receive": Command([*s, "email", "restrict", "list", "receive"]),
    }
