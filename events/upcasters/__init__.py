"""Every upcaster Comet ships, one module per event type; importing this package registers them in
`events.upcasting.UPCASTERS` (events/envelope.py does, so `decode()` always has them)."""

from events.upcasters import (
    run_cancel_requested,  # noqa: F401
    webhook_received,  # noqa: F401
)
