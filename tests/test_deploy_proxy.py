"""The PROXY-protocol files the chart puts in DMS's config folder (haproxy.enabled), checked with
the real tools: Postfix's postconf runs user-patches.sh against a DMS-like master.cf, and
Dovecot's doveconf parses dovecot.cf."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.deploy import render
from tests.deploy.objects import one
from tests.rig.proc import require_binary

# The public services as DMS's master.cf declares them (postscreen on 25, smtpd on 587/465).
MASTER_CF = """\
smtp       inet  n       -       n       -       1       postscreen
smtpd      pass  -       -       n       -       -       smtpd
submission inet  n       -       n       -       -       smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
submissions inet n       -       n       -       -       smtpd
  -o syslog_name=postfix/submissions
  -o smtpd_tls_wrappermode=yes
  -o smtpd_sasl_auth_enable=yes
pickup     unix  n       -       n       60      1       pickup
"""


def _files(helm: str) -> dict[str, str]:
    sets = ["haproxy.enabled=true", "env.ENABLE_POP3=true"]
    docs = render.load_docs(render.helm_template(helm, sets))
    data: dict[str, str] = one(docs, "ConfigMap", "mailserver-files")["data"]
    return data


def _postconf(postconf: str, config: Path, *args: str) -> str:
    proc = subprocess.run(
        [postconf, "-c", str(config), *args], capture_output=True, text=True, check=True
    )
    return proc.stdout


def test_user_patches_add_proxy_twins_with_dms_options(helm: str, tmp_path: Path) -> None:
    postconf = require_binary("postconf", "postfix")
    (tmp_path / "main.cf").write_text("")
    (tmp_path / "master.cf").write_text(MASTER_CF)
    script = tmp_path / "user-patches.sh"
    script.write_text(_files(helm)["user-patches.sh"])
    env = {**os.environ, "MAIL_CONFIG": str(tmp_path), "PATH": f"/usr/sbin:{os.environ['PATH']}"}
    for _ in range(2):  # a container restart runs it again: same result
        proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    services = _postconf(postconf, tmp_path, "-M")
    params = _postconf(postconf, tmp_path, "-P")
    assert services.count("\n12525 ") + services.startswith("12525 ") == 1
    assert "12525/inet/postscreen_upstream_proxy_protocol = haproxy" in params
    assert "10587/inet/smtpd_upstream_proxy_protocol = haproxy" in params
    assert "10465/inet/smtpd_upstream_proxy_protocol = haproxy" in params
    # The twins keep DMS's own options (cloned, not rewritten).
    assert "10587/inet/smtpd_tls_security_level = encrypt" in params
    assert "10465/inet/smtpd_tls_wrappermode = yes" in params
    assert (
        "12525/inet/postscreen_cache_map = btree:$data_directory/postscreen_12525_cache" in params
    )
    # The plain services are untouched: clients inside the cluster keep them.
    assert "submission/inet/smtpd_upstream_proxy_protocol" not in params
    assert "smtp/inet/postscreen_upstream_proxy_protocol" not in params


def test_dovecot_snippet_parses_with_proxy_listeners(helm: str, tmp_path: Path) -> None:
    doveconf = require_binary("doveconf", "dovecot-core")
    (tmp_path / "dms.cf").write_text(_files(helm)["dovecot.cf"])
    (tmp_path / "dovecot.conf").write_text(
        f"protocols = imap pop3\nbase_dir = {tmp_path}/run\nssl = no\n!include dms.cf\n"
    )
    proc = subprocess.run(
        [doveconf, "-c", str(tmp_path / "dovecot.conf"), "-n"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    parsed = proc.stdout
    assert "haproxy_trusted_networks = 10.0.0.0/8 192.168.0.0/16 172.16.0.0/12" in parsed
    for port in (10143, 10993, 10110, 10995):
        assert f"port = {port}" in parsed
    assert parsed.count("haproxy = yes") == 4


def test_placeholders_without_haproxy_are_inert(helm: str) -> None:
    docs = render.load_docs(render.helm_template(helm))
    data = one(docs, "ConfigMap", "mailserver-files")["data"]
    lines = [
        line
        for text in data.values()
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines == []
