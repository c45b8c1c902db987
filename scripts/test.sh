#!/usr/bin/env bash
# `make test`: installs what is missing, starts the real services, then lint, types and the whole
# suite (unit + integration on real Kafka and Postgres) with line coverage enforced (>= 80 %).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
"$ROOT/scripts/python.sh" -c ""
"$ROOT/scripts/services.sh" start
source "$ROOT/scripts/env.sh"
cd "$ROOT"
say "ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
say "mypy (strict)"
.venv/bin/mypy
say "pytest"
rm -f .coverage .coverage.*
.venv/bin/pytest --cov --cov-report=term --cov-fail-under=80 "$@"
