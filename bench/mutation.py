"""Mutation testing of the modules where a silent bug loses mail or leaks a secret (mutmut).

mutmut flips one thing at a time in a copy of the code (an operator, a constant, a condition,
a call's argument) and runs the tests that reach that function; a mutant the tests do not
notice ("survived") is a behaviour no test pins. For each module below this script copies the
repository into a scratch folder, runs mutmut there with only that module mutated and only its
fast tests selected, and prints the kill rate. Goal: >= 90 % killed per module; every survivor
either killed by a new test or explained in bench/mutation-equivalent.md (listed by name:
those count as explained, not killed). mutmut numbers mutants per function, so editing a
function renames its mutants: an entry there that no longer names a survivor is printed as
stale, to be checked against `mutmut show` in the work folder and renamed or dropped.

Slow (minutes per module on two cores); not part of CI's default run. Needs the test extras
(mutmut). Run from the repository root:

    .venv/bin/python bench/mutation.py                 # every module
    .venv/bin/python bench/mutation.py plan verdict    # some, by short name
    .venv/bin/python bench/mutation.py --survivors     # also list each unexplained survivor
    .venv/bin/python bench/mutation.py reconciler --functions policy,_settle_retries
    .venv/bin/python bench/mutation.py reconciler --keep   # re-test only the last survivors

--functions narrows a module to some functions (a whole module can take an hour on a busy
machine); --keep reuses the last run's results in --workdir and re-tests only the mutants not
killed then (after a new test: the figure for the unchanged code, in minutes).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT = Path(__file__).resolve().with_name("mutation-equivalent.md")
GOAL = 90.0


@dataclass(frozen=True)
class Target:
    path: str  # the module mutated
    tests: list[str]  # pytest arguments selecting its fast tests
    # mutant name patterns (fnmatch) when only part of the module is in scope
    only: list[str] = field(default_factory=list)


TARGETS: dict[str, Target] = {
    "plan": Target(
        "agent/reconcile/plan.py",
        [
            "tests/test_reconcile_plan.py",
            "tests/test_reconcile_guards.py",
            "tests/test_reconcile_plan_details.py",
            "tests/test_reconcile_quirks.py",  # routing around DMS's matching quirks
        ],
    ),
    "ledger": Target(
        "agent/reconcile/ledger.py",
        [
            "tests/test_reconcile_units.py",
            "tests/test_reconcile_ledger.py",
            "tests/test_reconcile_ledger_hostile.py",  # typed fields, the key's mode, streaming
            "tests/test_reconcile_failsafe.py::test_corrupt_ledger_fails_closed_with_a_located_error",
            "tests/test_reconcile_batch.py",  # batch(): one append for the run
        ],
    ),
    "apply": Target(
        "agent/reconcile/apply.py",
        [
            "tests/test_reconcile_applier.py",
            "tests/test_reconcile_failsafe.py",
            "tests/test_reconcile_errors.py",  # DMS's error lines, joined and redacted
            "tests/test_reconcile_quirks.py",  # ops written to the files directly
            "tests/test_reconcile_batch.py",  # run_batch: one write per file, one append
        ],
    ),
    "commands": Target(
        "agent/dms/commands.py",
        # quirks: the argv that ends DMS's options before an address starting with "-"
        ["tests/test_reconcile_commands.py", "tests/test_reconcile_quirks.py"],
    ),
    "fileapply": Target(
        "agent/dms/fileapply.py",
        [
            "tests/test_reconcile_units.py",
            "tests/test_reconcile_fileapply.py",
            "tests/test_reconcile_access_files.py",
            "tests/test_reconcile_batch.py",  # apply_batch: held files, one write per file
            "tests/test_reconcile_reuse.py",  # the accounts file's addresses kept
        ],
    ),
    # the deletion and password paths: the pass and its re-plan under the lock (the deletion
    # approval, DMS's settings read again), whether it writes, the ledger's reload, digests,
    # policy, applying, recording, retries
    "reconciler": Target(
        "agent/reconcile/reconciler.py",
        [  # the tests that run passes (the other tests/test_reconcile_* never reach it)
            "tests/test_reconcile_engine.py",
            "tests/test_reconcile_failsafe.py",
            "tests/test_reconcile_apply.py",
            "tests/test_reconcile_ledger_facts.py",
            "tests/test_reconcile_ledger_hostile.py",
            "tests/test_reconcile_errors.py",
            "tests/test_reconcile_dmsinfo.py",
            "tests/test_reconcile_filebytes.py",
            "tests/test_reconcile_loop.py",
            "tests/test_reconcile_progress.py",
            "tests/test_reconcile_quirks.py",
            "tests/test_reconcile_truth.py",
            "tests/test_reconcile_batch.py",  # runs of ops done as batches
            "tests/test_reconcile_reuse.py",
        ],
        only=[
            "agent.reconcile.reconciler.xǁEngineǁrun_pass__mutmut_*",
            "agent.reconcile.reconciler.xǁEngineǁ_pass__mutmut_*",
            "agent.reconcile.reconciler.xǁEngineǁ_writes__mutmut_*",
            "agent.reconcile.reconciler.xǁEngineǁrefresh_ledger__mutmut_*",
            "agent.reconcile.reconciler.xǁEngineǁdigests__mutmut_*",
            "agent.reconcile.reconciler.xǁEngineǁ_digest_changed__mutmut_*",
            "agent.reconcile.reconciler.xǁEngineǁpolicy__mutmut_*",
            "agent.reconcile.reconciler.xǁEngineǁ_apply__mutmut_*",
            "agent.reconcile.reconciler.xǁEngineǁ_record_plan_facts__mutmut_*",
            "agent.reconcile.reconciler.xǁEngineǁ_settle_retries__mutmut_*",
            "agent.reconcile.reconciler.xǁReconcilerǁreconcile__mutmut_*",
        ],
    ),
    "verdict": Target(
        "agent/checks/verdict.py",
        [
            "tests/test_checks_verdict.py",
            "tests/test_checks_verdict_details.py",
            "tests/test_checks_safety.py",  # the escalation cap across restarts
        ],
    ),
    "probe": Target(
        "agent/checks/probe.py",
        ["tests/test_checks_verdict.py", "tests/test_checks_verdict_details.py"],
    ),
}

STATUS = re.compile(r"^\s*(\S+): (.+)$")


def explained() -> set[str]:
    """Mutant names listed (in backquotes) in the equivalents file."""
    if not EQUIVALENT.exists():
        return set()
    return set(re.findall(r"`(agent\.[^`]+__mutmut_\d+)`", EQUIVALENT.read_text()))


def stale_entries(
    target: Target, known: set[str], results: dict[str, str], whole: bool
) -> list[str]:
    """Names in the equivalents file that no longer name a surviving mutant of ``target``:
    mutmut numbers mutants per function, so an edit there renames them (then an entry may
    name a killed mutant, or none). ``whole``: the run saw every mutant of the module, so a
    name it did not see is stale too; otherwise names out of its scope are not judged."""
    module = target.path.removesuffix(".py").replace("/", ".") + "."
    return sorted(
        k
        for k in known
        if k.startswith(module)
        and (results.get(k) in ("killed", "timeout") or (whole and k not in results))
    )


def prepare(work: Path, target: Target, keep: bool) -> None:
    """A copy of the tree for mutmut; ``keep``: refresh the copy, keep mutmut's results."""
    if work.exists() and not keep:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    for name in ("agent", "tests", "examples"):  # examples: settings some tests load
        shutil.copytree(
            ROOT / name,
            work / name,
            ignore=shutil.ignore_patterns("__pycache__"),
            dirs_exist_ok=True,
        )
    # pytest's settings without the [tool.mutmut] lookup: mutmut then reads setup.cfg
    text = (ROOT / "pyproject.toml").read_text()
    (work / "pyproject.toml").write_text(text.replace("[tool.mutmut]", "[tool.not-mutmut]"))
    tests = "\n    ".join(t for t in target.tests if (ROOT / t.split("::")[0]).exists())
    (work / "setup.cfg").write_text(
        "[mutmut]\n"
        "source_paths = agent\n"
        f"only_mutate = {target.path}\n"
        f"pytest_add_cli_args_test_selection =\n    {tests}\n"
        "pytest_add_cli_args = -p no:cacheprovider -q\n"
        "use_git_change_detection = false\n"
        "also_copy = examples\n"  # mutmut runs the tests in its own copy of the tree
    )


