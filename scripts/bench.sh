#!/usr/bin/env bash
# `make bench`: starts the services, then prints every figure beside the raw Kafka round trip and
# raw Postgres commit measured in the same run.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
"$ROOT/scripts/python.sh" -c ""
"$ROOT/scripts/services.sh" start
source "$ROOT/scripts/env.sh"
cd "$ROOT"
"$COMET" migrate >/dev/null
exec .venv/bin/python -m bench "$@"
