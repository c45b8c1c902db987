#!/usr/bin/env bash
# Provisions and runs a real Apache Kafka broker (KRaft, one combined broker+controller) without
# Docker: the jars come from Maven Central through services/kafka/pom.xml.
# Usage: scripts/kafka.sh start|stop|status
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_VERSION="${COMET_KAFKA_VERSION:-4.4.0}"
LOG4J_VERSION="${COMET_LOG4J_VERSION:-2.25.3}"
PORT="${COMET_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${COMET_KAFKA_CONTROLLER_PORT:-9093}"
# The port clients are told to connect to (a proxy in front of the broker, `make chaos`); default: PORT.
ADVERTISED_PORT="${COMET_KAFKA_ADVERTISED_PORT:-$PORT}"
LIB="$COMET_CACHE/kafka-$KAFKA_VERSION/lib"
DIR="$COMET_HOME/kafka"
PIDFILE="$DIR/kafka.pid"

fetch_jars() {
  [ -f "$LIB/.complete" ] && return 0
  command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch Kafka; install it (apt-get install maven)"
  say "fetching Apache Kafka $KAFKA_VERSION from Maven Central into $LIB"
  rm -rf "$LIB"; mkdir -p "$LIB"
  mvn -B -q -f "$ROOT/services/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$LIB" -DincludeScope=runtime \
    -Dkafka.version="$KAFKA_VERSION" -Dlog4j.version="$LOG4J_VERSION" >&2 \
    || die "could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION from Maven Central"
  touch "$LIB/.complete"
}

start() {
  if pid_alive "$PIDFILE"; then say "Kafka already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT"; return 0; fi
  if port_open "$PORT"; then die "port $PORT is taken by another process; set COMET_KAFKA_PORT"; fi
  command -v java >/dev/null || die "Java 17+ is needed for Kafka"
  fetch_jars
  mkdir -p "$DIR/data" "$DIR/logs"
  sed -e "s|@ADVERTISED_PORT@|$ADVERTISED_PORT|g" -e "s|@PORT@|$PORT|g" -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" -e "s|@DATA_DIR@|$DIR/data|g" \
    "$ROOT/services/kafka/server.properties.in" > "$DIR/server.properties"
  local jopts=(-Xms256m -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
               "-Dlog4j2.configurationFile=$ROOT/services/kafka/log4j2.properties" "-Dkafka.logs.dir=$DIR/logs")
  if [ ! -f "$DIR/data/meta.properties" ]; then
    local cluster_id
    cluster_id="$(java -cp "$LIB/*" "${jopts[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)"
    say "formatting KRaft storage (cluster $cluster_id)"
    java -cp "$LIB/*" "${jopts[@]}" kafka.tools.StorageTool format -t "$cluster_id" \
      -c "$DIR/server.properties" >"$DIR/logs/format.log" 2>&1 || { cat "$DIR/logs/format.log" >&2; die "kafka storage format failed"; }
  fi
  say "starting Kafka $KAFKA_VERSION on 127.0.0.1:$PORT"
  setsid nohup java -cp "$LIB/*" "${jopts[@]}" kafka.Kafka "$DIR/server.properties" \
    >"$DIR/logs/stdout.log" 2>&1 </dev/null &
  echo $! > "$PIDFILE"
  local i
  for i in $(seq 1 1200); do
    pid_alive "$PIDFILE" || { tail -n 40 "$DIR/logs/stdout.log" "$DIR/logs/server.log" >&2 2>/dev/null; die "Kafka exited during start-up"; }
    if port_open "$PORT" && "$ROOT/scripts/python.sh" -m events.probe kafka "127.0.0.1:$PORT" 2>/dev/null; then
      say "Kafka ready on 127.0.0.1:$PORT"; return 0
    fi
    sleep 0.1
  done
  die "Kafka did not answer a metadata request within 120 s (logs: $DIR/logs)"
}

case "${1:-}" in
  start) start ;;
  stop) stop_pid "$PIDFILE" Kafka ;;
  status) if pid_alive "$PIDFILE"; then echo "kafka: running (pid $(cat "$PIDFILE"), 127.0.0.1:$PORT)"; else echo "kafka: stopped"; exit 1; fi ;;
  *) die "usage: scripts/kafka.sh start|stop|status" ;;
esac
