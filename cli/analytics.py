"""`comet analytics`: runs the faust-streaming insights process until SIGTERM / Ctrl-C, then drains
it (stops consuming, writes the pending facts, leaves its group). docs/decisions/0025."""

from __future__ import annotations

from config.settings import AnalyticsSettings


def run(settings: AnalyticsSettings) -> None:
    from cli.process import run_until_signalled
    from events.analytics.app import Analytics

    run_until_signalled(Analytics(settings).run)
