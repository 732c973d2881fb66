"""checks capability: liveness checks of the mailserver, the verdict, in-place remediation.

``build(ctx)`` makes one supervised component per check plus the verdict-file writer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.app import AgentContext, Component


def build(ctx: AgentContext) -> list[Component]:
    settings = ctx.settings.checks
    if not settings.enabled:  # before the imports: a disabled capability costs no start-up
        return []
    from agent.checks.defaults import effective_checks
    from agent.checks.probes import ProbeEnv
    from agent.checks.ratelog import RateLog, beside
    from agent.checks.remediation import Remediator
    from agent.checks.runner import CheckRunner
    from agent.checks.state import CheckState
    from agent.checks.verdict import Board, VerdictWriter

    specs = effective_checks(settings, ctx.settings.dms.environment)
    env = ProbeEnv(executor=ctx.executor, warning_days=settings.certificate_warning_days)
    for spec in specs:  # TLS contexts may read CA files: build them now, not in the loop
        options = getattr(spec, "tls_options", None)
        if options is not None:
            env.tls(options)
    states = [CheckState(spec) for spec in specs]
    board = Board(states, ctx.status, ctx.hub)
    board.publish()
    remediator = Remediator(
        ctx.executor, ctx.events, RateLog(beside(settings.verdict_file, "remediations"))
    )
    components: list[Component] = [
        CheckRunner(spec, state, board, env, remediator, settings.escalation, i / len(specs))
        for i, (spec, state) in enumerate(zip(specs, states, strict=True))
    ]
    if settings.verdict_file is not None:
        escalations = RateLog(beside(settings.verdict_file, "escalations"))
        components.append(
            VerdictWriter(
                board,
                settings.verdict_file,
                settings.verdict_refresh,
                escalations,
                settings.escalation.max_per_hour,
            )
        )
    return components
