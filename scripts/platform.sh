#!/usr/bin/env bash
# Brings the whole platform up: services, migrations, demo seed, then api + orchestrator + 2 workers
# + analytics (the faust-streaming insights process, off the critical path).
#   scripts/platform.sh run   - in the foreground; Ctrl-C stops everything
#   scripts/platform.sh up    - in the background; returns once /readyz is green
#   scripts/platform.sh down  - stops what `up` started, then the services
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUN_DIR="$COMET_HOME/run"
PROCS=(api orchestrator worker-1 worker-2 analytics)
PRESET_DB= PRESET_KAFKA=

prepare() {
  "$ROOT/scripts/python.sh" -c "" # installs uv and the locked dependencies when missing
  [ -n "${COMET_DATABASE_URL:-}" ] && PRESET_DB=1 || PRESET_DB=
  [ -n "${COMET_KAFKA_BOOTSTRAP_SERVERS:-}" ] && PRESET_KAFKA=1 || PRESET_KAFKA=
  "$ROOT/scripts/services.sh" start
  source "$ROOT/scripts/env.sh"
  "$COMET" migrate >/dev/null
  "$COMET" demo seed --repo "$COMET_HOME/demo-repo" --credentials "$COMET_HOME/demo-credentials"
  mkdir -p "$RUN_DIR"
}

start_one() {
  local name="$1"; shift
  # A session of its own: Ctrl-C reaches only this script, whose trap stops each process with
  # SIGTERM (a drain), in order, then the services.
  setsid "$COMET" "$@" >>"$RUN_DIR/$name.log" 2>&1 < /dev/null &
  echo $! > "$RUN_DIR/$name.pid"
}

# Each long-lived process gets a stable instance id: restarted, it takes its Kafka partitions back
# at once as a static group member (docs/decisions/0012).
start_all() {
  start_one api api
  COMET_INSTANCE_ID=orchestrator-1 start_one orchestrator orchestrator
  COMET_INSTANCE_ID=worker-1 start_one worker-1 worker --pool default --concurrency 4
  COMET_INSTANCE_ID=worker-2 start_one worker-2 worker --pool default --concurrency 4
  COMET_ANALYTICS_DATA_DIR="$COMET_HOME/analytics" start_one analytics analytics
}

stop_all() {
  local name
  for name in "${PROCS[@]}"; do
    if pid_alive "$RUN_DIR/$name.pid"; then kill -TERM "$(cat "$RUN_DIR/$name.pid")" 2>/dev/null || true; fi
  done
  for name in "${PROCS[@]}"; do
    local f="$RUN_DIR/$name.pid" i
    pid_alive "$f" || continue
    for i in $(seq 1 150); do pid_alive "$f" || break; sleep 0.2; done
    pid_alive "$f" && kill -KILL "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
}

interrupted() {
  [ -n "$TAIL" ] && kill "$TAIL" 2>/dev/null
  stop_all
  [ -n "$KAFKA_WAS_UP$PRESET_KAFKA" ] || "$ROOT/scripts/kafka.sh" stop
  [ -n "$PG_WAS_UP$PRESET_DB" ] || "$ROOT/scripts/postgres.sh" stop
}

wait_ready() {
  local i
  for i in $(seq 1 300); do
    if curl -fsS "http://$COMET_API_HOST:$COMET_API_PORT/readyz" >/dev/null 2>&1; then return 0; fi
    for name in "${PROCS[@]}"; do
      pid_alive "$RUN_DIR/$name.pid" || { tail -n 30 "$RUN_DIR/$name.log" >&2; die "$name exited during start-up (log: $RUN_DIR/$name.log)"; }
    done
    sleep 0.2
  done
  die "the API did not become ready within 60 s (logs: $RUN_DIR)"
}

banner() {
  local base="http://$COMET_API_HOST:$COMET_API_PORT"
  # shellcheck disable=SC1091
  source "$COMET_HOME/demo-credentials"
  cat <<MSG

  Comet is up.
    dashboard  $base/ui/
    API docs   $base/docs
    health     $base/readyz   metrics $base/metrics
    logs       $RUN_DIR/*.log
    demo user  $DEMO_EMAIL / $DEMO_PASSWORD

  Trigger the demo pipeline (fan-out to parallel stages, then fan-in):

    scripts/demo.sh

MSG
}

case "${1:-}" in
  run)
    # Ctrl-C stops what this command started: the Comet processes, the log tail, and the
    # services unless they were running before it (`make services`) or are given by address.
    "$ROOT/scripts/kafka.sh" status >/dev/null 2>&1 && KAFKA_WAS_UP=1 || KAFKA_WAS_UP=
    "$ROOT/scripts/postgres.sh" status >/dev/null 2>&1 && PG_WAS_UP=1 || PG_WAS_UP=
    TAIL=
    trap 'echo; say "stopping"; interrupted; exit 0' INT TERM
    prepare
    stop_all
    start_all
    wait_ready
    banner
    say "Ctrl-C stops everything"
    tail -q -n 0 -F "$RUN_DIR"/{api,orchestrator,worker-1,worker-2,analytics}.log &
    TAIL=$!
    while true; do
      for name in "${PROCS[@]}"; do
        # On Ctrl-C the processes stop themselves too, and may be seen gone before the trap runs.
        pid_alive "$RUN_DIR/$name.pid" || { say "$name exited; stopping"; interrupted; exit 1; }
      done
      sleep 1 || true  # a Ctrl-C kills the sleep; under `set -e` that must not end the script before its trap
    done ;;
  up)
    prepare
    if pid_alive "$RUN_DIR/api.pid"; then say "already up"; wait_ready; banner; exit 0; fi
    start_all
    wait_ready
    banner ;;
  down)
    stop_all
    say "Comet processes stopped"
    "$ROOT/scripts/services.sh" stop ;;
  *) die "usage: scripts/platform.sh run|up|down" ;;
esac
