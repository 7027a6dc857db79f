#!/usr/bin/env bash
# vitalflow as a multi-process cluster on one machine: the processes deploy/compose.yaml runs, started as
# plain processes (no containers). Each runs in its own process group, recorded in a pid file, so that
# `stop` ends it and everything it started.
#
#   deploy/local-cluster.sh start    Kafka (unless KAFKA_BOOTSTRAP names one), the scheduler (ETL driver,
#                                    Flight SQL, HTTP API), executors, ingest processes, the dashboard;
#                                    returns once every one answers its readiness check
#   deploy/local-cluster.sh stop     SIGTERM to each process group (SIGKILL after 20 s), then Kafka;
#                                    data, logs and Kafka's storage stay in the cluster directory
#   deploy/local-cluster.sh status   each process: pid, running or stopped, its addresses
#
# Environment:
#   VITALFLOW_BIN          the binary (default target/debug/vitalflow, else `vitalflow` on PATH)
#   VITALFLOW_CLUSTER_DIR  pid files, logs, ready files, Kafka's state (default ./cluster)
#   VITALFLOW_DATA         where tables live, shared by every process: a directory (default
#                          $VITALFLOW_CLUSTER_DIR/data) or s3://bucket/prefix with the AWS_* variables set
#   VITALFLOW_CONFIG       vitalflow.toml every process reads (Flight SQL users, ports...); VITALFLOW__*
#                          variables override it as usual
#   VITALFLOW__CLUSTER__SECRET / VITALFLOW__CLUSTER__SECRET_FILE
#                          the secret the Ballista ports demand; unset: start writes a random one to
#                          run/cluster.secret (mode 600) and gives every process that file
#   VITALFLOW__CLUSTER__TLS_CERT_PATH (with _KEY_PATH and _CA_PATH)
#                          the certificate every process presents on the Ballista ports; unset: start makes
#                          a throwaway CA and certificate in run/cluster-tls (deploy/cluster-certs.sh), so
#                          the processes talk mutual TLS as in a real cluster
#   KAFKA_BOOTSTRAP        an existing Kafka; unset: deploy/kafka/kafka.sh runs one in the cluster directory
#   EXECUTORS, INGESTERS   how many executors and ingest processes (default 2 and 2)
#   PARTITIONS             partitions of the vitals topic when start creates it (default 6): at most this
#                          many ingest processes share the load
#   DASHBOARD              1 (default): the Streamlit dashboard, in a venv made by deploy/python-env.sh; 0: none
#   DASHBOARD_PORT         default 8501; it reads Flight SQL as VITALFLOW_USER / VITALFLOW_PASSWORD or
#                          VITALFLOW_TOKEN (clients/streamlit/app.py)
# Executors and ingest processes take free ports (several share the host); `status` shows them.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
dir=$(mkdir -p "${VITALFLOW_CLUSTER_DIR:-cluster}" && cd "${VITALFLOW_CLUSTER_DIR:-cluster}" && pwd)
pids="$dir/pids"
run="$dir/run"
logs="$dir/logs"
export VITALFLOW_KAFKA_DIR="$dir/kafka"

log() { echo "local-cluster.sh: $*" >&2; }

binary() {
  if [ -n "${VITALFLOW_BIN:-}" ]; then echo "$VITALFLOW_BIN"
  elif [ -x "$root/target/debug/vitalflow" ]; then echo "$root/target/debug/vitalflow"
  elif command -v vitalflow >/dev/null; then command -v vitalflow
  else log "no vitalflow binary: run cargo build, or set VITALFLOW_BIN"; exit 1
  fi
}

