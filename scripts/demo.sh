#!/usr/bin/env bash
# Triggers the demo pipeline through the REST API and follows it until it finishes, printing each
# stage with its timing (parallel stages overlap). Needs `make run` (or `make up`) first.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
# shellcheck disable=SC1091
source "$COMET_HOME/demo-credentials" || die "no demo credentials: start Comet with 'make run' first"
exec "$ROOT/.venv/bin/python" "$ROOT/scripts/demo_client.py" "http://$COMET_API_HOST:$COMET_API_PORT" \
  "$DEMO_EMAIL" "$DEMO_PASSWORD" "$DEMO_PROJECT_ID"
