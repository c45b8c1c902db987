# Shared helpers for Comet's service scripts. Sourced, not run.
# All runtime state (data, logs, pid files) lives under $COMET_HOME (default: .comet in the checkout).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COMET_HOME="${COMET_HOME:-$ROOT/.comet}"
COMET_CACHE="${COMET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/comet}"
mkdir -p "$COMET_HOME" "$COMET_CACHE"

say() { printf '[comet] %s\n' "$*" >&2; }
die() { printf '[comet] error: %s\n' "$*" >&2; exit 1; }

# pid_alive FILE: true when FILE names a running process (a stale file is removed).
pid_alive() {
  local f="$1" pid
  [ -f "$f" ] || return 1
  pid="$(cat "$f" 2>/dev/null || true)"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then return 0; fi
  rm -f "$f"
  return 1
}

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# stop_pid FILE NAME: SIGTERM, wait up to 30 s, then SIGKILL.
stop_pid() {
  local f="$1" name="$2" pid i
  if ! pid_alive "$f"; then say "$name is not running"; return 0; fi
  pid="$(cat "$f")"
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then say "$name did not stop in 30 s; killing"; kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$f"
  say "$name stopped"
}
