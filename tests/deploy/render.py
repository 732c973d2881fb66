"""Shared by the deploy tests: find the tools, render the chart, normalise objects, and
regenerate ``manifests/`` from the chart.

``manifests/`` is the chart rendered with default values, minus what only Helm adds:
    python -m tests.deploy.render --write-manifests
DMS's environment and files are not YAML there but kustomize ``configMapGenerator`` inputs
(``mailserver.env``, ``files/``): a generated ConfigMap's name carries a hash of its content, so
an edit changes the pod template and rolls the pod. ``unhash`` maps those names back.
The normalisation the equality test applies (``normalise``): the labels Helm adds
(``helm.sh/chart``, ``app.kubernetes.io/managed-by``, ``app.kubernetes.io/version``) and the
``checksum/*`` pod annotations are dropped, an emptied ``annotations`` map is dropped, ConfigMap
values that are YAML documents are compared parsed, and objects are compared as mappings (key
order ignored), keyed by kind and name.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.rig.proc import IN_CI

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts-lite"
MANIFESTS = ROOT / "manifests"
RELEASE = "mailserver"
KUBE_VERSION = "1.30.0"
HELM_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version")
MANIFEST_HEADER = (
    "# Generated from charts-lite/ with its default values (python -m tests.deploy.render\n"
    "# --write-manifests); tests/test_deploy_manifests.py keeps the two equal.\n"
)

VALUES = Path(__file__).parent / "values"

# Value sets the tests render. "full" turns every option on at once; "knobs" sets every
# operator knob (a values file).
COMBINATIONS: dict[str, list[str]] = {
    "knobs": [f"--values={VALUES / 'knobs.yaml'}"],
    "defaults": [],
    "haproxy": ["haproxy.enabled=true"],
    "demo": ["demo_mode.enabled=true"],
    "webhook": [
        "poor_mans_k8s_lb.enabled=true",
        "poor_mans_k8s_lb.webhook_url=https://lb.example.net/hooks/mail",
        "poor_mans_k8s_lb.webhook_secret=EXAMPLE-hook-secret",
    ],
    "lbnode": [
        "poor_mans_k8s_lb.enabled=true",
        "poor_mans_k8s_lb.webhook_url=https://lb.example.net/hooks/mail",
        "poor_mans_k8s_lb.address=ExternalIP",
    ],
    "certmanager": ["ssl.issuer.name=letsencrypt", "ssl.dnsname=mx.example.com"],
    "loadbalancer": [
        "service.type=LoadBalancer",
        "service.loadBalancer.publicIp=192.0.2.10",
        "service.loadBalancer.allowedIps={198.51.100.0/24,203.0.113.7/32}",
    ],
    "clusterip": ["service.type=ClusterIP"],
    "metrics": ["metrics.serviceMonitor.enabled=true", "metrics.prometheusRule.enabled=true"],
    "existingsecret": [
        "secrets.existingSecret=my-mail-secrets",
        "secrets.existingAgentSecret=my-agent-keys",
    ],
    "dns": [
        "dns.enabled=true",
        "dns.ipv4={203.0.113.25}",
        "dns.ipv6={2001:db8::25}",
        "dns.egress={203.0.113.26}",
        "dns.nameservers={10.0.0.10:53}",
    ],
    "mailflow": ["mailflow.enabled=true"],
    "minimal": [
        "liveness_tests.enabled=false",
        "env.ENABLE_CLAMAV=false",
        "env.ENABLE_RSPAMD=false",
    ],
    "full": [
        "haproxy.enabled=true",
        "demo_mode.enabled=true",
        "poor_mans_k8s_lb.enabled=true",
        "poor_mans_k8s_lb.webhook_url=https://lb.example.net/hooks/mail",
        "ssl.issuer.name=letsencrypt",
        "ssl.issuer.kind=Issuer",
        "service.type=LoadBalancer",
        "service.loadBalancer.publicIp=192.0.2.10",
        "metrics.serviceMonitor.enabled=true",
        "metrics.prometheusRule.enabled=true",
        "persistence.storageClass=fast",
        "persistence.annotations.backup=daily",
        "liveness_tests.commands={supervisorctl status postfix}",
        "dns.enabled=true",
        "dns.mxHost=mx.example.com",
        "mailflow.enabled=true",
    ],
}


def find_tool(name: str) -> str | None:
    """The repo's tools/bin first (.ci/extra-installs), then beside this Python, then PATH."""
    for folder in (ROOT / "tools" / "bin", ROOT / ".venv" / "bin", Path(sys.executable).parent):
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def require_tool(name: str, how: str) -> str:
    """Path of ``name``, or skip (fail under CI=true) saying how to get it."""
    path = find_tool(name)
    if path:
        return path
    message = f"{name} not found ({how})"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def require_module(name: str, how: str) -> Any:
    """Import ``name``, or skip (fail under CI=true)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        message = f"Python module {name} missing ({how})"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message, allow_module_level=True)


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, **kwargs)


@functools.cache
def _helm_template(helm: str, sets: tuple[str, ...], show_only: str | None = None) -> str:
    argv = [helm, "template", RELEASE, str(CHART), "--kube-version", KUBE_VERSION]
    for item in sets:  # "a.b=c", or a whole flag such as "--set-string=a.b=c"
        argv += [item] if item.startswith("--") else ["--set", item]
    if show_only:
        argv += ["--show-only", show_only]
    proc = run(argv)
    if proc.returncode != 0:
        raise AssertionError(f"helm template {' '.join(sets)} failed:\n{proc.stderr}")
    return proc.stdout


def helm_template(helm: str, sets: Iterable[str] = ()) -> str:
    return _helm_template(helm, tuple(sets))


def helm_notes(helm: str, workdir: Path, sets: Iterable[str]) -> str:
    """NOTES.txt as `helm install` would print it. `helm template` skips NOTES and `helm
    install --dry-run` needs a cluster, so a copy of the chart renders it as a ConfigMap value."""
    chart = workdir / "chart"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "_notes.tpl").write_text(
        '{{- define "test.notes" -}}\n' + notes + "{{- end -}}\n"
    )
    (chart / "templates" / "notes.yaml").write_text('notes: {{ include "test.notes" . | quote }}\n')
    argv = [helm, "template", RELEASE, str(chart), "--show-only", "templates/notes.yaml"]
    for item in sets:
        argv += ["--set", item]
    proc = run(argv)
    assert proc.returncode == 0, proc.stderr
    text: str = yaml.safe_load(proc.stdout)["notes"]
    return text


def split_sources(rendered: str) -> dict[str, str]:
    """Rendered text per template file (``statefulset.yaml`` -> its documents)."""
    out: dict[str, list[str]] = {}
    current: str | None = None
    for line in rendered.splitlines():
        match = re.match(r"# Source: [^/]+/templates/(.+)$", line)
        if match:
            current = match.group(1)
            if out.get(current):
                out[current].append("---")  # a template with several documents
            out.setdefault(current, [])
            continue
        if line == "---":
            continue
        if current is not None:
            out[current].append(line)
    return {name: "\n".join(lines).strip() + "\n" for name, lines in out.items()}


def load_docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def normalise(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The object without what only Helm adds; YAML documents in ConfigMaps parsed."""
    out: dict[str, Any] = yaml.safe_load(yaml.safe_dump(dict(doc)))  # deep copy
    for meta in _metadatas(out):
        labels = meta.get("labels") or {}
        for key in HELM_LABELS:
            labels.pop(key, None)
        notes = meta.get("annotations")
        if isinstance(notes, dict):
            for key in [k for k in notes if k.startswith("checksum/")]:
                del notes[key]
            if not notes:
                del meta["annotations"]
    if out.get("kind") == "ConfigMap":
        for key, value in (out.get("data") or {}).items():
            if key.endswith((".yaml", ".yml")):
                out["data"][key] = yaml.safe_load(value)
    return out


