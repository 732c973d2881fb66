"""Settings section ``kube:`` — how the agent reaches the Kubernetes API, and how it watches.

The API is used when a source is ``kind: configmap|secret``, when ``dms.executor.kind: kube``, or
for Events when ``events`` is on and a cluster configuration can be found.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from agent.config_base import Section

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeSettings(Section):
    """``kube:`` — how the agent reaches the Kubernetes API, and how it watches."""

    # Use the API for Events even when no source or executor needs it.
    enabled: bool = False
    # A kubeconfig file; default: $KUBECONFIG, else the in-cluster service account.
    kubeconfig: Path | None = None
    context: str | None = None  # kubeconfig context; default: current-context
    # In-cluster: token, ca.crt and namespace, as the kubelet projects them (the token rotates).
    service_account_dir: Path = SERVICE_ACCOUNT_DIR
    # seconds one API request may take
    request_timeout: float = Field(30.0, gt=0)
    # A watch that has sent no line (event, bookmark, or its end) for this long is taken as
    # silently stalled and restarted. Keep it above watchTimeout: the API server ends a quiet
    # healthy watch then, while its bookmarks on a quiet watch may come only after ~2 minutes.
    stall_timeout: float = Field(80.0, gt=0)
    # Server-side end of each watch request (timeoutSeconds): the agent re-watches at once from
    # the last version, so a quiet watch is never older than this and a stall shows within
    # stallTimeout (default: stall detected in at most 80 s, 5 s of margin over the end). Each
    # re-watch costs a request on every watch: longer is less idle CPU, shorter a faster stall.
    watch_timeout: int = Field(75, ge=1)
    # Bookmarks (the server's "nothing new up to version N" lines) keep a quiet watch's version
    # fresh, so that a re-watch is not refused with 410 once the server's history moved on, but
    # each wakes the agent. ``auto``: asked for once a re-watch of this source met 410 (its
    # version had expired: the server's history moves fast here); ``always``; ``never``.
    watch_bookmarks: Literal["auto", "always", "never"] = "auto"
    # seconds before a failed watch or list is retried, doubling...
    backoff_initial: float = Field(0.5, gt=0)
    # ...up to this
    backoff_max: float = Field(30.0, gt=0)
    # Kubernetes Events on the watched objects (else on this pod).
    events: bool = True
    events_burst: int = Field(10, ge=1)  # sent at once before the rate limit starts
    events_per_minute: float = Field(2.0, gt=0)  # refill of the burst
    events_aggregate_window: float = Field(600.0, gt=0)  # repeats patch count, not new Events
    # Mounted sources (kind: path): ``inotify`` (the default: on the event loop, no idle cost,
    # ~3 ms latency; where Linux inotify is unavailable it falls back to watchfiles) or
    # ``watchfiles`` (its change thread wakes every ``mountedStepMs`` — latency vs idle CPU,
    # measured 10 ms: ~25 ms, ~0.25% CPU per mount; 25 ms: ~33 ms; 50 ms: ~85 ms, ~0.08%),
    # and the slow re-read that backs either watch up. Why: docs/design-notes.md.
    mounted_watcher: Literal["inotify", "watchfiles"] = "inotify"
    # watchfiles' wake-up period (ms): see mountedWatcher
    mounted_step_ms: int = Field(25, ge=1, le=1000)
    # seconds between full re-reads of a mounted source
    mounted_resync: float = Field(60.0, gt=0)
    # Exec: added to a command's own deadline before the stream is given up as lost.
    exec_margin: float = Field(10.0, ge=0)
