#!/usr/bin/env bash
# Provisions and runs Comet's own PostgreSQL cluster from Debian's packages (not the system
# cluster): data, socket and logs under $COMET_HOME/postgres, listening on 127.0.0.1 only.
# Usage: scripts/postgres.sh start|stop [fast|immediate]|status
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORT="${COMET_PG_PORT:-15432}"
DB_USER="${COMET_PG_USER:-comet}"
DB_PASSWORD="${COMET_PG_PASSWORD:-comet}"
DB_NAME="${COMET_PG_DB:-comet}"
DIR="$COMET_HOME/postgres"
DATA="$DIR/data"

find_bin() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

ensure_installed() {
  BIN="$(find_bin)" && return 0
  [ "$(id -u)" = 0 ] || die "PostgreSQL server binaries are missing; install Debian's postgresql package"
  say "installing Debian's postgresql package"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2 || die "apt-get install postgresql failed"
  BIN="$(find_bin)" || die "postgresql installed but no initdb found under /usr/lib/postgresql"
}

# PostgreSQL refuses to run as root: run it as the postgres system user then.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

psql_admin() { as_owner "$BIN/psql" -h "$DIR" -p "$PORT" -d postgres -v ON_ERROR_STOP=1 -qAt "$@"; }

start() {
  ensure_installed
  mkdir -p "$DIR"
  [ "$(id -u)" = 0 ] && chown postgres: "$DIR"
  # Every directory above the data must be traversable by the server's user.
  local d="$DIR"; while [ "$d" != "/" ]; do d="$(dirname "$d")"; [ "$(id -u)" = 0 ] && chmod o+x "$d" 2>/dev/null || true; done
  if [ ! -f "$DATA/PG_VERSION" ]; then
    say "initialising a PostgreSQL cluster in $DATA"
    as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 \
      || { cat "$DIR/initdb.log" >&2; die "initdb failed"; }
    cat >>"$DATA/postgresql.conf" <<CONF
# --- Comet development settings ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR'
max_connections = 400
shared_buffers = 256MB
work_mem = 8MB
wal_buffers = 16MB
max_wal_size = 2GB
checkpoint_timeout = 15min
logging_collector = off
log_min_duration_statement = -1
# fsync and synchronous_commit stay on: a 202 must mean durable, in tests and benchmarks alike.
CONF
  fi
  if as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    say "PostgreSQL already running on 127.0.0.1:$PORT"
  else
    rm -f "$DATA/postmaster.pid" 2>/dev/null || true
    port_open "$PORT" && die "port $PORT is taken by another process; set COMET_PG_PORT"
    say "starting PostgreSQL on 127.0.0.1:$PORT"
    as_owner "$BIN/pg_ctl" -D "$DATA" -o "-p $PORT" -l "$DIR/server.log" -w -t 60 start >/dev/null \
      || { tail -n 30 "$DIR/server.log" >&2; die "PostgreSQL did not start"; }
  fi
  if [ "$(psql_admin -c "select 1 from pg_roles where rolname='$DB_USER'")" != 1 ]; then
    psql_admin -c "create role \"$DB_USER\" login createdb password '$DB_PASSWORD'"
  fi
  if [ "$(psql_admin -c "select 1 from pg_database where datname='$DB_NAME'")" != 1 ]; then
    psql_admin -c "create database \"$DB_NAME\" owner \"$DB_USER\""
  fi
  say "PostgreSQL ready: postgresql+asyncpg://$DB_USER:***@127.0.0.1:$PORT/$DB_NAME"
}

# stop [fast|immediate]: fast (the default) rolls back and checkpoints; immediate aborts (crash recovery at start).
stop() {
  local mode="${1:-fast}"
  case "$mode" in fast|immediate) ;; *) die "stop mode must be fast or immediate, not $mode" ;; esac
  BIN="$(find_bin)" || { say "PostgreSQL is not installed"; return 0; }
  if [ -f "$DATA/PG_VERSION" ] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    as_owner "$BIN/pg_ctl" -D "$DATA" -m "$mode" -w stop >/dev/null; say "PostgreSQL stopped ($mode)"
  else
    say "PostgreSQL is not running"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop "${2:-fast}" ;;
  status) BIN="$(find_bin)" && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1 && echo "postgres: running (127.0.0.1:$PORT)" || { echo "postgres: stopped"; exit 1; } ;;
  *) die "usage: scripts/postgres.sh start|stop|status" ;;
esac