def _metadatas(doc: dict[str, Any]) -> list[dict[str, Any]]:
    found = [doc.get("metadata") or {}]
    template = (doc.get("spec") or {}).get("template")
    if isinstance(template, dict):
        found.append(template.get("metadata") or {})
    return found


def by_kind_name(docs: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): normalise(d) for d in docs}


# ConfigMaps manifests/ generates with kustomize (name -> what write_manifests writes).
GENERATED = ("mailserver-env", "mailserver-files")
ENV_FILE = MANIFESTS / "mailserver.env"
FILES_DIR = MANIFESTS / "files"
ENV_HEADER = (
    "# docker-mailserver's environment, KEY=VALUE (kustomize configMapGenerator -> ConfigMap\n"
    "# mailserver-env, read by the mailserver's envFrom and mounted for the agent). An edit\n"
    "# renames the ConfigMap, so `kubectl apply -k manifests/` rolls the pod.\n"
)


def kustomize_build(kubectl: str, folder: Path) -> str:
    proc = run([kubectl, "kustomize", str(folder)])
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def unhash(text: str) -> str:
    """Generated ConfigMap names without kustomize's content-hash suffix."""
    names = "|".join(re.escape(n) for n in GENERATED)
    return re.sub(rf"\b({names})-[a-z0-9]{{10}}\b", r"\1", text)


