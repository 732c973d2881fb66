"""Settings section `dkim:` — owned by the dkim capability; document every field."""

from __future__ import annotations

from agent.config_base import Section


class DkimSettings(Section):
    enabled: bool = False
