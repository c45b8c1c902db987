"""Test-wide settings: integration tests need the services `make services` started (or any
Kafka and Postgres named by COMET_KAFKA_BOOTSTRAP_SERVERS / COMET_DATABASE_URL). In CI a missing
service fails the run; nothing is skipped."""

# Fixtures of real subprocess clusters (their own database and namespace), for fault tests.
pytest_plugins = ["tests.integration.cluster"]
