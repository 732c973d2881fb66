"""An estimate of the agent image's unpacked size, without Docker: the files of every
distribution requirements.lock pins, as installed in this machine's .venv (the same wheels the
image installs, compiled bytecode included), plus the agent itself, plus the base image.

The base image's size is not measured here (no registry): ``--base-mb`` (default: what
``docker image inspect --format '{{.Size}}'`` reports for python:3.11-slim-bookworm, about
125 MB; measure it where Docker runs). The goal is 120 MB for the whole image.

    .venv/bin/python bench/image_size.py [--base-mb 125]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata as md
import platform
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_MB = 120.0
MB = 1_000_000


def distribution_bytes(name: str) -> int:
    dist = md.distribution(name)
    total = 0
    for file in dist.files or []:
        path = Path(str(dist.locate_file(file)))
        if path.is_file():
            total += path.stat().st_size
    return total


def agent_bytes() -> int:
    """The agent package as the image holds it: sources and their compiled bytecode."""
    return sum(p.stat().st_size for p in (ROOT / "agent").rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-mb", type=float, default=125.0)
    args = parser.parse_args()
    lock = (ROOT / "requirements.lock").read_text()
    pins = re.findall(r"^([A-Za-z0-9._-]+)==\S+ \\$", lock, re.M)
    sizes: dict[str, int] = {}
    missing = []
    for name in pins:
        try:
            sizes[name] = distribution_bytes(name)
        except md.PackageNotFoundError:
            missing.append(name)
    deps = sum(sizes.values())
    own = agent_bytes()
    total_mb = args.base_mb + (deps + own) / MB
    print(f"machine: {platform.machine()} {platform.python_version()}, {datetime.date.today()}")
    print(f"dependencies ({len(sizes)} of {len(pins)} locked): {deps / MB:.1f} MB")
    for name, size in sorted(sizes.items(), key=lambda kv: -kv[1])[:6]:
        print(f"  {name:24} {size / MB:6.1f} MB")
    print(f"agent package: {own / MB:.1f} MB")
    print(f"base image (assumed, --base-mb): {args.base_mb:.1f} MB")
    print(f"estimate: {total_mb:.1f} MB; goal {GOAL_MB:.0f} MB; ratio {total_mb / GOAL_MB:.2f}")
    print(f"without the base: {(deps + own) / MB:.1f} MB")
    if missing:
        print(f"not installed here (not counted): {', '.join(missing)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
