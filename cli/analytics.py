"""`comet analytics`: runs the faust-streaming insights process until SIGTERM / Ctrl-C, then drains
it (stops consuming, writes the pending facts, leaves its group). docs/decisions/0025."""

from __future__ import annotations

import logging

from config.settings import AnalyticsSettings


def run(settings: AnalyticsSettings) -> None:
    from cli.process import run_until_signalled
    from events.analytics.app import Analytics

    if settings.log_level != "debug":
        # faust logs every start-up step and rebalance as tables at info: keep its warnings only.
        for name in ("faust", "mode", "aiokafka"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # "producer buffer full": its changelog producer's back-pressure while catching up, not a fault.
        logging.getLogger("faust.transport.producer").setLevel(logging.ERROR)
    run_until_signalled(Analytics(settings).run)
