"""Settings section `dns:` — owned by the dns capability; document every field."""

from __future__ import annotations

from agent.config_base import Section


class DnsSettings(Section):
    enabled: bool = False
