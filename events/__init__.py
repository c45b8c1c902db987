"""The event backbone: envelope, topics, producer and consumer wrappers, outbox relay, inbox, dead letters."""
