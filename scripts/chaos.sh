#!/usr/bin/env bash
# `make chaos [RUNS=N]`: Comet under faults (CONTRACT §8, decision 0029). Starts its OWN PostgreSQL
# and Kafka on free ports under a temporary COMET_HOME (the shared services are not touched); the
# network faults go through toxiproxy, built from the Go module proxy once (scripts/toxiproxy.sh).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
"$ROOT/scripts/python.sh" -c ""
if toxi="$("$ROOT/scripts/toxiproxy.sh")"; then export COMET_TOXIPROXY="$toxi"; fi
source "$ROOT/scripts/env.sh"
cd "$ROOT"
exec .venv/bin/python -m chaos --runs "${RUNS:-300}" "$@"
