#!/usr/bin/env bash
# `make bench`: starts the services, then prints every figure beside the raw Kafka round trip and
# raw Postgres commit measured in the same run.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
"$ROOT/scripts/python.sh" -c ""
"$ROOT/scripts/services.sh" start
# The webhook figures are driven by a native load generator (Debian's wrk) so the bench's own
# Python client is not the limit; without it those figures say "NOT measured".
if ! command -v wrk >/dev/null && [ "$(id -u)" = 0 ]; then
  say "installing Debian's wrk (the native HTTP load generator)"
  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >&2 \
    || { DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >&2; }; } \
    || say "could not install wrk; the native webhook figures will say NOT measured"
fi
# The dashboard figures are measured in Debian's headless Chromium (as the browser tests are).
if { ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; } && [ "$(id -u)" = 0 ]; then
  say "installing Debian's chromium and chromium-driver (the dashboard figures)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >&2 \
    || say "could not install chromium; the dashboard scenario will fail with the install command"
fi
source "$ROOT/scripts/env.sh"
cd "$ROOT"
"$COMET" migrate >/dev/null
exec .venv/bin/python -m bench "$@"
