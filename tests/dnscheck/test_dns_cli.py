"""``dms-agent check-dns`` as a person runs it: a real process against the real knotd."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.dnscheck import world
from tests.dnscheck.conftest import World

ROOT = Path(__file__).resolve().parents[2]


def check_dns(w: World, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "agent", "check-dns", "--nameserver", w.knot.nameserver]
    argv += ["--mx-host", world.MX, "--ipv4", world.V4, "--ipv6", world.V6]
    argv += ["--dms-config-dir", str(w.config_dir), *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMS_AGENT_")}
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)


def test_all_good_exits_zero_with_a_table(dns_world: World, tmp_path: Path) -> None:
    settings = tmp_path / "agent.yaml"
    settings.write_text(
        "dns:\n"
        f"  egress: [{world.V4}]\n"
        "  mtaSts:\n"
        f"    caBundle: {dns_world.ca.ca_pem}\n"
        f"    port: {dns_world.https_port}\n"
        "    connectTo: 127.0.0.1\n"
    )
    out = check_dns(dns_world, "-c", str(settings), "good.test")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["DOMAIN", "CHECK", "STATUS", "MESSAGE"]
    for check in ("mx", "spf", "dkim", "dmarc", "mta-sts", "tls-rpt"):
        assert any(line.split()[:3] == ["good.test", check, "PASS"] for line in lines), check
    assert any(line.split()[:3] == [world.MX, "ptr", "PASS"] for line in lines)
    assert "\033[" not in out.stdout  # not a terminal: no colour


def test_failure_exits_one_and_json_says_why(dns_world: World) -> None:
    out = check_dns(dns_world, "nomx.test", "--output", "json")
    assert out.returncode == 1, out.stderr
    data = json.loads(out.stdout)
    mx = data["domains"]["nomx.test"]["checks"]["mx"]
    assert mx["status"] == "fail" and mx["expected"] == world.MX and mx["fix"]
    assert data["summary"]["fail"] >= 1


def test_colour_when_asked(dns_world: World) -> None:
    out = check_dns(dns_world, "nullmx.test", "--color", "always")
    assert "\033[31mFAIL" in out.stdout
    assert "fix:" in out.stdout


def test_domains_from_a_state_file(dns_world: World, tmp_path: Path) -> None:
    state = tmp_path / "mailserver.yaml"
    state.write_text(
        "apiVersion: dms-agent/v1\n"
        "domains:\n  dkimbad.test: {dkim: {selector: mail}}\n"
        "accounts:\n  alice@twospf.test: {}\n"
    )
    out = check_dns(dns_world, "--state", str(state), "--output", "json")
    data = json.loads(out.stdout)
    assert {"dkimbad.test", "twospf.test"} <= set(data["domains"])
    assert data["domains"]["twospf.test"]["checks"]["spf"]["status"] == "fail"
    assert out.returncode == 1


def test_silent_nameserver_exits_three_not_one(dns_world: World) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        argv = [sys.executable, "-m", "agent", "check-dns", "--nameserver", f"127.0.0.1:{port}"]
        argv += ["--timeout", "0.3", "--output", "json", "good.test"]
        out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 3, out.stdout + out.stderr
    statuses = {
        c["status"] for c in json.loads(out.stdout)["domains"]["good.test"]["checks"].values()
    }
    assert statuses == {"error"}


def test_bad_flag_value_is_a_clear_error(dns_world: World) -> None:
    out = check_dns(dns_world, "--nameserver", "not-an-address", "good.test")
    assert out.returncode == 2
    assert "not-an-address" in out.stderr


def test_missing_state_path_is_a_clear_error(dns_world: World, tmp_path: Path) -> None:
    out = check_dns(dns_world, "--state", str(tmp_path / "nope.yaml"))
    assert out.returncode == 2
    assert "nope.yaml: no such state file or folder" in out.stderr


def test_invalid_state_file_is_rejected_with_its_line(dns_world: World, tmp_path: Path) -> None:
    state = tmp_path / "mailserver.yaml"
    state.write_text("apiVersion: dms-agent/v1\naccounts:\n  not-an-address: {}\n")
    out = check_dns(dns_world, "--state", str(state))
    assert out.returncode == 2
    assert f"{state}:3:" in out.stderr


def test_domains_from_dms_native_files(dns_world: World, tmp_path: Path) -> None:
    (tmp_path / "postfix-accounts.cf").write_text("bob@nullmx.test|{SHA512-CRYPT}$6$x$y\n")
    out = check_dns(dns_world, "--state", str(tmp_path), "--output", "json")
    data = json.loads(out.stdout)
    assert data["domains"]["nullmx.test"]["checks"]["mx"]["status"] == "fail"


def test_dead_nameserver_stops_the_run_early_with_exit_three(dns_world: World) -> None:
    """23 domains, default timeouts, a nameserver that never answers: one error per check,
    and the run over well before 23 domains' worth of lookup lifetimes (bounded at 10 s)."""
    names = [f"d{i:02}.test" for i in range(23)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # bound, never read: every query times out
        port = silent.getsockname()[1]
        argv = [sys.executable, "-m", "agent", "check-dns", "--nameserver", f"127.0.0.1:{port}"]
        argv += ["--mx-host", world.MX, "--ipv4", world.V4, "--output", "json", *names]
        env = {k: v for k, v in os.environ.items() if not k.startswith("DMS_AGENT_")}
        out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=10, env=env)
    assert out.returncode == 3, out.stdout + out.stderr
    domains = json.loads(out.stdout)["domains"]
    assert set(domains) == {*names, world.MX}
    checks = [c for d in domains.values() for c in d["checks"].values()]
    assert len(checks) == 23 * 6 + 3  # every check of every domain, once; MX host: 3
    assert {c["status"] for c in checks} == {"error"}
    silent_ones = [c for c in checks if c["message"].startswith("nameserver not answering")]
    assert len(silent_ones) > len(checks) // 2  # the rest never waited out their lifetimes


