#!/usr/bin/env bash
# A real single-node Apache Kafka 4.1 (KRaft) on 127.0.0.1 for tests and local runs.
#
#   kafka.sh install   fetch the jars from Maven Central into the cache (once)
#   kafka.sh start     format storage (first time) and start the broker; prints the bootstrap address
#   kafka.sh stop      stop the broker (SIGTERM, then SIGKILL after 30 s)
#   kafka.sh kill      kill -9 the broker (fault tests)
#   kafka.sh restart   stop then start on the same port and storage
#   kafka.sh address   print the bootstrap address of the running broker
#   kafka.sh sasl      print the SASL_SSL listener as JSON: bootstrap, ca (PEM path), username, password
#
# Besides the PLAINTEXT listener every test uses, the broker has a SASL_SSL listener (TLS with a CA made
# at first start, SASL PLAIN and SCRAM-SHA-256 for user "vitalflow") for the TLS/SASL tests.
#
# Environment:
#   VITALFLOW_CACHE       where jars are cached (default ~/.cache/vitalflow), outside the checkout
#   VITALFLOW_KAFKA_DIR   broker state: port, pid, data, log (default /tmp/vitalflow-kafka)
#   KAFKA_PORT            port to listen on at first start (default: a free port the OS picks)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
kafka_version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")
cache=${VITALFLOW_CACHE:-$HOME/.cache/vitalflow}
libs="$cache/kafka-$kafka_version/libs"
state=${VITALFLOW_KAFKA_DIR:-/tmp/vitalflow-kafka}

log() { echo "kafka.sh: $*" >&2; }
# free_port, pid_alive, stop
. "$(dirname "${BASH_SOURCE[0]}")/../lib/server-process.sh"

install() {
  if [ -f "$libs/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || { log "mvn is required to fetch Kafka from Maven Central"; exit 1; }
  command -v java >/dev/null || { log "java is required to run Kafka"; exit 1; }
  log "fetching Apache Kafka $kafka_version from Maven Central into $libs"
  rm -rf "$libs" && mkdir -p "$libs"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$libs" >&2
  touch "$libs/.complete"
}

address() { echo "127.0.0.1:$(cat "$state/port")"; }

random_secret() {
  python3 -c 'import secrets; print(secrets.token_hex(16))'
}

# A CA and a broker certificate for 127.0.0.1 signed by it, in a PKCS#12 keystore; and the SASL password.
make_tls() {
  local tls="$state/tls"
  [ -f "$tls/broker.p12" ] && return 0
  mkdir -p "$tls" && chmod 700 "$tls"
  random_secret > "$tls/store_password"
  random_secret > "$tls/sasl_password"
  local pass; pass=$(cat "$tls/store_password")
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=vitalflow test CA" \
    -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$tls/broker.key" -out "$tls/broker.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$tls/san.ext"
  openssl x509 -req -in "$tls/broker.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial -days 3650 \
    -extfile "$tls/san.ext" -out "$tls/broker.pem" 2>/dev/null
  openssl pkcs12 -export -in "$tls/broker.pem" -inkey "$tls/broker.key" -certfile "$tls/ca.pem" -name broker \
    -passout "pass:$pass" -out "$tls/broker.p12"
}

sasl() {
  python3 - "$state" <<'PY'
import json, pathlib, sys
state = pathlib.Path(sys.argv[1])
print(json.dumps({
    "bootstrap": "127.0.0.1:" + (state / "sasl_port").read_text().strip(),
    "ca": str(state / "tls" / "ca.pem"),
    "username": "vitalflow",
    "password": (state / "tls" / "sasl_password").read_text().strip(),
}))
PY
}

write_properties() {
  local port=$1 cport=$2 sport=$3 tls="$state/tls"
  local pass sasl_pass; pass=$(cat "$tls/store_password"); sasl_pass=$(cat "$tls/sasl_password")
  cat > "$state/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,SASL_SSL://127.0.0.1:$sport,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port,SASL_SSL://127.0.0.1:$sport
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$tls/broker.p12
listener.name.sasl_ssl.ssl.keystore.password=$pass
listener.name.sasl_ssl.ssl.key.password=$pass
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_vitalflow="$sasl_pass";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
log.dirs=$state/data
num.partitions=3
auto.create.topics.enable=true
# One node: every internal topic must have replication factor 1 or consumer groups never form.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
}

start() {
  install
  if pid_alive; then address; return 0; fi
  mkdir -p "$state"
  if [ ! -f "$state/port" ]; then
    echo "${KAFKA_PORT:-$(free_port)}" > "$state/port"
    free_port > "$state/controller_port"
  fi
  [ -f "$state/sasl_port" ] || free_port > "$state/sasl_port"
  make_tls
  local port cport sport
  port=$(cat "$state/port"); cport=$(cat "$state/controller_port"); sport=$(cat "$state/sasl_port")
  write_properties "$port" "$cport" "$sport"
  local cp="$libs/*"
  if [ ! -f "$state/data/meta.properties" ]; then
    # A cluster id is 22 URL-safe base64 characters; one starting with "-" would be read as an option
    # (1 start in 64 failed so), so none is drawn that does.
    local cluster_id
    cluster_id=$(python3 -c 'import base64,uuid
while True:
    i = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not i.startswith("-"): break
print(i)')
    java -cp "$cp" -Dlog4j2.configurationFile="$here/log4j2.yaml" kafka.tools.StorageTool format \
      --standalone -t "$cluster_id" \
      --add-scram "SCRAM-SHA-256=[name=vitalflow,password=$(cat "$state/tls/sasl_password")]" \
      -c "$state/server.properties" >> "$state/broker.log" 2>&1 \
      || { log "formatting the broker's storage failed; last log lines:"; tail -n 30 "$state/broker.log" >&2; exit 1; }
  fi
  # setsid: the broker outlives this script and is stopped by pid, never by a terminal's signals.
  setsid java -Xms256m -Xmx512m -cp "$cp" -Dlog4j2.configurationFile="$here/log4j2.yaml" \
    kafka.Kafka "$state/server.properties" >> "$state/broker.log" 2>&1 < /dev/null &
  echo $! > "$state/pid"
  for _ in $(seq 1 120); do
    if ! pid_alive; then log "broker exited; last log lines:"; tail -n 30 "$state/broker.log" >&2; exit 1; fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      address
      return 0
    fi
    sleep 0.5
  done
  log "broker did not listen on $port within 60 s"; tail -n 30 "$state/broker.log" >&2; exit 1
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop TERM ;;
  kill) stop KILL ;;
  restart) stop TERM; start ;;
  address) pid_alive && address || { log "no broker running in $state"; exit 1; } ;;
  sasl) pid_alive && sasl || { log "no broker running in $state"; exit 1; } ;;
  clean) stop TERM; rm -rf "$state" ;;
  *) echo "usage: $0 install|start|stop|kill|restart|address|sasl|clean" >&2; exit 2 ;;
esac