def _write_generator_inputs(defaults: dict[str, str]) -> list[Path]:
    env = yaml.safe_load(defaults.pop("configmap-env.yaml"))["data"]
    ENV_FILE.write_text(ENV_HEADER + "".join(f"{k}={v}\n" for k, v in sorted(env.items())))
    files = yaml.safe_load(defaults.pop("configmap-files.yaml"))["data"]
    FILES_DIR.mkdir(exist_ok=True)
    for stale in FILES_DIR.iterdir():
        if stale.name not in files:
            stale.unlink()
    written = [ENV_FILE]
    for name, text in sorted(files.items()):
        (FILES_DIR / name).write_text(text)
        written.append(FILES_DIR / name)
    return written


def manifest_text(template_text: str) -> str:
    """A rendered template as a manifests/ file: Helm's labels and checksums removed."""
    kept: list[str] = []
    for line in template_text.splitlines():
        stripped = line.strip()
        if any(stripped.startswith(f"{label}:") for label in HELM_LABELS):
            continue
        if stripped.startswith("checksum/"):
            continue
        kept.append(line)
    # An `annotations:` left with nothing under it goes too.
    result: list[str] = []
    for i, line in enumerate(kept):
        if line.strip() == "annotations:":
            indent = len(line) - len(line.lstrip())
            nxt = kept[i + 1] if i + 1 < len(kept) else ""
            if len(nxt) - len(nxt.lstrip()) <= indent:
                continue
        result.append(line)
    return MANIFEST_HEADER + "\n".join(result).strip() + "\n"


PROBE_FILE = CHART / "files" / "mailserver-liveness.sh"


def write_probe_script() -> Path:
    """The chart's copy of the agent's own liveness probe (``dms-agent probe-script``)."""
    from agent.checks.probe import PROBE_SCRIPT

    PROBE_FILE.write_text(PROBE_SCRIPT)
    return PROBE_FILE


def write_manifests(helm: str) -> list[Path]:
    """Regenerate manifests/<template>.yaml from the chart's defaults (+ the alert rules)."""
    written: list[Path] = [write_probe_script()]
    defaults = split_sources(helm_template(helm))
    rules = split_sources(helm_template(helm, ["metrics.prometheusRule.enabled=true"]))
    defaults["prometheusrule.yaml"] = rules["prometheusrule.yaml"]
    written += _write_generator_inputs(defaults)
    for name, text in sorted(defaults.items()):
        if not text.strip():
            continue
        path = MANIFESTS / name
        path.write_text(manifest_text(text))
        written.append(path)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-manifests", action="store_true")
    args = parser.parse_args()
    helm = find_tool("helm")
    if helm is None:
        print("helm not found: run .ci/extra-installs", file=sys.stderr)
        return 1
    if args.write_manifests:
        for path in write_manifests(helm):
            print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