def test_dms_config_dir_without_key_folders_is_an_error(dns_world: World, tmp_path: Path) -> None:
    """Else a DKIM mismatch would silently become "no key to compare" (a warning)."""
    out = check_dns(dns_world, "--dms-config-dir", str(tmp_path), "dkimbad.test")
    assert out.returncode == 2
    assert "neither opendkim/keys nor rspamd/dkim" in out.stderr
    good = check_dns(dns_world, "--output", "json", "dkimbad.test")  # the world's real folder
    assert json.loads(good.stdout)["domains"]["dkimbad.test"]["checks"]["dkim"]["status"] == "fail"


def test_mta_sts_ca_bundle_flag(dns_world: World, tmp_path: Path) -> None:
    argv = ["--output", "json", "--egress", world.V4, "--mta-sts-ca-bundle"]
    missing = check_dns(dns_world, *argv, str(tmp_path / "none.pem"), "good.test")
    assert missing.returncode == 2 and "none.pem: no such file" in missing.stderr
    settings = tmp_path / "agent.yaml"  # the policy server's port and address: tests only
    settings.write_text(
        f"dns:\n  mtaSts:\n    port: {dns_world.https_port}\n    connectTo: 127.0.0.1\n"
    )
    out = check_dns(dns_world, "-c", str(settings), *argv, str(dns_world.ca.ca_pem), "good.test")
    sts = json.loads(out.stdout)["domains"]["good.test"]["checks"]["mta-sts"]
    assert sts["status"] == "pass", sts
    assert out.returncode == 0, out.stdout


def test_the_documented_json_layout_is_the_output(dns_world: World) -> None:
    """docs/dns-checks.md's JSON example has the keys the output has, at every level shown."""
    text = (ROOT / "docs" / "dns-checks.md").read_text()
    example = json.loads(
        text.split("### The JSON output", 1)[1].split("```json", 1)[1].split("```")[0]
    )
    out = check_dns(dns_world, "--output", "json", "--egress", world.V4, "twospf.test")
    real = json.loads(out.stdout)
    assert set(real) == set(example)
    assert set(real["summary"]) == set(example["summary"])
    doc_domain, doc_host = example["domains"]["example.com"], example["domains"]["mail.example.com"]
    domain, host = real["domains"]["twospf.test"], real["domains"][world.MX]
    assert set(domain) == set(doc_domain) and set(host) == set(doc_host)
    assert set(domain["checks"]["spf"]) == set(doc_domain["checks"]["spf"])
    assert set(host["checks"]) == set(doc_host["checks"])
    finding = domain["checks"]["spf"]["findings"][0]
    assert set(doc_domain["checks"]["spf"]["findings"][0]) <= set(finding)
    assert set(domain["dkim"]["mail"]) == set(doc_domain["dkim"]["mail"])
