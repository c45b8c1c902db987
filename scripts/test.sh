#!/usr/bin/env bash
# `make test`: installs what is missing, starts the real services, then lint, types and the whole
# suite (unit + integration on real Kafka and Postgres) with line coverage enforced (>= 80 %).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
"$ROOT/scripts/python.sh" -c ""
"$ROOT/scripts/services.sh" start
# The short `make chaos` in the suite injects its network faults through toxiproxy (built once).
if toxi="$("$ROOT/scripts/toxiproxy.sh")"; then export COMET_TOXIPROXY="$toxi"; fi
# The Redis rate-limit tests run their own redis-server (Debian's) on a free port.
if ! command -v redis-server >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || die "redis-server is missing; install Debian's redis-server package"
  say "installing Debian's redis-server (for the Redis rate-limit tests)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >&2 \
    || die "apt-get install redis-server failed"
fi
# The dashboard's browser tests drive Debian's headless Chromium through its chromedriver (selenium).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || die "chromium or chromedriver is missing; install Debian's chromium and chromium-driver packages"
  say "installing Debian's chromium and chromium-driver (for the dashboard's browser tests)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >&2 \
    || die "apt-get install chromium chromium-driver failed"
fi
source "$ROOT/scripts/env.sh"
cd "$ROOT"
say "ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
say "mypy (strict)"
.venv/bin/mypy
say "k8s-check (deploy/k8s against the vendored schemas, offline)"
"$ROOT/scripts/k8s-check.sh"
say "pytest"
rm -f .coverage .coverage.*
.venv/bin/pytest --cov --cov-report=term --cov-fail-under=80 "$@"
