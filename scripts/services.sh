#!/usr/bin/env bash
# Starts or stops the services Comet stands on: Kafka and PostgreSQL. A service whose address is
# already given (COMET_KAFKA_BOOTSTRAP_SERVERS / COMET_DATABASE_URL) is used as is, not provisioned.
# Usage: scripts/services.sh start|stop|status
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
case "${1:-}" in
  start)
    [ -n "${COMET_DATABASE_URL:-}" ] && say "using PostgreSQL from COMET_DATABASE_URL" || "$ROOT/scripts/postgres.sh" start
    [ -n "${COMET_KAFKA_BOOTSTRAP_SERVERS:-}" ] && say "using Kafka at $COMET_KAFKA_BOOTSTRAP_SERVERS" || "$ROOT/scripts/kafka.sh" start ;;
  stop)
    [ -n "${COMET_KAFKA_BOOTSTRAP_SERVERS:-}" ] || "$ROOT/scripts/kafka.sh" stop
    [ -n "${COMET_DATABASE_URL:-}" ] || "$ROOT/scripts/postgres.sh" stop ;;
  status)
    "$ROOT/scripts/postgres.sh" status || true
    "$ROOT/scripts/kafka.sh" status || true ;;
  *) die "usage: scripts/services.sh start|stop|status" ;;
esac
