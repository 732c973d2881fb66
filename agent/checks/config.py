"""Settings section `checks:` — owned by the checks capability; document every field."""

from __future__ import annotations

from agent.config_base import Section


class ChecksSettings(Section):
    enabled: bool = False