# Whether any process of group $1 is alive (zombies waiting for their reaper do not count).
group_alive() {
  local group=$1 stat rest
  for stat in /proc/[0-9]*/stat; do
    { read -r rest < "$stat"; } 2>/dev/null || continue
    rest=${rest##*) }   # after "pid (comm) ": state ppid pgrp ...
    set -- $rest
    [ "$1" != Z ] && [ "$3" = "$group" ] && return 0
  done
  return 1
}

# A field of a ready file: json_field FILE KEY.
json_field() {
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

# Whether GET $1 answers 200.
http_ok() {
  python3 -c 'import sys, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=3).status == 200 else 1)
except Exception:
    sys.exit(1)' "$1"
}

# launch NAME COMMAND...: starts COMMAND as the leader of a new process group, logging to logs/NAME.log.
launch() {
  local name=$1; shift
  # setsid: the process outlives this script, leads its own group and ignores the terminal's signals.
  setsid "$@" >> "$logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$pids/$name"
  echo "$name" >> "$run/order"
}

fail_start() {
  log "$1; last lines of logs/$2.log:"
  tail -n 30 "$logs/$2.log" >&2 || true
  stop_all
  exit 1
}

# wait_ready NAME CHECK...: waits (up to 180 s) until the command CHECK succeeds while NAME runs.
wait_ready() {
  local name=$1; shift
  for _ in $(seq 1 360); do
    group_alive "$(cat "$pids/$name")" || fail_start "$name exited" "$name"
    if "$@" 2>/dev/null; then return 0; fi
    sleep 0.5
  done
  fail_start "$name was not ready within 180 s" "$name"
}

ready_file() { [ -s "$run/$1.json" ]; }

start() {
  if [ -f "$run/order" ]; then
    log "a cluster is recorded in $dir (run stop first)"; exit 1
  fi
  local bin; bin=$(binary)
  mkdir -p "$pids" "$run" "$logs"
  : > "$run/order"
  local kafka=${KAFKA_BOOTSTRAP:-}
  if [ -z "$kafka" ]; then
    touch "$run/own-kafka"   # first, so that stop ends a broker that started but failed to answer
    kafka=$("$here/kafka/kafka.sh" start) || fail_start "Kafka did not start" kafka
  fi
  echo "$kafka" > "$run/kafka"
  # One secret for this cluster's processes: the Ballista ports refuse requests without it.
  if [ -z "${VITALFLOW__CLUSTER__SECRET:-}" ] && [ -z "${VITALFLOW__CLUSTER__SECRET_FILE:-}" ]; then
    (umask 077 && python3 -c 'import secrets; print(secrets.token_hex(32))' > "$run/cluster.secret")
    export VITALFLOW__CLUSTER__SECRET_FILE="$run/cluster.secret"
  fi
  # Mutual TLS between them, with a CA of this cluster's own, made afresh for each start.
  if [ -z "${VITALFLOW__CLUSTER__TLS_CERT_PATH:-}" ]; then
    rm -rf "$run/cluster-tls"
    "$here/cluster-certs.sh" "$run/cluster-tls" >/dev/null
    rm -f "$run/cluster-tls/ca.key"   # nothing more is signed with it
    export VITALFLOW__CLUSTER__TLS_CERT_PATH="$run/cluster-tls/cluster.pem"
    export VITALFLOW__CLUSTER__TLS_KEY_PATH="$run/cluster-tls/cluster.key"
    export VITALFLOW__CLUSTER__TLS_CA_PATH="$run/cluster-tls/ca.pem"
  fi
  local common=("$bin" --kafka "$kafka" --data "${VITALFLOW_DATA:-$dir/data}")

  launch scheduler "${common[@]}" scheduler --ready-file "$run/scheduler.json"
  wait_ready scheduler ready_file scheduler
  local scheduler http
  scheduler=$(json_field "$run/scheduler.json" scheduler)
  http=$(json_field "$run/scheduler.json" http)
  wait_ready scheduler http_ok "http://$http/healthz"

  # The topic before its consumers, with its partition count (a topic a producer auto-creates later
  # gets the broker's default): `simulate --count 0` creates it when missing and produces nothing.
  "${common[@]}" simulate --count 0 --partitions "${PARTITIONS:-6}" >> "$logs/topic.log" 2>&1 \
    || fail_start "creating the topic failed" topic

  local i
  for i in $(seq 1 "${EXECUTORS:-2}"); do
    launch "executor-$i" "${common[@]}" executor --scheduler "$scheduler" \
      --flight-port 0 --health-port 0 --ready-file "$run/executor-$i.json"
  done
  for i in $(seq 1 "${INGESTERS:-2}"); do
    launch "ingest-$i" "${common[@]}" ingest --metrics-port 0 --ready-file "$run/ingest-$i.json"
  done
  for i in $(seq 1 "${EXECUTORS:-2}"); do
    wait_ready "executor-$i" ready_file "executor-$i"
    wait_ready "executor-$i" http_ok "http://127.0.0.1:$(json_field "$run/executor-$i.json" health)/readyz"
  done
  for i in $(seq 1 "${INGESTERS:-2}"); do
    wait_ready "ingest-$i" ready_file "ingest-$i"
    wait_ready "ingest-$i" http_ok "http://$(json_field "$run/ingest-$i.json" metrics)/readyz"
  done

  if [ "${DASHBOARD:-1}" = 1 ]; then
    local venv port=${DASHBOARD_PORT:-8501}
    venv=$("$here/python-env.sh" "$root/clients/streamlit/requirements.txt")
    VITALFLOW_FLIGHT_SQL_URL="grpc://$(json_field "$run/scheduler.json" flight_sql)"
    export VITALFLOW_FLIGHT_SQL_URL
    launch dashboard "$venv/bin/python" -m streamlit run "$root/clients/streamlit/app.py" \
      --server.headless true --server.address 127.0.0.1 --server.port "$port" \
      --browser.gatherUsageStats false --server.fileWatcherType none --global.developmentMode false
    printf '{"http": "127.0.0.1:%s"}\n' "$port" > "$run/dashboard.json"
    wait_ready dashboard http_ok "http://127.0.0.1:$port/_stcore/health"
  fi
  status
}

# stop_one NAME: SIGTERM to its group, SIGKILL to what is left after 20 s.
stop_one() {
  local name=$1 group
  [ -f "$pids/$name" ] || return 0
  group=$(cat "$pids/$name")
  if group_alive "$group"; then
    kill -TERM -- "-$group" 2>/dev/null || true
    for _ in $(seq 1 40); do
      group_alive "$group" || break
      sleep 0.5
    done
    if group_alive "$group"; then
      log "$name did not stop in 20 s; killing it"
      kill -KILL -- "-$group" 2>/dev/null || true
      sleep 0.5
    fi
  fi
  rm -f "$pids/$name"
}

stop_all() {
  [ -f "$run/order" ] || return 0
  # Readers and producers of data first, then the scheduler (its ETL finishes on the executors), then
  # the executors, then Kafka.
  local name
  for name in dashboard $(grep '^ingest-' "$run/order" || true) scheduler $(grep '^executor-' "$run/order" || true); do
    stop_one "$name"
  done
  if [ -f "$run/own-kafka" ]; then "$here/kafka/kafka.sh" stop; fi
  rm -f "$run"/*.json "$run/order" "$run/own-kafka" "$run/kafka" "$run/cluster.secret"
  rm -rf "$run/cluster-tls"
}

status() {
  if [ ! -f "$run/order" ]; then echo "no cluster running in $dir"; return 3; fi
  local name group state all=0
  printf '%-12s %-8s %-8s %s\n' process pid state addresses
  if [ -f "$run/own-kafka" ]; then
    if "$here/kafka/kafka.sh" address >/dev/null 2>&1; then state=running; else state=stopped; all=3; fi
    printf '%-12s %-8s %-8s %s\n' kafka "$(cat "$VITALFLOW_KAFKA_DIR/pid" 2>/dev/null || echo -)" "$state" "$(cat "$run/kafka")"
  else
    printf '%-12s %-8s %-8s %s\n' kafka - external "$(cat "$run/kafka")"
  fi
  while read -r name; do
    group=$(cat "$pids/$name" 2>/dev/null || echo -)
    if [ "$group" != - ] && group_alive "$group"; then state=running; else state=stopped; all=3; fi
    printf '%-12s %-8s %-8s %s\n' "$name" "$group" "$state" "$(cat "$run/$name.json" 2>/dev/null || true)"
  done < "$run/order"
  return $all
}

case "${1:-}" in
  start) start ;;
  stop) stop_all ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
