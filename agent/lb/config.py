"""Settings section `lb:` — owned by the lb capability; document every field."""

from __future__ import annotations

from agent.config_base import Section


class LbSettings(Section):
    enabled: bool = False
