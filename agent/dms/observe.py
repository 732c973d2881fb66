"""Read DMS's actual state: from its config folder when mounted, else from `setup … list`.

The files are DMS's own (postfix-accounts.cf, postfix-virtual.cf, dovecot-quotas.cf, the access
files, the DKIM key folders). DMS edits them one after another without a common lock (`email
del` touches three files in turn), so a read can catch a half-edited state: the reader waits
while a fresh DMS lock file (``<config>/*.lock``) exists and re-reads until the files' mtimes are
the same before and after the read.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from sys import intern
from typing import Any, TypeVar, cast

from agent.dms import DMS_CONFIG_DIR, files
from agent.dms.actual import Actual, DkimBackend, DmsInfo
from agent.dms.commands import list_commands
from agent.executor import Executor
from agent.mailstate.model import NO_RESTRICTIONS, Account, MailState, Restriction

log = logging.getLogger("dms_agent.observe")
T = TypeVar("T")

DMS_LOCK_STALE = 60.0  # DMS itself treats a lock older than a minute as stale
AGENT_LOCK = "dms-agent.lock"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
SETTINGS_FILE = "/etc/dms-settings"  # DMS writes its resolved environment here at start
READY_MARKER = ["test", "-e", "/CONTAINER_START"]  # DMS touches it when start-up is done


class ObserveError(Exception):
    """The actual state cannot be read (now); the message says why."""


class DmsBusy(ObserveError):
    """DMS holds a lock on its config folder: an edit is in flight."""


# --- from the files -------------------------------------------------------------------------


def signature(config_dir: Path) -> tuple[object, ...]:
    """What changes whenever DMS (``sed -i``: a new inode; ``>>``: size and mtime), a person or
    the agent edits a file the observer reads, DKIM key folders included."""
    out: list[object] = []
    paths = [config_dir / name for name in files.NATIVE_FILES]
    for keys in (config_dir / "opendkim" / "keys", config_dir / "rspamd" / "dkim"):
        paths.append(keys)
        if keys.name == "keys" and keys.is_dir():
            paths += sorted(p for p in keys.iterdir() if p.is_dir())
    for path in paths:
        try:
            st = path.stat()
            out.append((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
        except FileNotFoundError:
            out.append(None)
    return tuple(out)


def _busy(config_dir: Path, now: float) -> str | None:
    for lock in config_dir.glob("*.lock"):
        if lock.name == AGENT_LOCK:
            continue
        try:
            age = now - lock.stat().st_mtime
        except FileNotFoundError:
            continue
        if age < DMS_LOCK_STALE:
            return lock.name
    return None


def _read(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:  # hand-edited in a latin-1 editor, say: name the spot
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ObserveError(
            f"{path}:{line}: not UTF-8 text (the first invalid byte is in column {column}); "
            "DMS and the agent read this file as UTF-8: save it as UTF-8"
        ) from None


def read_files(config_dir: Path, info: DmsInfo | None = None, missing_ok: bool = False) -> Actual:
    """One consistent read of the config folder (blocking: run it in a thread).
    ``missing_ok``: a folder not created yet is empty (the file executor's fresh target)."""
    if missing_ok and not config_dir.exists():
        return Actual(MailState(), {}, {}, info or DmsInfo(), "files")
    if not config_dir.is_dir():
        raise ObserveError(f"{config_dir}: the DMS config folder does not exist")
    return _read_consistent(config_dir, info or DmsInfo())[0]


def _read_consistent(
    config_dir: Path, info: DmsInfo, cache: ParseCache | None = None
) -> tuple[Actual, tuple[object, ...]]:
    for _ in range(5):
        holder = _busy(config_dir, time.time())
        if holder is not None:
            raise DmsBusy(f"DMS is editing its files ({holder} is held)")
        before = signature(config_dir)
        actual = _parse_folder(config_dir, info, cache)
        if signature(config_dir) == before:
            return actual, before
        time.sleep(0.05)  # an edit landed mid-read: read again
    raise DmsBusy(f"{config_dir}: the files keep changing while being read")


class FolderReader:
    """read_files with memory: when no file changed since the last read (same signature),
    the last result is returned without parsing 10,000 lines again. Blocking: use a thread."""

    def __init__(self) -> None:
        self._last: tuple[Path, DmsInfo, tuple[object, ...], Actual] | None = None
        self._files: ParseCache = {}  # per file: only a changed file is parsed again

    def unchanged(self, config_dir: Path, info: DmsInfo) -> Actual | None:
        """The last result if no file changed since (a few stats: cheap enough for the event
        loop, where it saves an update's pass two thread hand-offs); else None."""
        last = self._last
        if last is not None and last[:2] == (config_dir, info):
            if _busy(config_dir, time.time()) is None and signature(config_dir) == last[2]:
                return last[3]
        return None

    def read(self, config_dir: Path, info: DmsInfo, missing_ok: bool = False) -> Actual:
        if missing_ok and not config_dir.exists():
            return read_files(config_dir, info, missing_ok)
        if (same := self.unchanged(config_dir, info)) is not None:
            return same
        last = self._last
        if not config_dir.is_dir():
            raise ObserveError(f"{config_dir}: the DMS config folder does not exist")
        if last is not None and last[0] != config_dir:
            self._files.clear()
        # the last result is out of date: let it go before the new one is built, or at
        # 100,000 accounts both would be held at once (~13 MB of a pass's peak)
        self._last = last = None
        actual, sig = _read_consistent(config_dir, info, self._files)
        self._last = (config_dir, info, sig, actual)
        return actual

    def forget(self) -> None:
        self._last = None
        self._files.clear()


ParseCache = dict[str, tuple[object, "files.Parsed[Any]"]]


def _parse_file(
    config_dir: Path,
    name: str,
    parse: Callable[[files.Text, str], files.Parsed[T]],
    cache: ParseCache,
) -> files.Parsed[T]:
    """Parse one file, or reuse the last parse when its stat signature is unchanged."""
    path = config_dir / name
    try:
        st = path.stat()
        sig: object = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    except FileNotFoundError:
        sig = None
    hit = cache.get(name)
    if hit is not None and hit[0] == sig:
        return cast("files.Parsed[T]", hit[1])
    cache.pop(name, None)  # stale: not kept while the new parse is built beside it
    del hit
    parsed = _parse_streamed(path, name, parse)
    cache[name] = (sig, parsed)
    return parsed


def _parse_streamed(
    path: Path, name: str, parse: Callable[[files.Text, str], files.Parsed[T]]
) -> files.Parsed[T]:
    """Parsed a line at a time from the open file: a 100,000-line file's text (14 MB) never
    sits in memory beside the entries being built."""
    try:
        with path.open("rb") as lines:
            return parse(lines, name)
    except FileNotFoundError:
        return parse("", name)
    except UnicodeDecodeError:
        _read(path)  # read whole only now, to name the line and column (ObserveError)
        raise


def _parse_folder(config_dir: Path, info: DmsInfo, cache: ParseCache | None = None) -> Actual:
    c: ParseCache = {} if cache is None else cache
    accounts_p = _parse_file(config_dir, files.ACCOUNTS_FILE, files.parse_accounts, c)
    virtual_p = _parse_file(config_dir, files.VIRTUAL_FILE, files.parse_virtual, c)
    quotas_p = _parse_file(config_dir, files.QUOTAS_FILE, files.parse_quotas, c)
    send_p = _parse_file(config_dir, files.SEND_ACCESS_FILE, files.parse_access, c)
    receive_p = _parse_file(config_dir, files.RECEIVE_ACCESS_FILE, files.parse_access, c)
    for parsed in (accounts_p, virtual_p, quotas_p, send_p, receive_p):
        for err in parsed.errors:
            log.warning("DMS file line not understood (ignored): %s", err)
    quotas = {q.address.lower(): q.quota for q in quotas_p.entries}
    restrict: dict[str, set[Restriction]] = {}
    for kind, parsed in (("send", send_p), ("receive", receive_p)):
        for entry in parsed.entries:
            if entry.action.upper().startswith("REJECT"):
                restrict.setdefault(entry.address.lower(), set()).add(kind)  # type: ignore[arg-type]
    accounts: dict[str, Account] = {}
    hashes: dict[str, str] = {}
    for line in accounts_p.entries:
        addr = _lower(line.address)
        held = restrict.get(addr)
        accounts[addr] = Account(
            addr, quotas.get(addr), frozenset(held) if held else NO_RESTRICTIONS
        )
        hashes[addr] = line.hash
    aliases = {a.alias.lower(): tuple(r.lower() for r in a.recipients) for a in virtual_p.entries}
    state = MailState(accounts=accounts, aliases=aliases)
    spelled = [line.address for line in accounts_p.entries]
    spelled += [q.address for q in quotas_p.entries]
    for a in virtual_p.entries:
        spelled += [a.alias, *a.recipients]
    access = {
        "send": _raw_lines(config_dir / files.SEND_ACCESS_FILE),
        "receive": _raw_lines(config_dir / files.RECEIVE_ACCESS_FILE),
    }
    dkim = read_dkim(config_dir, info.dkim_backend)
    return Actual(state, hashes, dkim, info, "files", access, upper_cased(spelled))


def _lower(address: str) -> str:
    """``address`` lower-cased and interned, as the mail state's parser does: the desired and
    the actual state then share one string per address (100,000 of them: ~8 MB a copy)."""
    lowered = address.lower()
    return intern(address if lowered == address else lowered)


def upper_cased(spellings: list[str]) -> frozenset[str]:
    """The lower-cased form of every spelling that holds upper case letters."""
    return frozenset(s.lower() for s in spellings if s != s.lower())


def _raw_lines(path: Path) -> tuple[str, ...]:
    return tuple(_read(path).splitlines())


def read_dkim(config_dir: Path, backend: DkimBackend) -> dict[str, frozenset[str]]:
    """domain -> selectors that have a private key, in the backend's layout."""
    found: dict[str, set[str]] = {}
    if backend == "rspamd":
        for key in (config_dir / "rspamd" / "dkim").glob("*.private.txt"):
            parsed = _rspamd_key_name(key.name.removesuffix(".private.txt"))
            if parsed:
                found.setdefault(parsed[1], set()).add(parsed[0])
    else:
        for key in (config_dir / "opendkim" / "keys").glob("*/*.private"):
            found.setdefault(key.parent.name.lower(), set()).add(key.name.removesuffix(".private"))
    return {d: frozenset(s) for d, s in found.items()}


def _rspamd_key_name(stem: str) -> tuple[str, str] | None:
    """``rsa-<size>-<selector>-<domain>`` or ``ed25519-<selector>-<domain>`` -> (sel, domain)."""
    if stem.startswith("rsa-"):
        parts = stem.split("-", 2)
        rest = parts[2] if len(parts) == 3 else ""
    elif stem.startswith("ed25519-"):
        rest = stem.removeprefix("ed25519-")
    else:
        return None
    selector, sep, domain = rest.partition("-")
    return (selector, domain.lower()) if sep and domain else None


def account_hash(config_dir: Path, address: str) -> str | None:
    """The hash DMS holds for one account (after a `setup` wrote it)."""
    text = _read(config_dir / files.ACCOUNTS_FILE)
    want = address.lower()
    for line in files.iter_accounts(text):  # one line at a time: the file may be 100,000
        if isinstance(line, files.AccountLine) and line.address.lower() == want:
            return line.hash
    return None


# --- from `setup … list` --------------------------------------------------------------------


def parse_email_list(text: str) -> dict[str, Account]:
    """``* user@dom [( used / limit ) [pct%]]`` lines; ``~`` as limit means no quota."""
    accounts: dict[str, Account] = {}
    for raw in ANSI.sub("", text).splitlines():
        line = raw.strip()
        if not line.startswith("* "):
            continue
        fields = line[2:].split()
        # v15.1.0 without a final newline glues the next log line onto the last account
        token = fields[0].split("[", 1)[0] if fields else ""
        if "@" not in token:
            continue
        addr = token.lower()
        quota = None
        m = re.search(r"\(\s*\S+\s*/\s*(\S+)\s*\)", line)
        if m and m.group(1) not in ("~", "0"):
            quota = m.group(1)
        accounts[addr] = Account(addr, quota)
    return accounts


def parse_alias_list(text: str) -> dict[str, tuple[str, ...]]:
    aliases: dict[str, tuple[str, ...]] = {}
    for raw in ANSI.sub("", text).splitlines():
        line = raw.strip()
        if not line.startswith("* "):
            continue
        fields = line[2:].split(None, 1)
        if len(fields) == 2:
            recips = tuple(r.lower() for r in fields[1].replace(",", " ").split())
            aliases[fields[0].lower()] = recips
    return aliases


def restrict_list_lines(text: str) -> tuple[str, ...]:
    """The access-file lines `restrict list` prints (DMS greps the REJECT lines), as they are."""
    lines = []
    for raw in ANSI.sub("", text).splitlines():
        fields = raw.split()
        if fields and "@" in fields[0] and not fields[0].startswith("["):
            lines.append(raw)
    return tuple(lines)


def parse_restrict_list(text: str) -> set[str]:
    return {line.split()[0].lower() for line in restrict_list_lines(text)}


def listed_spellings(email_list: str, alias_list: str) -> list[str]:
    """Addresses as `email list` and `alias list` print them (DMS prints the files' spelling)."""
    out = []
    for raw in ANSI.sub("", email_list + "\n" + alias_list).splitlines():
        line = raw.strip()
        if line.startswith("* "):
            fields = line[2:].replace(",", " ").split()
            out += [f for f in fields if "@" in f and not f.startswith(("(", "["))]
    return out


LISTED_FILES = {
    "email": files.ACCOUNTS_FILE,
    "alias": files.VIRTUAL_FILE,
    "send": files.SEND_ACCESS_FILE,
    "receive": files.RECEIVE_ACCESS_FILE,
}


async def observe_commands(
    executor: Executor,
    setup: list[str],
    timeout: float,
    info: DmsInfo,
    container_config_dir: str = DMS_CONFIG_DIR,
) -> Actual:
    """The slow way (~7 ms per account in DMS): no hashes, so no drift detection."""
    cmds = list_commands(setup)
    outputs: dict[str, str] = {}
    for name, cmd in cmds.items():
        res = await executor.run(cmd.argv, cmd.stdin, timeout)
        if res.unknown:
            raise ObserveError(f"`{cmd.show()}` gave no answer ({res.stderr.strip()})")
        if not res.ok:
            # DMS's lists exit 1 for a missing or empty file, which means "nothing"; any other
            # failure must not read as "no accounts" (checked without relying on messages)
            path = f"{container_config_dir}/{LISTED_FILES[name]}"
            check = await executor.run(["test", "-s", path], None, timeout)
            if check.exit_code != 1:
                raise ObserveError(f"`{cmd.show()}` failed (exit {res.exit_code})")
        outputs[name] = res.stdout if res.ok else ""
    accounts = parse_email_list(outputs["email"])
    for kind in ("send", "receive"):
        for addr in parse_restrict_list(outputs[kind]):
            acc = accounts.get(addr)
            if acc is not None:
                restrict = acc.restrict | {kind}
                accounts[addr] = Account(addr, acc.quota, frozenset(restrict))  # type: ignore[arg-type]
    state = MailState(accounts=accounts, aliases=parse_alias_list(outputs["alias"]))
    access = {kind: restrict_list_lines(outputs[kind]) for kind in ("send", "receive")}
    cased = upper_cased(listed_spellings(outputs["email"], outputs["alias"]))
    return Actual(state, None, None, info, "commands", access, cased)


# --- DMS's settings and start-up ------------------------------------------------------------


def info_from_env(env: Mapping[str, str]) -> DmsInfo:
    """DMS v15 defaults: FILE provisioner, quotas on, OpenDKIM on, Rspamd off."""
    provisioner = env.get("ACCOUNT_PROVISIONER", "FILE") or "FILE"
    quotas = env.get("ENABLE_QUOTAS", "1") != "0"
    rspamd = env.get("ENABLE_RSPAMD", "0") == "1"
    opendkim = env.get("ENABLE_OPENDKIM", "1") == "1"
    backend: DkimBackend = "rspamd" if rspamd and not opendkim else "opendkim"
    if not rspamd and not opendkim:
        backend = "none"
    return DmsInfo(provisioner=provisioner, quotas_enabled=quotas, dkim_backend=backend)


def parse_env_lines(text: str) -> dict[str, str]:
    """``KEY=value`` or ``KEY='value'`` lines (env output or /etc/dms-settings)."""
    env = {}
    for line in text.splitlines():
        key, sep, value = line.removeprefix("export ").partition("=")
        if sep and key.isidentifier():
            env[key] = value.strip().strip("'\"")
    return env


CONFIGURED = "dms.environment in the agent's settings"


def info_without_dms(configured: Mapping[str, str]) -> DmsInfo:
    """The file executor: no DMS to read, so the operator's dms.environment or DMS's defaults."""
    source = CONFIGURED if configured else "DMS's defaults: no DMS to read and no dms.environment"
    return replace(info_from_env(configured), source=source)


async def read_info(
    executor: Executor | None,
    configured: Mapping[str, str],
    timeout: float,
    executor_kind: str = "kube",
) -> DmsInfo:
    """Settings' ``dms.environment`` wins; else DMS's resolved settings file, else the env of
    the executor's commands. The answer says which it was (``DmsInfo.source``)."""
    if executor is None:
        return info_without_dms(configured)
    env: dict[str, str] = {}
    source = CONFIGURED
    if not configured:
        res = await executor.run(["cat", SETTINGS_FILE], None, timeout)
        if res.ok:
            source = f"{SETTINGS_FILE}, read through the {executor_kind} executor"
        else:
            res = await executor.run(["env"], None, timeout)
            source = _env_source(executor_kind, res.ok)
        if res.ok:
            env = parse_env_lines(res.stdout)
    env.update(configured)
    return replace(info_from_env(env), source=source)


def _env_source(executor_kind: str, read: bool) -> str:
    if not read:
        return (
            f"DMS's defaults: neither {SETTINGS_FILE} nor `env` could be read; set dms.environment"
        )
    if executor_kind == "local":
        return (
            f"the agent's own environment: {SETTINGS_FILE} is not on this machine (the local "
            "executor runs outside DMS's container?); set dms.environment"
        )
    return f"`env` through the {executor_kind} executor: {SETTINGS_FILE} was not readable"


@dataclass(slots=True)
class StartWait:
    ready: bool
    message: str


DMS_IMAGE_MARKER = Path("/usr/local/bin/helpers/index.sh")  # DMS's scripts, in every image


def default_probe_misplaced(probe: list[str], executor_kind: str) -> bool:
    """The default probe asks for a file of DMS's image: with the local executor on a machine
    that is not DMS's image it can never succeed (docker/kube exec into the container can)."""
    return executor_kind == "local" and probe == READY_MARKER and not DMS_IMAGE_MARKER.exists()


async def dms_started(
    executor: Executor | None, probe: list[str], timeout: float, executor_kind: str = "kube"
) -> StartWait:
    """DMS is usable once its start-up marker exists (no executor: nothing to wait for)."""
    if executor is None or not probe:
        return StartWait(True, "no start-up probe")
    if default_probe_misplaced(probe, executor_kind):
        return StartWait(
            True,
            "default dms.readyCommand skipped: the local executor does not run in DMS's image "
            f"({DMS_IMAGE_MARKER} is missing); set dms.readyCommand to probe your DMS",
        )
    res = await executor.run(probe, None, timeout)
    if res.ok:
        return StartWait(True, "DMS has started")
    return StartWait(False, f"DMS is still starting (`{' '.join(probe)}` exit {res.exit_code})")


async def observe(
    config_dir: Path | None,
    executor: Executor | None,
    setup: list[str],
    timeout: float,
    info: DmsInfo,
    busy_wait: float = 30.0,
    missing_ok: bool = False,
    reader: FolderReader | None = None,
    container_config_dir: str = DMS_CONFIG_DIR,
) -> Actual:
    """Files when mounted (waiting out DMS's own locks), else `setup … list`."""
    if config_dir is None:
        if executor is None:
            raise ObserveError("neither a DMS config folder nor an executor is configured")
        return await observe_commands(executor, setup, timeout, info, container_config_dir)
    if reader is not None and (same := reader.unchanged(config_dir, info)) is not None:
        return same
    deadline = time.monotonic() + busy_wait
    while True:
        try:
            if reader is not None:
                return await asyncio.to_thread(reader.read, config_dir, info, missing_ok)
            return await asyncio.to_thread(read_files, config_dir, info, missing_ok)
        except DmsBusy:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
