"""The reference for bench/watch_vs_reference.py: "watch a ConfigMap, write its key to a file",
on the official ``kubernetes`` client from PyPI — what k8s-sidecar does, reduced to one object.

Behaviour, as k8s-sidecar's defaults do it: list, then watch from the list's resourceVersion
with ``timeoutSeconds`` 60 and a client read timeout of 66 s (so a silent stall ends after 66 s);
each ADDED/MODIFIED event writes the key's value to the file (a plain write, no fsync); a 410
lists again; any other error waits 1 s and lists again.

Run: python bench/reference_watcher.py KUBECONFIG NAMESPACE NAME KEY OUT_FILE
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

SERVER_TIMEOUT = 60  # k8s-sidecar's WATCH_SERVER_TIMEOUT
CLIENT_TIMEOUT = 66  # k8s-sidecar's WATCH_CLIENT_TIMEOUT (read timeout)


def write(out: Path, key: str, obj: Any) -> None:
    data = obj.data or {}
    if key in data:
        out.write_text(data[key], encoding="utf-8")


def run(namespace: str, name: str, key: str, out: Path) -> None:
    api = client.CoreV1Api()
    selector = f"metadata.name={name}"
    while True:
        try:
            listed = api.list_namespaced_config_map(namespace, field_selector=selector)
            for item in listed.items:
                write(out, key, item)
            rv = listed.metadata.resource_version
            while True:  # watch; a clean end resumes from the last version seen
                stream = watch.Watch().stream(
                    api.list_namespaced_config_map,
                    namespace,
                    field_selector=selector,
                    resource_version=rv,
                    timeout_seconds=SERVER_TIMEOUT,
                    _request_timeout=CLIENT_TIMEOUT,
                )
                for event in stream:
                    obj = event["object"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        write(out, key, obj)
                    rv = obj.metadata.resource_version
        except ApiException as exc:
            if exc.status != 410:
                time.sleep(1.0)
        except Exception as exc:  # connection refused, read timeout, a cut stream
            print(f"reference: {type(exc).__name__}", file=sys.stderr, flush=True)
            time.sleep(1.0)


def main() -> None:
    kubeconfig, namespace, name, key, out = sys.argv[1:6]
    config.load_kube_config(config_file=kubeconfig)
    run(namespace, name, key, Path(out))


if __name__ == "__main__":
    main()