def scope(target: Target, functions: list[str]) -> list[str]:
    """mutmut's name patterns for the mutants in scope: the target's, or the named functions'
    (``Class.method`` names are spelt ``xǁClassǁmethod`` by mutmut, functions ``x_name``)."""
    if not functions:
        return target.only
    module = target.path.removesuffix(".py").replace("/", ".")
    return [
        p for f in functions for p in (f"{module}.xǁ*ǁ{f}__mutmut_*", f"{module}.x_{f}__mutmut_*")
    ]


def results_of(work: Path, patterns: list[str]) -> dict[str, str]:
    """mutmut's verdict per mutant in scope (all of the module's when no patterns)."""
    listing = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    )
    results = {}
    for line in listing.stdout.splitlines():
        m = STATUS.match(line)
        if m and (not patterns or any(fnmatch(m.group(1), p) for p in patterns)):
            results[m.group(1)] = m.group(2)
    return results


def run(name: str, target: Target, args: argparse.Namespace) -> dict[str, str]:
    work = args.workdir / name
    patterns = scope(target, args.functions)
    kept = results_of(work, patterns) if args.keep and (work / "mutants").exists() else {}
    prepare(work, target, args.keep)
    # mutmut re-runs every mutant named on its command line; with --keep only the ones that
    # were not killed the last time are named (changed tests are picked up by mutmut itself)
    names = [k for k, v in kept.items() if v not in ("killed", "timeout")] if kept else patterns
    started = time.monotonic()
    log = work / "mutmut.log"
    if kept and not names:
        return kept  # everything in scope was killed already
    with log.open("w") as out:
        subprocess.run(
            [sys.executable, "-m", "mutmut", "run", "--max-children", str(args.children), *names],
            cwd=work,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if "failed to collect stats" in log.read_text(errors="replace"):
        # a test failed on the unmutated code: no figure would mean anything
        raise SystemExit(f"{name}: the tests fail without any mutant; see {log}")
    print(f"  ({name}: {time.monotonic() - started:.0f} s, log {log})", file=sys.stderr)
    return results_of(work, patterns)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"short names: {', '.join(TARGETS)}")
    parser.add_argument("--survivors", action="store_true", help="list unexplained survivors")
    parser.add_argument("--children", type=int, default=1, help="parallel test processes")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "dms-mut")
    parser.add_argument(
        "--functions",
        type=lambda s: s.split(","),
        default=[],
        help="only these functions or methods (comma-separated names, e.g. _settle_retries)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="reuse the last run's results in --workdir: re-test only what was not killed",
    )
    args = parser.parse_args()
    names = args.modules or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; known: {', '.join(TARGETS)}")
    known = explained()
    rows, missed = [], 0
    for name in names:
        results = run(name, TARGETS[name], args)
        counts = Counter(results.values())
        total = len(results)
        killed = counts["killed"] + counts["timeout"]
        left = sorted(k for k, v in results.items() if v not in ("killed", "timeout"))
        equivalent = [k for k in left if k in known]
        rate = 100.0 * killed / total if total else 0.0
        explained_rate = 100.0 * (killed + len(equivalent)) / total if total else 0.0
        missed += explained_rate < GOAL
        rows.append((TARGETS[name].path, total, killed, len(equivalent), rate, explained_rate))
        if args.survivors:
            for k in left:
                if k not in known:
                    print(f"    {results[k]:<10} {k}")
        whole = not scope(TARGETS[name], args.functions)
        for k in stale_entries(TARGETS[name], known, results, whole):
            print(f"    stale entry in {EQUIVALENT.name} ({results.get(k, 'no such mutant')}): {k}")
    print(f"{'module':<32} {'mutants':>7} {'killed':>6} {'equiv':>5} {'kill%':>6} {'+equiv%':>7}")
    for path, total, killed, equivalents, rate, explained_rate in rows:
        flag = "" if explained_rate >= GOAL else f"  below the {GOAL:g} % goal"
        figures = f"{total:>7} {killed:>6} {equivalents:>5} {rate:>5.1f}% {explained_rate:>6.1f}%"
        print(f"{path:<32} {figures}{flag}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
