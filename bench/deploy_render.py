"""How long the deploy tooling takes on this machine: helm template (defaults, everything on),
kubectl kustomize, and kubernetes-validate of one render. Prints medians of N runs.

    .venv/bin/python bench/deploy_render.py [N]
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kubernetes_validate

from tests.deploy import render


def median_ms(fn: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    helm, kubectl = render.find_tool("helm"), render.find_tool("kubectl")
    if not helm or not kubectl:
        print("helm/kubectl missing: run .ci/extra-installs", file=sys.stderr)
        return 1

    def template(sets: list[str]) -> Callable[[], object]:
        return lambda: render.run(
            [helm, "template", "m", str(render.CHART), *[arg for s in sets for arg in ("--set", s)]]
        )

    docs = render.load_docs(render.run([helm, "template", "m", str(render.CHART)]).stdout)
    results = {
        "helm template (defaults)": median_ms(template([]), n),
        "helm template (full)": median_ms(template(render.COMBINATIONS["full"]), n),
        "kubectl kustomize manifests/": median_ms(
            lambda: render.run([kubectl, "kustomize", str(render.MANIFESTS)]), n
        ),
        f"kubernetes-validate {len(docs)} objects": median_ms(
            lambda: [kubernetes_validate.validate(d, "1.30", strict=True) for d in docs], n
        ),
    }
    for name, ms in results.items():
        print(f"{name:40s} median {ms:8.1f} ms  (n={n})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
