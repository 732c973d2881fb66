"""What the reconciler keeps out of the idle agent's memory: bcrypt is loaded only when the
file applier hashes a plain password (with a kube, docker or local executor, `setup` does)."""

from __future__ import annotations

import subprocess
import sys


def modules_after(code: str) -> set[str]:
    """What ``code`` prints in a fresh interpreter, then the modules it holds, as words."""
    probe = f"{code}\nimport sys\nprint(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_reconciler_loads_without_bcrypt() -> None:
    modules = modules_after("import agent.reconcile.reconciler")
    assert "agent.dms.fileapply" in modules  # the applier is there, its hashing library not
    assert "bcrypt" not in modules


def test_hashing_a_plain_password_loads_bcrypt_then() -> None:
    code = (
        "from agent.dms.fileapply import hash_password\n"
        "from agent.mailstate.model import PasswordIntent, Secret\n"
        "print(hash_password(PasswordIntent('plain', Secret('correct horse')))[:15])"
    )
    printed = modules_after(code)  # the hash's scheme prefix, then the modules
    assert "{BLF-CRYPT}$2b$" in printed
    assert "bcrypt" in printed
