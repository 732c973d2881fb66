"""Settings section `kube:` — owned by the kube capability; document every field."""

from __future__ import annotations

from agent.config_base import Section


class KubeSettings(Section):
    enabled: bool = False
